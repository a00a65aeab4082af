#!/usr/bin/env python3
"""Checks that what each SDK sent arrived in kith as a Segment user would expect.

Usage: check.py --api URL --secret-key KEY --write-key KEY --wire WIRE_LOG --sdk NAME [--sdk NAME ...]

It reads what went over the wire (the relay's log, see wire.py), then reads kith's API with the
secret key and asserts, per SDK:
  - the wire: path, Content-Type, gzip, auth and client version each SDK is known to send, and
    kith's 200 for every request with nothing rejected;
  - the contact: one, with the normalised email, the name and the traits sent;
  - identities: the userId, and the alias's previousId;
  - the event stream: every message the SDK sent, under its own messageId, with its type, name,
    properties or traits, the whole payload as sent, and its time (the SDK's `timestamp`, or
    `originalTimestamp` corrected for clock skew with `sentAt`);
  - the timeline: one activity interaction per day (identify, track, page and screen count,
    group and alias do not) with its hits, described by the day's first event;
  - the account: its traits, and the contact as its member.
Standard library only. Exits 1 with every mismatch listed.
"""

import argparse
import datetime as dt
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from zoneinfo import ZoneInfo

HERE = os.path.dirname(os.path.abspath(__file__))

# Where each client's pinned version is, and what it is known to put on the wire
# (../shared/fixtures/sdk/README.md): the suite fails if a client stops doing it.
SDKS = {
    "py-segment": {
        "package": ("requirements.txt", "segment-analytics-python"),
        "library": "analytics-python",
        "content_type": "application/json",
        "gzip": False,
        "write_key_in_body": True,
    },
    "py-rudder": {
        "package": ("requirements.txt", "rudder-sdk-python"),
        "library": "analytics-python",
        "content_type": "application/json",
        "gzip": True,
        "write_key_in_body": False,
    },
    "node-segment": {
        "package": ("package.json", "@segment/analytics-node"),
        "library": "@segment/analytics-node",
        "content_type": "application/json",
        "gzip": False,
        "write_key_in_body": True,
    },
    "node-rudder": {
        "package": ("package.json", "@rudderstack/rudder-sdk-node"),
        "library": "analytics-node",
        "content_type": "application/x-www-form-urlencoded",
        "gzip": True,
        "write_key_in_body": False,
    },
}

ACTIVITY = {"identify", "track", "page", "screen"}
STANDARD_DESCRIPTION = "Active in your product"
# Fields of a message that are the transport's, not the event's: kith does not keep them.
NOT_KEPT = {"writeKey", "_metadata"}


def pinned_version(file, package):
    path = os.path.join(HERE, file)
    if file == "package.json":
        with open(path, encoding="utf-8") as f:
            return json.load(f)["dependencies"][package]
    with open(path, encoding="utf-8") as f:
        for line in f:
            match = re.match(rf"^{re.escape(package)}==([^\s;]+)", line.strip())
            if match:
                return match.group(1)
    raise SystemExit(f"{package} is not pinned in {path}")


def fill(value, sdk):
    if isinstance(value, str):
        return value.replace("{sdk}", sdk)
    if isinstance(value, list):
        return [fill(item, sdk) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, sdk) for key, item in value.items()}
    return value


def parse_time(text):
    """An RFC 3339 time (any precision, `Z` or an offset) as an aware datetime."""
    text = text.strip().replace("Z", "+00:00")
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?([+-]\d\d:\d\d)$", text)
    if not match:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    fraction = (match.group(2) or ".0")[1:7].ljust(6, "0")
    return dt.datetime.fromisoformat(f"{match.group(1)}.{fraction}{match.group(3)}")


class Api:
    def __init__(self, base, secret_key):
        self.base = base.rstrip("/")
        self.secret_key = secret_key

    def get(self, path):
        request = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {self.secret_key}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            return error.code, body


class Check:
    """Collects the mismatches of one SDK."""

    def __init__(self, sdk):
        self.sdk = sdk
        self.failures = []
        self.passed = 0

    def equal(self, what, got, expected):
        if got == expected:
            self.passed += 1
        else:
            self.failures.append(f"{what}: expected {json.dumps(expected)}, got {json.dumps(got)}")
        return got == expected

    def true(self, what, condition, detail=""):
        if condition:
            self.passed += 1
        else:
            self.failures.append(f"{what}{': ' + detail if detail else ''}")
        return condition


