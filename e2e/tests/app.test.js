// The web app as a founder uses it, in a real browser: sign in, send events through the
// ingest API, watch the contact and its timeline appear, filter, add a note, manage keys,
// read the live debugger. The tests run in order and share one signed-in browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { chromium } from "playwright-core";

const url = process.env.KITH_URL;
const writeKey = process.env.KITH_WRITE_KEY;
const secretKey = process.env.KITH_SECRET_KEY;
const email = process.env.KITH_EMAIL;
const password = process.env.KITH_PASSWORD;
const shots = process.env.SCREENSHOTS;

let browser;
let context;
let page;

before(async () => {
  assert.ok(url && writeKey && secretKey && password, "run through e2e/run.sh, which starts kith and reads its banner");
  browser = await chromium.launch({
    executablePath: process.env.KITH_CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
  page = await context.newPage();
  page.on("dialog", (dialog) => dialog.accept());
  page.setDefaultTimeout(10_000);
});

after(async () => {
  await browser?.close();
});

/** Screenshots of the current page at laptop and phone widths. */
async function shot(name) {
  for (const [width, height, label] of [[1280, 800, "laptop"], [390, 844, "phone"]]) {
    await page.setViewportSize({ width, height });
    // A page opened at an anchor is scrolled; the sticky bar would show mid-picture.
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: `${shots}/${name}-${label}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

/** Sends a body to an ingest route with a write key, as an SDK would. */
async function ingest(path, body, key = writeKey) {
  const response = await fetch(url + path, {
    method: "POST",
    headers: {
      authorization: "Basic " + Buffer.from(key + ":").toString("base64"),
      "content-type": "application/json",
    },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

/** GETs a read-API path with the secret key, as an integration would. */
async function api(path) {
  const response = await fetch(url + path, { headers: { authorization: "Bearer " + secretKey } });
  assert.equal(response.status, 200, `GET ${path}`);
  return response.json();
}

/** The names in the page's contact table, top to bottom. */
async function listedNames() {
  return (await page.locator("tbody .contact-name").allTextContents()).map((n) => n.trim());
}

const DAY = 24 * 3600 * 1000;
const ago = (days, hours = 0) => new Date(Date.now() - days * DAY - hours * 3600 * 1000).toISOString();
// Today's events, a second apart, all on today's UTC date (the workspace's zone until a test
// changes it) and in the past.
const todayBase = Math.max(Math.floor(Date.now() / DAY) * DAY + 1000, Date.now() - 2 * 3600 * 1000);
const today = (second) => new Date(todayBase + second * 1000).toISOString();

test("every page but sign-in needs a session", async () => {
  for (const path of ["/contacts", "/settings", "/debugger"]) {
    await page.goto(url + path);
    assert.equal(new URL(page.url()).pathname, "/login", `${path} sends strangers to sign in`);
  }
  await shot("login");
});

test("a wrong password is refused with a clear message", async () => {
  await page.goto(url + "/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "don't match" }).waitFor();
  assert.equal(new URL(page.url()).pathname, "/login");
});

test("signing in lands on the contacts; the first curl shows a contact appear", async () => {
  await page.goto(url + "/contacts");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(url + "/contacts");
  await page.getByRole("heading", { name: "No contacts yet" }).waitFor();
  const curl = await page.locator(".empty pre").textContent();
  assert.match(curl, /curl -u 'YOUR_WRITE_KEY:' http:\/\/127\.0\.0\.1:\d+\/v1\/identify/);
  await shot("contacts-empty");

  // The README's curl: the contact appears on the open page, no reload by hand.
  await page.locator('[data-reload-on][data-state="live"]').waitFor({ state: "attached" });
  const readme = { userId: "u1", traits: { email: "ada@example.com", name: "Ada Lovelace" }, timestamp: "2024-06-03T16:00:00Z" };
  assert.equal((await ingest("/v1/identify", readme)).status, 200);
  await page.getByRole("row").filter({ hasText: "Ada Lovelace" }).waitFor();
});

test("the live debugger shows accepted events and why others were rejected", async () => {
  await page.goto(url + "/debugger");
  await page.locator('#live-status[data-state="live"]').waitFor();
  const refused = await ingest("/v1/identify", { userId: "u9", traits: { name: "No Email" }, timestamp: ago(0) });
  assert.equal(refused.status, 400);
  assert.equal(refused.body.code, "missing_email");
  const rejected = page.locator(".dbg-rejected").first();
  await rejected.waitFor();
  assert.match(await rejected.textContent(), /missing_email/);

  const accepted = await ingest("/v1/identify", {
    userId: "u-ada",
    traits: { email: "ada@example.com", name: "Ada Lovelace", company: "Analytical Engines", title: "CTO" },
    event: "Signed Up",
    timestamp: today(0),
  });
  assert.equal(accepted.status, 200);
  const added = page.locator(".dbg-added").first();
  await added.waitFor();
  assert.match(await added.textContent(), /ada@example\.com/);
  assert.match(await added.textContent(), /Added an interaction/);
  await shot("debugger");
});

test("events sent through the ingest API become a contact with a Nat-like timeline", async () => {
  const batch = [
    // Ada: active every day this week, and a pricing visit on Mon 3 Jun 2024.
    { type: "page", userId: "u-ada", properties: { url: "https://acme.io/pricing" }, timestamp: "2024-06-03T09:00:00Z" },
    { type: "track", userId: "u-ada", event: "Invited Teammate", timestamp: today(1) },
    { type: "page", userId: "u-ada", properties: { url: "https://acme.io/docs" }, timestamp: today(2) },
    ...[1, 2, 3, 4, 5].map((days) => ({
      type: "page", userId: "u-ada", properties: { url: `https://acme.io/app/${days}` }, timestamp: ago(days),
    })),
    { type: "group", userId: "u-ada", groupId: "acme", traits: { name: "Acme Inc", plan: "pro" }, timestamp: ago(0) },
    // Bob: two recent days, and in an Engage audience.
    { type: "identify", userId: "u-bob", traits: { email: "bob@example.com", name: "Bob Builder" }, timestamp: ago(1, 1) },
    { type: "track", userId: "u-bob", event: "Created Project", timestamp: ago(2) },
    {
      type: "identify", userId: "u-bob", timestamp: ago(0),
      traits: { email: "bob@example.com", trial_users: true },
      context: { personas: { computation_class: "audience", computation_key: "trial_users", computation_id: "aud_1", space_id: "spa_1" } },
    },
    // Grace: seen once, long ago.
    { type: "identify", userId: "u-grace", traits: { email: "grace@navy.mil", name: "Grace Hopper" }, timestamp: ago(200) },
  ];
  const answer = await ingest("/v1/batch", { batch });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal(answer.body.accepted, batch.length);

  await page.goto(url + "/contacts");
  const row = page.getByRole("row").filter({ hasText: "Ada Lovelace" });
  await row.waitFor();
  assert.match(await row.textContent(), /close/);
  assert.match(await row.textContent(), /Acme Inc/);
  await shot("contacts");

  await row.getByRole("link", { name: /Ada Lovelace/ }).click();
  await page.getByRole("heading", { name: "Ada Lovelace", level: 1 }).waitFor();
  const timeline = page.locator("#timeline");
  const pricing = timeline.locator(".tl-item").filter({ hasText: "Visited https://acme.io/pricing" });
  assert.match(await pricing.textContent(), /Visited https:\/\/acme\.io\/pricing\s*— Mon 3 Jun 2024/);
  const latest = timeline.locator(".tl-item").first();
  assert.match(await latest.textContent(), /Signed Up/, "the first event of the day names it");
  assert.match(await latest.textContent(), /3 hits that day/, "later events of the day count as hits");
  await page.locator("#events summary").first().waitFor();
  assert.ok((await page.locator("#events li").count()) >= 8, "every event is in the stream");
  await shot("contact");
});

