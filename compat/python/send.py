#!/usr/bin/env python3
"""Sends the scenario with a real Python client, the way a user of it would.

Usage: send.py segment|rudder SCENARIO_JSON HOST WRITE_KEY

`segment` is segment-analytics-python (`segment.analytics`), `rudder` is rudder-sdk-python
(`rudderstack.analytics`); both come from compat/.deps/python (on PYTHONPATH). The client runs
in its default mode (a background consumer that batches) with its default gzip setting, then is
flushed and shut down. Any delivery error fails the run.
"""

import json
import sys


def load_client(flavour):
    if flavour == "segment":
        from segment.analytics import Client
        from segment.analytics.version import VERSION

        return "py-segment", Client, VERSION
    if flavour == "rudder":
        from rudderstack.analytics import Client
        from rudderstack.analytics.version import VERSION

        return "py-rudder", Client, VERSION
    raise SystemExit(f"unknown client {flavour!r}: use segment or rudder")


def fill(value, sdk):
    """Replaces {sdk} in every string of a JSON value."""
    if isinstance(value, str):
        return value.replace("{sdk}", sdk)
    if isinstance(value, list):
        return [fill(item, sdk) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, sdk) for key, item in value.items()}
    return value


def main():
    flavour, scenario_file, host, write_key = sys.argv[1:5]
    sdk, Client, version = load_client(flavour)
    with open(scenario_file, encoding="utf-8") as f:
        scenario = fill(json.load(f), sdk)
    errors = []

    def on_error(error, batch):
        errors.append(f"{error!r} for {len(batch)} message(s)")

    # Defaults everywhere except the host, and few retries so a refusal fails fast.
    client = Client(write_key=write_key, host=host, on_error=on_error, max_retries=2)
    user_id, previous_id = scenario["user_id"], scenario["previous_id"]
    for call in scenario["calls"]:
        ids = {"anonymous_id": previous_id} if call.get("as_previous_id") else {"user_id": user_id}
        kind = call["type"]
        if kind == "identify":
            ok, _ = client.identify(traits=call["traits"], **ids)
        elif kind == "track":
            ok, _ = client.track(event=call["event"], properties=call["properties"], **ids)
        elif kind == "page":
            ok, _ = client.page(name=call["name"], properties=call["properties"], **ids)
        elif kind == "screen":
            ok, _ = client.screen(name=call["name"], properties=call["properties"], **ids)
        elif kind == "group":
            ok, _ = client.group(group_id=call["group_id"], traits=call["traits"], **ids)
        elif kind == "alias":
            ok, _ = client.alias(previous_id=previous_id, user_id=user_id)
        else:
            raise SystemExit(f"unknown call {kind!r} in the scenario")
        if not ok:
            errors.append(f"{kind} was not queued")
    client.flush()
    client.shutdown()
    if errors:
        print(f"{sdk} {version}: delivery failed: " + "; ".join(errors), file=sys.stderr)
        sys.exit(1)
    print(f"{sdk} {version}: sent {len(scenario['calls'])} calls")


if __name__ == "__main__":
    main()