def read_wire(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def owner(message, users):
    """The SDK whose user a message is for."""
    for sdk, (user_id, previous_id) in users.items():
        if message.get("userId") == user_id or message.get("anonymousId") == previous_id:
            return sdk
    return None


def check_wire(check, requests, spec, version, write_key):
    """The requests this SDK made: returns its messages in the order sent."""
    messages = []
    check.true("the SDK made at least one request", len(requests) > 0)
    for number, request in enumerate(requests, 1):
        where = f"request {number}"
        check.equal(f"{where}: method and path", f"{request['method']} {request['path']}", "POST /v1/batch")
        check.equal(f"{where}: Content-Type", (request["content_type"] or "").split(";")[0], spec["content_type"])
        check.equal(f"{where}: gzip (Content-Encoding and magic bytes)",
                    [request["content_encoding"], request["gzip_magic"]],
                    ["gzip", True] if spec["gzip"] else [None, False])
        check.equal(f"{where}: auth", [request["auth_scheme"], request["auth_key"]], ["Basic", write_key])
        body = request["body"] or {}
        check.equal(f"{where}: writeKey in the body", body.get("writeKey"),
                    write_key if spec["write_key_in_body"] else None)
        check.equal(f"{where}: kith's answer", [request["status"], request["answer"]],
                    [200, {"success": True, "accepted": len(body.get("batch", [])), "rejected": []}])
        for message in body.get("batch", []):
            library = (message.get("context") or {}).get("library") or {}
            check.equal(f"{message.get('type')}: context.library", [library.get("name"), library.get("version")],
                        [spec["library"], version])
            # The envelope's sentAt applies to messages without their own; a message's own sentAt wins.
            messages.append({**({"sentAt": body["sentAt"]} if "sentAt" in body else {}), **message})
    return messages


def expected_name(message):
    kind = message.get("type")
    return {
        "track": message.get("event"),
        "page": message.get("name"),
        "screen": message.get("name"),
        "group": message.get("groupId"),
        "alias": message.get("previousId"),
    }.get(kind)


def expected_properties(message):
    """What the event stream shows beside an event: its properties, or its traits."""
    for value in (message.get("properties"), message.get("traits")):
        if isinstance(value, dict):
            return value
    if message.get("type") == "identify":
        return (message.get("context") or {}).get("traits") or {}
    return {}


def description_of(message):
    kind = message["type"]
    if kind == "identify":
        return STANDARD_DESCRIPTION
    if kind == "track":
        return message["event"]
    if kind == "page":
        url = (message.get("properties") or {}).get("url")
        return f"Visited {url}" if url else f"Visited {message.get('name')}"
    if kind == "screen":
        return f"Viewed {message.get('name')}"
    return None


def check_sdk(check, api, scenario, sent, zone):
    user_id, previous_id = scenario["user_id"], scenario["previous_id"]
    expect = scenario["expect"]
    calls = scenario["calls"]

    # What was sent is what the scenario says.
    check.equal("calls sent, in order", [m.get("type") for m in sent], [c["type"] for c in calls])

    # The contact.
    status, contact = api.get("/api/contacts/" + urllib.parse.quote(expect["email"]))
    if not check.equal(f"GET /api/contacts/{expect['email']}", status, 200):
        return
    check.equal("contact email (normalised)", contact["email"], expect["email"])
    check.equal("contact name", contact["name"], expect["name"])
    identify = next(c for c in calls if c["type"] == "identify")
    for trait, value in identify["traits"].items():
        check.equal(f"contact trait {trait}", contact["traits"].get(trait), value)
    check.equal("contact profile title", contact["profile"].get("title"), identify["traits"].get("title"))

    # Identities.
    identities = {identity["value"]: identity["kind"] for identity in contact["identities"]}
    check.equal("identity userId", identities.get(user_id), "user_id")
    check.equal("identity alias previousId", identities.get(previous_id), "alias")

    # The event stream.
    status, page = api.get(f"/api/contacts/{contact['id']}/events?limit=1000")
    if not check.equal("GET events", status, 200):
        return
    events = {event["message_id"]: event for event in page["items"]}
    check.equal("messageIds in the event stream", sorted(events), sorted(m["messageId"] for m in sent))
    times = {}
    for message in sent:
        event = events.get(message["messageId"])
        if event is None:
            continue
        what = f"{message['type']} {message['messageId']}"
        check.equal(f"{what}: type", event["type"], message["type"])
        check.equal(f"{what}: name", event["name"], expected_name(message))
        check.equal(f"{what}: properties", event["properties"], expected_properties(message))
        kept = {key: value for key, value in message.items() if key not in NOT_KEPT and value is not None}
        payload = {key: value for key, value in event["payload"].items() if value is not None}
        check.equal(f"{what}: payload as sent", payload, kept)
        occurred, received = parse_time(event["occurred_at"]), parse_time(event["received_at"])
        if message.get("timestamp"):
            # A timestamp the sender set is used as given (kith keeps milliseconds).
            expected = parse_time(message["timestamp"])
            rule = "the SDK's timestamp"
        else:
            # No timestamp: originalTimestamp corrected for the device clock's skew, as Segment does.
            skew = parse_time(message["sentAt"]) - parse_time(message["originalTimestamp"])
            expected = received - skew
            rule = "receive time − (sentAt − originalTimestamp)"
        check.true(f"{what}: time is {rule}", abs((occurred - expected).total_seconds()) < 0.0015,
                   f"expected {expected.isoformat()}, got {event['occurred_at']}")
        times[message["messageId"]] = occurred

    # The timeline: one activity interaction per day, its hits, the day's first event describing it.
    days = {}
    for message in sent:
        if message["type"] in ACTIVITY and message["messageId"] in times:
            occurred = times[message["messageId"]]
            days.setdefault(occurred.astimezone(zone).date().isoformat(), []).append((occurred, message))
    status, timeline = api.get(f"/api/contacts/{contact['id']}/timeline?limit=100")
    if not check.equal("GET timeline", status, 200):
        return
    items = timeline["items"]
    check.equal("timeline days", sorted(item["day"] for item in items), sorted(days))
    check.equal("timeline kinds", sorted({item["kind"] for item in items}), ["activity"])
    for item in items:
        day_events = sorted(days.get(item["day"], []), key=lambda pair: pair[0])
        if not day_events:
            continue
        check.equal(f"{item['day']}: hits", item["hits"], len(day_events))
        first = day_events[0][0]
        check.true(f"{item['day']}: occurred_at is the day's first event",
                   abs((parse_time(item["occurred_at"]) - first).total_seconds()) < 0.0015,
                   f"expected {first.isoformat()}, got {item['occurred_at']}")
        # Events of the same millisecond are equally first.
        firsts = {description_of(m) for t, m in day_events if abs((t - first).total_seconds()) < 0.0015}
        check.true(f"{item['day']}: described by the day's first event", item["description"] in firsts,
                   f"expected one of {sorted(firsts)}, got {item['description']!r}")

    # The account.
    group = next(c for c in calls if c["type"] == "group")
    status, account = api.get("/api/accounts/" + urllib.parse.quote(group["group_id"], safe=""))
    if not check.equal(f"GET /api/accounts/{group['group_id']}", status, 200):
        return
    check.equal("account name", account["name"], group["traits"].get("name"))
    check.equal("account traits", account["traits"], group["traits"])
    check.equal("account members", [member["email"] for member in account["members"]], [expect["email"]])
    check.equal("account member_count", account["member_count"], 1)
    check.equal("contact's accounts", [a["group_id"] for a in contact["accounts"]], [group["group_id"]])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--write-key", required=True)
    parser.add_argument("--wire", required=True)
    parser.add_argument("--scenario", default=os.path.join(HERE, "scenario.json"))
    parser.add_argument("--sdk", action="append", required=True, choices=sorted(SDKS))
    args = parser.parse_args()

    api = Api(args.api, args.secret_key)
    with open(args.scenario, encoding="utf-8") as f:
        template = json.load(f)
    scenarios = {sdk: fill(template, sdk) for sdk in args.sdk}
    users = {sdk: (s["user_id"], s["previous_id"]) for sdk, s in scenarios.items()}

    status, workspace = api.get("/api/workspace")
    if status != 200:
        sys.exit(f"compat: cannot read the workspace ({status}): {workspace}")
    # Days are counted in the workspace's time zone (UTC unless someone changed it).
    zone = dt.timezone.utc if workspace["time_zone"] == "UTC" else ZoneInfo(workspace["time_zone"])

    # Sort the wire's requests by SDK.
    requests = {sdk: [] for sdk in args.sdk}
    stray = []
    for request in read_wire(args.wire):
        batch = (request["body"] or {}).get("batch") or [{}]
        owners = {owner(message, users) for message in batch}
        if len(owners) == 1 and None not in owners:
            requests[owners.pop()].append(request)
        else:
            stray.append(request)

    checks = []
    for sdk in args.sdk:
        spec = SDKS[sdk]
        version = pinned_version(*spec["package"])
        check = Check(f"{sdk} {version}")
        sent = check_wire(check, requests[sdk], spec, version, args.write_key)
        check_sdk(check, api, scenarios[sdk], sent, zone)
        checks.append(check)

    # Nothing else arrived, and nothing leaked between the SDKs' users.
    everything = Check("all")
    everything.equal("requests the checker could not attribute to one SDK", len(stray), 0)
    status, contacts = api.get("/api/contacts?limit=1000")
    everything.equal("contacts in the workspace",
                     sorted(c["email"] for c in contacts["items"]) if status == 200 else contacts,
                     sorted(s["expect"]["email"] for s in scenarios.values()))
    checks.append(everything)

    failed = False
    for check in checks:
        verdict = "ok" if not check.failures else "FAILED"
        print(f"compat: {check.sdk}: {verdict} ({check.passed} checks passed, {len(check.failures)} failed)")
        for failure in check.failures:
            print(f"compat:   {check.sdk}: {failure}")
        failed = failed or bool(check.failures)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