test("contacts are searched, filtered by closeness and audience, and sorted", async () => {
  const names = async () => (await page.locator("tbody .contact-name").allTextContents()).map((n) => n.trim());

  await page.goto(url + "/contacts");
  await page.getByLabel("Search").fill("hopper");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/q=hopper/);
  assert.deepEqual(await names(), ["Grace Hopper"]);

  await page.goto(url + "/contacts");
  await page.getByLabel("Closeness").selectOption("close");
  await page.waitForURL(/bucket=close/);
  assert.deepEqual(await names(), ["Ada Lovelace"]);
  await page.getByLabel("Closeness").selectOption("cold");
  await page.waitForURL(/bucket=cold/);
  assert.deepEqual(await names(), ["Grace Hopper"]);

  await page.goto(url + "/contacts");
  await page.getByLabel("Audience").selectOption("trial_users");
  await page.waitForURL(/audience=trial_users/);
  assert.deepEqual(await names(), ["Bob Builder"]);

  await page.goto(url + "/contacts");
  await page.getByLabel("Sort").selectOption("closeness");
  await page.waitForURL(/sort=closeness/);
  assert.deepEqual(await names(), ["Ada Lovelace", "Bob Builder", "Grace Hopper"]);
  await shot("contacts-sorted");
});

test("a note is added to the timeline and a cadence is set", async () => {
  await page.goto(url + "/contacts?q=grace");
  await page.getByRole("link", { name: /Grace Hopper/ }).click();
  await page.getByRole("heading", { name: "Grace Hopper", level: 1 }).waitFor();

  await page.getByRole("button", { name: "Add to timeline" }).click();
  assert.equal(await page.locator("#text:invalid").count(), 1, "the browser asks for the text first");

  await page.getByLabel("Kind").selectOption("note");
  await page.getByLabel("What happened").fill("Met at the COBOL conference; wants a demo");
  await page.getByRole("button", { name: "Add to timeline" }).click();
  const note = page.locator("#timeline .tl-note").first();
  await note.waitFor();
  assert.match(await note.textContent(), /Note\s+Met at the COBOL conference; wants a demo/);

  await page.getByLabel("Every").fill("0");
  await page.locator("#cadence").getByRole("button", { name: "Save" }).evaluate((button) => button.form.noValidate = true);
  await page.locator("#cadence").getByRole("button", { name: "Save" }).click();
  await page.getByRole("alert").filter({ hasText: "whole number of days" }).waitFor();

  await page.getByLabel("Every").fill("7");
  await page.locator("#cadence").getByRole("button", { name: "Save" }).click();
  await page.locator("#cadence").getByText("Every 7 days").waitFor();
  await shot("contact-note");
});

test("accounts, audiences, losing-touch and due pages list who they should", async () => {
  const audience = (user, email, member, timestamp) => ({
    type: "identify", userId: user, timestamp, traits: { email, trial_users: member },
    context: { personas: { computation_class: "audience", computation_key: "trial_users", computation_id: "aud_1", space_id: "spa_1" } },
  });
  const batch = [
    // Bob joins Acme; Ada joins the trial audience; Grace enters it and leaves again.
    { type: "group", userId: "u-bob", groupId: "acme", timestamp: ago(0) },
    audience("u-ada", "ada@example.com", true, ago(0)),
    audience("u-grace", "grace@navy.mil", true, ago(0, 2)),
    audience("u-grace", "grace@navy.mil", false, ago(0, 1)),
    // Linus was warm seven weeks ago and is cooling now; Margaret was warm two months ago and
    // is cold now (half-life 30 days): both are losing touch, Linus the closer.
    { type: "identify", userId: "u-linus", traits: { email: "linus@example.com", name: "Linus Torvalds" }, timestamp: ago(52) },
    { type: "track", userId: "u-linus", event: "Pushed", timestamp: ago(51) },
    { type: "track", userId: "u-linus", event: "Pushed", timestamp: ago(50) },
    { type: "identify", userId: "u-margaret", traits: { email: "margaret@example.com", name: "Margaret Hamilton" }, timestamp: ago(66) },
    { type: "track", userId: "u-margaret", event: "Landed", timestamp: ago(65) },
  ];
  const answer = await ingest("/v1/batch", { batch });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal(answer.body.accepted, batch.length);

  await page.goto(url + "/accounts");
  await page.getByRole("link", { name: "Acme Inc" }).click();
  await page.getByRole("heading", { name: "Acme Inc" }).waitFor();
  assert.deepEqual(await listedNames(), ["Ada Lovelace", "Bob Builder"], "Acme's members, closest first");
  assert.match(await page.locator("main").textContent(), /2 members/);
  await shot("account");
  await page.goto(url + "/accounts");
  await shot("accounts");

  await page.goto(url + "/audiences");
  await page.getByRole("link", { name: "trial_users" }).click();
  await page.getByRole("heading", { name: "trial_users" }).waitFor();
  assert.deepEqual(await listedNames(), ["Ada Lovelace", "Bob Builder"], "members now, closest first; Grace left");
  assert.match(await page.locator("main").textContent(), /2 members/);
  await shot("audience");
  await page.goto(url + "/audiences");
  await shot("audiences");

  await page.goto(url + "/losing-touch");
  await page.getByRole("heading", { name: "Losing touch", exact: true }).waitFor();
  assert.deepEqual(await listedNames(), ["Linus Torvalds", "Margaret Hamilton"], "who slipped from warm, closest first");
  await shot("losing-touch");

  // Grace's last interaction is the note just added: not due for 7 days. Bob, with a one-day
  // cadence and nothing since yesterday, is.
  await page.goto(url + "/contacts?q=bob");
  await page.getByRole("link", { name: /Bob Builder/ }).click();
  await page.getByLabel("Every").fill("1");
  await page.locator("#cadence").getByRole("button", { name: "Save" }).click();
  await page.locator("#cadence").getByText("Due now").waitFor();
  await page.goto(url + "/due");
  assert.deepEqual(await listedNames(), ["Bob Builder"]);
  await shot("due");
});

test("a key is created and copied, then revoked and refused", async () => {
  await page.goto(url + "/settings");
  await page.getByLabel("Kind").selectOption("write");
  await page.getByLabel("Key name").fill("Marketing site");
  await page.getByRole("button", { name: "Create key" }).click();
  const key = (await page.locator("#new-key").textContent()).trim();
  assert.match(key, /^kith_wk_[A-Za-z0-9]{32}$/);
  await page.getByRole("button", { name: "Copy the new key" }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);
  await shot("settings-new-key");

  const event = { userId: "u-ada", event: "Opened Settings", timestamp: ago(0) };
  assert.equal((await ingest("/v1/track", event, key)).status, 200, "the new key works");

  await page.goto(url + "/settings");
  const row = page.getByRole("row").filter({ hasText: "Marketing site" });
  await row.getByRole("button", { name: "Revoke Marketing site" }).click();
  await page.getByRole("row").filter({ hasText: "Marketing site" }).getByText("revoked").waitFor();
  const refused = await ingest("/v1/track", event, key);
  assert.equal(refused.status, 401, "a revoked key is refused at once");
  assert.equal(refused.body.code, "unauthorized");
  await shot("settings");
});

test("a nudge rule is created from the JSON example and turned off", async () => {
  await page.goto(url + "/nudges");
  await page.getByRole("heading", { name: "Nudges", exact: true }).waitFor();
  await page.getByRole("link", { name: "New rule" }).first().click();
  await page.getByText("Advanced: the rule as JSON").click();
  await page.getByRole("button", { name: "Save JSON" }).click();
  await page.getByText("When a contact does “Signed Up” with plan = \"enterprise\"").waitFor();
  await shot("nudges");
  const enabled = async () =>
    (await api("/api/rules")).find((rule) => rule.name === "Enterprise signup without a teammate")?.enabled;
  assert.equal(await enabled(), true, "the rule is created on");
  await page.getByRole("button", { name: "Turn off Enterprise signup without a teammate" }).click();
  await page.getByRole("button", { name: "Turn on Enterprise signup without a teammate" }).waitFor();
  assert.equal(await enabled(), false, "the rule is really off, as the API shows");
});

test("a journey is built with forms, fills up, shows who waits at a step, and is paused", async () => {
  await page.goto(url + "/journeys");
  await page.getByRole("link", { name: "New journey" }).click();
  await page.getByLabel("Name", { exact: true }).fill("Trial follow-up");
  await page.getByLabel("Event name").fill("Trial Started");
  // Two property conditions (a list and a number) and two exit events, row by row; a third
  // condition is added and removed again.
  await page.getByRole("button", { name: "Add condition" }).click();
  await page.getByRole("textbox", { name: "Property 1", exact: true }).fill("plan");
  await page.getByRole("textbox", { name: "Property 1 equals" }).fill("pro, team");
  await page.getByRole("button", { name: "Add condition" }).click();
  await page.getByRole("textbox", { name: "Property 2", exact: true }).fill("seats");
  await page.getByRole("textbox", { name: "Property 2 equals" }).fill("5");
  await page.getByRole("button", { name: "Add condition" }).click();
  await page.getByRole("textbox", { name: "Property 3", exact: true }).fill("coupon");
  await page.getByRole("button", { name: "Remove condition 3" }).click();
  await page.getByRole("button", { name: "Add exit event" }).click();
  await page.getByRole("textbox", { name: "Exit event 1", exact: true }).fill("Subscription Started");
  await page.getByRole("button", { name: "Add exit event" }).click();
  await page.getByRole("textbox", { name: "Exit event 2", exact: true }).fill("Trial Cancelled");
  await page.getByRole("textbox", { name: "Exit event 2 with the same property as the entry event" }).fill("trialId");
  const typed = await page.getByRole("textbox", { name: "Property 1 equals" }).inputValue();
  assert.equal(typed, "pro, team", "what was typed stays");
  const third = page.getByRole("textbox", { name: "Property 3", exact: true });
  assert.equal(await third.count(), 0, "the third condition is gone");
  await shot("journey-builder");
  // The new journey starts with a 24-hour wait; add a note and an exit below it.
  await page.getByLabel("Add a step").selectOption("note");
  await page.getByRole("button", { name: "Add step" }).click();
  await page.getByLabel("Note").fill("Started a trial");
  await page.getByLabel("Add a step").selectOption("exit");
  await page.getByRole("button", { name: "Add step" }).click();
  // Reorder and remove: the note goes first, the exit goes away; what was typed stays.
  await page.getByRole("button", { name: "Move step 2 up" }).click();
  await page.getByRole("button", { name: "Remove step 3" }).click();
  assert.equal(await page.getByLabel("Note").inputValue(), "Started a trial");
  assert.equal(await page.getByLabel("Name", { exact: true }).inputValue(), "Trial follow-up");
  await page.getByRole("button", { name: "Save journey" }).click();
  await page.getByRole("heading", { name: "Trial follow-up" }).waitFor();
  const saved = (await api("/api/journeys")).find((j) => j.name === "Trial follow-up");
  assert.deepEqual(
    saved.steps.map((step) => Object.keys(step).filter((key) => key !== "id")[0]),
    ["note", "wait"],
    "the steps as built, top to bottom",
  );
  assert.deepEqual(
    saved.when,
    { event: { name: "Trial Started", where: { plan: ["pro", "team"], seats: 5 } } },
    "both conditions, the list as a list and the number as a number",
  );
  assert.deepEqual(
    saved.exit_when,
    [{ event: "Subscription Started" }, { event: "Trial Cancelled", same: "trialId" }],
    "both exit events",
  );

  const batch = [
    { type: "identify", userId: "u-trial", traits: { email: "trial@example.com", name: "Tess Trial" }, timestamp: ago(0) },
    { type: "track", userId: "u-trial", event: "Trial Started", properties: { plan: "pro", seats: 5 }, timestamp: ago(0) },
  ];
  const answer = await ingest("/v1/batch", { batch });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  // The journey pass runs with the nudges, every 15 seconds.
  const deadline = Date.now() + 45_000;
  let detail;
  do {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const response = await fetch(`${url}/api/journeys/${saved.id}`, { headers: { authorization: "Bearer " + secretKey } });
    detail = await response.json();
  } while (detail.step_counts[0].done < 1 && Date.now() < deadline);
  assert.deepEqual(
    detail.step_counts.map((count) => [count.waiting, count.done]),
    [[0, 1], [1, 0]],
    "the contact entered, passed the note and waits",
  );
  await page.goto(`${url}/journeys/${saved.id}`);
  await page.getByText("1 entered · 1 in it now").waitFor();
  await page.getByRole("link", { name: "0 waiting, 1 done" }).waitFor();
  await page.getByRole("link", { name: "1 waiting, 0 done" }).click();
  await page.getByRole("link", { name: "trial@example.com" }).waitFor();
  await shot("journey-step");
  await page.getByRole("link", { name: "trial@example.com" }).click();
  await page.getByRole("heading", { name: "Journeys" }).waitFor();
  await page.locator("#journeys").getByRole("link", { name: "Trial follow-up" }).waitFor();
  const card = await page.locator("#journeys").textContent();
  assert.match(card, /Step 1: note done/, "the contact's page says which steps it passed and why");

  await page.goto(`${url}/journeys/${saved.id}`);
  await page.getByRole("button", { name: "Pause Trial follow-up" }).click();
  await page.getByRole("button", { name: "Resume Trial follow-up" }).waitFor();
  assert.equal((await api(`/api/journeys/${saved.id}`)).enabled, false, "paused, as the API shows");
  await shot("journey");

  // Its backtest, over the stored events, counts the one contact that entered.
  await page.getByRole("link", { name: "Backtest" }).click();
  await page.getByRole("heading", { name: "Backtest: Trial follow-up" }).waitFor();
  const entered = await page.locator("dl.totals").textContent();
  assert.match(entered, /Entered\s*1/, "one contact would have entered");
  await page.getByLabel("Days back").fill("7");
  await page.getByRole("button", { name: "Run again" }).click();
  await page.getByText("over the last 7 days").waitFor();
  await page.getByRole("heading", { name: /What it would have sent or done/ }).waitFor();
  await shot("journey-backtest");
  await page.goto(url + "/journeys");
  await page.getByRole("link", { name: "Trial follow-up" }).waitFor();
});

test("a journey written through the API opens in the builder and is saved unchanged", async () => {
  const spec = {
    name: "Big orders",
    enabled: true,
    when: { event: { name: "Order Placed", where: { total: 100, plan: ["pro", "team"], gift: false, code: "42" } } },
    entry: { once_per_days: 7 },
    steps: [
      { id: 1, wait_until: { event: "Order Shipped", same: "orderId", hours: 48, then: "exit", timeout: "continue" } },
      { id: 2, branch: { condition: { property: { key: "items", equals: [3, 4] } }, otherwise: { step: 4 } } },
      { id: 3, note: { text: "Big order,\nnot shipped in two days" } },
      { id: 4, cadence: { days: 30 } },
    ],
    exit_when: [{ event: "Order Refunded", same: "orderId" }, { event: "Unsubscribed" }],
  };
  const created = await fetch(url + "/api/journeys", {
    method: "POST",
    headers: { authorization: "Bearer " + secretKey, "content-type": "application/json" },
    body: JSON.stringify(spec),
  });
  assert.equal(created.status, 201, await created.clone().text());
  const { id, updated_at: before } = await created.json();
  await page.goto(`${url}/journeys/${id}`);
  const shown = async (name) => page.getByRole("textbox", { name }).inputValue();
  assert.equal(await shown("Property 4 equals"), "100", "the number shows as typed");
  assert.equal(await shown("Property 1 equals"), '"42"', "text that reads as a number is quoted");
  await page.getByRole("button", { name: "Save journey" }).click();
  await page.getByRole("heading", { name: "Big orders" }).waitFor();
  const saved = await api(`/api/journeys/${id}`);
  assert.notEqual(saved.updated_at, before, "the journey was saved again");
  const { name, enabled, when, entry, steps, exit_when } = saved;
  assert.deepEqual({ name, enabled, when, entry, steps, exit_when }, spec, "the same journey, the number still a number");
});

test("a journey starts on account health, chosen in the form", async () => {
  await page.goto(url + "/journeys/new");
  await page.getByLabel("Name", { exact: true }).fill("Health falls");
  await page.getByLabel("Starts when").selectOption("health_dropped");
  await page.getByRole("button", { name: "Choose what starts the journey" }).click();
  await page.getByLabel("Falls by at least (points, 1 to 100)").fill("0");
  await page.getByLabel("from its highest score within (days)").fill("7");
  await page.getByRole("button", { name: "Save journey" }).click();
  await page.getByRole("alert").filter({ hasText: "points" }).filter({ hasText: "1 to 100" }).waitFor();
  await page.getByLabel("Falls by at least (points, 1 to 100)").fill("20");
  await page.getByRole("button", { name: "Save journey" }).click();
  await page.getByRole("heading", { name: "Health falls" }).waitFor();
  const dropped = (await api("/api/journeys")).find((j) => j.name === "Health falls");
  assert.deepEqual(dropped.when, { health_dropped: { points: 20, within_days: 7 } });

  await page.getByLabel("Starts when").selectOption("health_band_changed");
  await page.getByRole("button", { name: "Choose what starts the journey" }).click();
  await page.getByLabel("Moves into the band").selectOption("at_risk");
  await page.getByRole("button", { name: "Save journey" }).click();
  await page.waitForURL(`${url}/journeys/${dropped.id}`);
  const changed = await api(`/api/journeys/${dropped.id}`);
  assert.deepEqual(changed.when, { health_band_changed: { to: "at_risk" } }, "any band it comes from");
});

test("the time zone and half-life are saved, bad values explained", async () => {
  await page.goto(url + "/settings");
  await page.getByLabel("Time zone").fill("Mars/Olympus");
  await page.getByRole("button", { name: "Save workspace" }).click();
  await page.getByRole("alert").filter({ hasText: "IANA time zone" }).waitFor();
  await page.getByLabel("Time zone").fill("Europe/Paris");
  await page.getByLabel("Closeness half-life (days)").fill("14");
  await page.getByRole("button", { name: "Save workspace" }).click();
  await page.getByRole("status").filter({ hasText: "Saved" }).waitFor();
  assert.equal(await page.getByLabel("Time zone").inputValue(), "Europe/Paris");
  assert.equal(await page.getByLabel("Closeness half-life (days)").inputValue(), "14");
});

test("a contact is deleted", async () => {
  await page.goto(url + "/contacts?q=grace");
  await page.getByRole("link", { name: /Grace Hopper/ }).click();
  await page.getByRole("button", { name: "Delete contact" }).click();
  await page.getByRole("status").filter({ hasText: "Deleted grace@navy.mil" }).waitFor();
  assert.equal(await page.locator("tbody .contact-name").filter({ hasText: "Grace Hopper" }).count(), 0);
});

/** Signs in unless the browser already is. */
async function signedIn() {
  await page.goto(url + "/contacts");
  if (new URL(page.url()).pathname !== "/login") return;
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(url + "/contacts");
}

/** The mails the local SMTP server received (run.sh starts it and points kith at it). */
function mails() {
  return fs.readFileSync(process.env.KITH_SMTP_MAILS, "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line));
}

test("a template is written, fixed, previewed and test-sent; a rule built with the form sends it on an event", async () => {
  await signedIn();
  const who = {
    userId: "u-kate",
    traits: { email: "kate@example.com", name: "Katherine Johnson", first_name: "Katherine" },
    timestamp: ago(0),
  };
  assert.equal((await ingest("/v1/identify", who)).status, 200);

  // A topic.
  await page.goto(url + "/messages");
  await page.getByLabel("New topic").fill("Product tips");
  await page.getByLabel("Default", { exact: true }).selectOption("opt_out");
  await page.getByRole("button", { name: "Create topic" }).click();
  await page.getByRole("status").filter({ hasText: "“Product tips” is created" }).waitFor();

  // A template with a syntax error: refused, with line and column next to the HTML body.
  await page.getByRole("link", { name: "New template" }).first().click();
  await page.getByLabel("Name", { exact: true }).fill("Welcome");
  await page.getByLabel("Topic", { exact: true }).selectOption({ label: "Product tips" });
  await page.getByLabel("Subject").fill("Welcome, {{ contact.first_name }}");
  const html = (ending) =>
    '<h1 style="color: #4f46e5">Hi {{ contact.first_name }}</h1>\n' +
    `<p>{% if event.plan %}Your {{ event.plan }} plan{% ${ending}</p>\n` +
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a>';
  await page.getByLabel("HTML body").fill(html("endif"));
  await page.getByLabel("Plain-text body").fill("Hi {{ contact.first_name }}. Leave: {{ unsubscribe_url }}");
  await page.getByRole("button", { name: "Save template" }).click();
  const error = page.locator("#err-html");
  await error.waitFor();
  assert.match(await error.textContent(), /line 2, column \d+/);
  assert.equal(await page.getByLabel("HTML body").getAttribute("aria-invalid"), "true");
  await shot("template-error");

  // Fixed and saved.
  await page.getByLabel("HTML body").fill(html("endif %}"));
  await page.getByRole("button", { name: "Save template" }).click();
  await page.getByRole("status").filter({ hasText: "Saved" }).waitFor();
  assert.equal(await page.locator("#err-html").isHidden(), true);

  // Previewed for a contact found by name, without leaving the page; typing refreshes it.
  await page.getByLabel("Contact", { exact: true }).fill("Katherine");
  await page.getByRole("button", { name: "Preview" }).click();
  await page.locator("#preview-subject").filter({ hasText: "Welcome, Katherine" }).waitFor();
  await page.frameLocator("iframe.preview-frame").getByRole("heading", { name: "Hi Katherine" }).waitFor();
  await page.getByLabel("Subject").fill("Hello {{ contact.first_name }}!");
  await page.locator("#preview-subject").filter({ hasText: "Hello Katherine!" }).waitFor();
  await page.frameLocator("iframe.preview-frame").getByRole("heading", { name: "Hi Katherine" }).waitFor();
  await shot("template-preview");
  await page.getByRole("button", { name: "Save template" }).click();
  await page.getByRole("status").filter({ hasText: "Saved" }).waitFor();

  // A test, to an address typed.
  await page.getByLabel("Contact", { exact: true }).fill("kate@example.com");
  await page.getByLabel("Send a test to").fill("me@example.com");
  await page.getByRole("button", { name: "Send test" }).click();
  await page.getByRole("status").filter({ hasText: "A test went to me@example.com" }).waitFor();
  const test = mails().find((mail) => mail.to.some((to) => to.includes("me@example.com")));
  assert.ok(test, "the SMTP server got the test");
  assert.match(test.data, /Subject: \[Test\] Hello Katherine!/);

  // A rule built with the form: a refusal next to its field first.
  await page.goto(url + "/nudges/rules/new");
  await page.getByLabel("Name", { exact: true }).fill("Welcome on a pro plan");
  await page.getByLabel("Trigger").selectOption("event");
  await page.getByLabel("Event name", { exact: true }).fill("Chose Plan");
  await page.getByLabel("Property 1").fill("plan");
  await page.getByLabel("equals").first().fill("pro");
  await page.getByLabel("Within").fill("2");
  await page.getByLabel("Send a template to the contact").check();
  await page.getByLabel("Template", { exact: true }).selectOption({ label: "Welcome" });
  await page.getByRole("button", { name: "Save rule" }).click();
  await page.locator("#err-unless_event").filter({ hasText: "cancels the rule" }).waitFor();
  assert.equal(await page.getByLabel("Event name", { exact: true }).inputValue(), "Chose Plan", "what was typed stays");
  await shot("rule-builder");
  await page.getByLabel("Within").fill("");
  await page.getByRole("button", { name: "Save rule" }).click();
  await page.getByText("When a contact does “Chose Plan” with plan = \"pro\": send “Welcome” to the contact").waitFor();
  const rule = (await api("/api/rules")).find((r) => r.name === "Welcome on a pro plan");
  assert.deepEqual(rule.when, { event: { name: "Chose Plan", where: { plan: "pro" } } });

  // The event, as a product sends it: the message goes out and shows on the contact's page.
  const event = { userId: "u-kate", event: "Chose Plan", properties: { plan: "pro" }, timestamp: ago(0) };
  assert.equal((await ingest("/v1/track", event)).status, 200);
  // Rules fire in a pass every 15 seconds, deliveries go every second.
  const deadline = Date.now() + 45_000;
  for (;;) {
    await page.goto(url + "/contacts/kate@example.com");
    if ((await page.locator(".message-log").count()) > 0) break;
    assert.ok(Date.now() < deadline, "the message is on the contact's page within 45 s");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const row = page.locator(".message-log tbody tr").first();
  assert.match(await row.textContent(), /Welcome.*Rule: Welcome on a pro plan.*sent/s);
  const sent = mails().find((mail) => mail.to.some((to) => to.includes("kate@example.com")));
  assert.ok(sent, "the SMTP server got the message");
  assert.match(sent.data, /Subject: Hello Katherine!/);
  assert.match(sent.data, /List-Unsubscribe-Post: List-Unsubscribe=One-Click/);
  await shot("contact-messages");

  // Someone of the team unsubscribes the contact from the topic.
  await page.getByRole("button", { name: "Unsubscribe from Product tips" }).click();
  await page.getByRole("button", { name: "Subscribe to Product tips" }).waitFor();
  const preferences = (await api("/api/contacts/kate@example.com/messages")).preferences;
  assert.equal(preferences.find((p) => p.topic === "Product tips").subscribed, false);
});

test("signing out ends the session", async () => {
  await page.goto(url + "/contacts");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(url + "/login");
  await page.goto(url + "/contacts");
  assert.equal(new URL(page.url()).pathname, "/login");
});

test("an owner is assigned, a follow-up is added, seen on Today and completed; the account's charts are SVG", async () => {
  // A browser of its own, signed in, so this test needs no other.
  const own = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const tab = await own.newPage();
  tab.setDefaultTimeout(10_000);
  try {
    await tab.goto(url + "/login");
    await tab.getByLabel("Email").fill(email);
    await tab.getByLabel("Password").fill(password);
    await tab.getByRole("button", { name: "Sign in" }).click();
    await tab.waitForURL(url + "/contacts");

    const group = "success-co";
    const user = { userId: "success-1", traits: { email: "cs-buyer@example.com", name: "Casey Buyer" }, timestamp: ago(3) };
    assert.equal((await ingest("/v1/identify", user)).status, 200);
    const grouped = { userId: "success-1", groupId: group, traits: { name: "Success Co" }, timestamp: ago(3) };
    assert.equal((await ingest("/v1/group", grouped)).status, 200);
    assert.equal((await ingest("/v1/track", { userId: "success-1", event: "Report Exported", timestamp: ago(1) })).status, 200);

    await tab.goto(url + "/accounts/" + group);
    // The charts are inline SVG images with a title, their numbers readable as text.
    await tab.locator('svg[role="img"]').filter({ has: tab.locator("title", { hasText: "Points by factor" }) }).waitFor();
    const weekly = tab.locator('svg[role="img"]').filter({ has: tab.locator("title", { hasText: "Members active per week" }) });
    await weekly.waitFor();
    assert.equal(await weekly.locator("rect.chart-bar").count(), 12, "one bar per week");
    await tab.locator("figcaption", { hasText: "1 of 1 members active in the last 7 days" }).waitFor();

    // Own the account.
    await tab.getByRole("combobox", { name: "Owner" }).selectOption({ label: email });
    await tab.locator("#owner").getByRole("button", { name: "Save" }).click();
    await tab.locator("#owner").getByText("Owned by " + email).waitFor();
    const mine = await (
      await fetch(url + "/api/accounts?owner=me", { headers: { authorization: "Bearer " + secretKey, "kith-user": email } })
    ).json();
    assert.deepEqual(mine.map((account) => account.group_id), [group]);

    // A follow-up due two days ago: overdue in any time zone.
    const note = "Ask Success Co about the renewal";
    const due = new Date(Date.now() - 2 * DAY).toISOString().slice(0, 10);
    await tab.getByLabel("What to do").fill(note);
    await tab.getByLabel("Due", { exact: true }).fill(due);
    await tab.getByRole("button", { name: "Add follow-up" }).click();
    await tab.locator("#tasks li.task", { hasText: note }).waitFor();

    // Today lists it first, overdue; done, it leaves the list.
    await tab.getByRole("link", { name: "Today" }).click();
    await tab.waitForURL(url + "/today");
    const item = tab.locator("li.task", { hasText: note });
    await item.getByText("overdue").waitFor();
    await tab.getByRole("link", { name: "Success Co" }).first().waitFor();
    await item.getByRole("button", { name: "Done" }).click();
    await tab.waitForURL(url + "/today");
    assert.equal(await tab.locator("li.task", { hasText: note }).count(), 0);
    const tasks = await api("/api/tasks?account=" + group);
    assert.equal(tasks.length, 1);
    assert.equal(tasks[0].done, true, "the task is really done, as the API shows");
  } finally {
    await own.close();
  }
});
