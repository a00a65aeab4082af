//! The differential test: generated event sets against a reference model of identities, timelines,
//! closeness and audiences (`differential/model.rs`). Each seed makes a workspace in a time zone
//! that is not UTC, with times around its local midnights and across a daylight-saving change;
//! people who identify with and without their anonymousId, act by either id, alias an old id, enter
//! and leave Engage audiences, and people who never identify. The events go out shuffled, replayed
//! and cut into random batches over every ingest route, a few requests at a time; then one contact
//! is merged into another and one is erased by a Segment deletion request, and the merged-away and
//! the erased come back. After each phase every contact, its identities, its timeline (day,
//! description, hits), its closeness key and its audiences, and the audiences' counts, must be what
//! the model says.
//!
//! A failure names its seed; `KITH_DIFFERENTIAL_SEED=n` replays that one seed.

mod common;

#[path = "differential/model.rs"]
mod model;

use std::collections::{BTreeMap, BTreeSet};

use common::TestServer;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use model::{Event, Model, Rng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Zones with a non-whole-hour offset or a daylight-saving change inside the generated week,
/// and the first local date of that week.
const ZONES: [(&str, &str); 4] = [
    ("America/St_Johns", "2024-03-07"),
    ("Asia/Kolkata", "2024-03-07"),
    ("Pacific/Chatham", "2024-04-04"),
    ("Europe/Berlin", "2024-03-28"),
];
const DAYS: i64 = 6;
const TRACKS: [&str; 3] = ["Signed Up", "Exported", "Invited"];
const PAGES: [&str; 2] = ["Pricing", "Docs"];
const SCREENS: [&str; 2] = ["Home", "Settings"];
const AUDIENCES: [&str; 2] = ["power_users", "churn_risk"];

/// A person of the workload and their ids.
struct Person {
    email: String,
    user_id: String,
    anonymous_id: String,
    old_id: String,
    identified: bool,
}

/// Event times, each distinct: ties of time are the one case where the contract lets the
/// result depend on something other than the events themselves (equal-time audience changes).
struct Times {
    midnights: Vec<i64>,
    used: BTreeSet<i64>,
}

impl Times {
    fn new(zone: &str, first: &str) -> Times {
        let tz = TimeZone::get(zone).unwrap();
        let first: jiff::civil::Date = first.parse().unwrap();
        let midnights = (0..=DAYS)
            .map(|d| {
                let date = first.checked_add(jiff::Span::new().days(d)).unwrap();
                date.to_zoned(tz.clone()).unwrap().timestamp().as_millisecond()
            })
            .collect();
        Times { midnights, used: BTreeSet::new() }
    }

    /// A time in the week, half of them within 45 minutes of a local midnight.
    fn next(&mut self, rng: &mut Rng) -> i64 {
        const MINUTE: i64 = 60_000;
        let midnight = rng.pick(&self.midnights);
        let mut time = if rng.chance(50) {
            midnight + rng.below(90 * MINUTE as usize) as i64 - 45 * MINUTE
        } else {
            midnight + rng.below(24 * 60 * MINUTE as usize) as i64
        };
        while !self.used.insert(time) {
            time += 1;
        }
        time
    }
}

/// One seed's workload.
struct Workload {
    zone: &'static str,
    people: Vec<Person>,
    times: Times,
    messages: usize,
    seed: u64,
}

impl Workload {
    fn new(seed: u64, rng: &mut Rng) -> Workload {
        let (zone, first) = rng.pick(&ZONES);
        let people = (0..6 + rng.below(5))
            .map(|i| Person {
                email: format!("p{i}@example.com"),
                user_id: format!("u{i}"),
                anonymous_id: format!("a{i}"),
                old_id: format!("old{i}"),
                identified: rng.chance(80),
            })
            .collect();
        Workload { zone, people, times: Times::new(zone, first), messages: 0, seed }
    }

    fn message_id(&mut self) -> String {
        self.messages += 1;
        format!("m{}-{}", self.seed, self.messages)
    }

    /// Everything the people do in the first phase, each event once.
    fn first_phase(&mut self, rng: &mut Rng) -> Vec<Event> {
        let mut events = Vec::new();
        for i in 0..self.people.len() {
            let (email, user_id, anonymous_id, old_id, identified) = {
                let p = &self.people[i];
                (p.email.clone(), p.user_id.clone(), p.anonymous_id.clone(), p.old_id.clone(), p.identified)
            };
            if !identified {
                // Never identified: pending, never a contact.
                for _ in 0..1 + rng.below(3) {
                    let (time, id) = (self.times.next(rng), self.message_id());
                    events.push(Event::activity("track", time, &id, rng.pick(&TRACKS), None, Some(&anonymous_id)));
                }
                continue;
            }
            let links_anonymous = rng.chance(60);
            let aliased = rng.chance(40);
            for n in 0..1 + rng.below(3) {
                let (time, id) = (self.times.next(rng), self.message_id());
                let sent_email = if rng.chance(30) { format!("  {}  ", email.to_uppercase()) } else { email.clone() };
                // The first identify names the userId; a later one may come with the anonymousId only.
                let user = (n == 0 || rng.chance(70)).then_some(user_id.as_str());
                let anonymous =
                    (links_anonymous && (user.is_none() || rng.chance(50))).then_some(anonymous_id.as_str());
                let url = format!("https://app.example.com/{}", rng.below(3));
                let describe = match rng.below(3) {
                    0 => None,
                    1 => Some(("event", "Logged In")),
                    _ => Some(("url", url.as_str())),
                };
                events.push(Event::identify(time, &id, &sent_email, user, anonymous, describe));
            }
            if aliased {
                let (time, id) = (self.times.next(rng), self.message_id());
                events.push(Event::alias(time, &id, &old_id, &user_id));
            }
            for _ in 0..2 + rng.below(9) {
                let (time, id) = (self.times.next(rng), self.message_id());
                let (user, anonymous) = match rng.below(10) {
                    0..=5 => (Some(user_id.as_str()), None),
                    6 if aliased => (Some(old_id.as_str()), None),
                    6..=8 => (None, Some(anonymous_id.as_str())),
                    _ => (Some(user_id.as_str()), Some(anonymous_id.as_str())),
                };
                let (kind, name) = match rng.below(3) {
                    0 => ("track", rng.pick(&TRACKS)),
                    1 => ("page", rng.pick(&PAGES)),
                    _ => ("screen", rng.pick(&SCREENS)),
                };
                events.push(Event::activity(kind, time, &id, name, user, anonymous));
            }
            if rng.chance(50) {
                for _ in 0..1 + rng.below(3) {
                    let (time, id) = (self.times.next(rng), self.message_id());
                    events.push(Event::engage(time, &id, &email, &user_id, rng.pick(&AUDIENCES), rng.chance(60)));
                }
            }
        }
        events
    }

    /// A person coming back after a merge or an erasure: an identify and a track by userId.
    fn comeback(&mut self, rng: &mut Rng, person: usize) -> Vec<Event> {
        let (email, user_id) = (self.people[person].email.clone(), self.people[person].user_id.clone());
        let (time, id) = (self.times.next(rng), self.message_id());
        let identify = Event::identify(time, &id, &email, Some(&user_id), None, Some(("event", "Came Back")));
        let (time, id) = (self.times.next(rng), self.message_id());
        vec![identify, Event::activity("track", time, &id, "Returned", Some(&user_id), None)]
    }
}

/// The same events with some replayed (same messageId, same body), shuffled.
fn arrivals(rng: &mut Rng, events: &[Event]) -> Vec<Value> {
    let mut bodies: Vec<Value> = events.iter().map(|e| e.body.clone()).collect();
    for event in events {
        if rng.chance(15) {
            bodies.push(event.body.clone());
        }
    }
    rng.shuffle(&mut bodies);
    bodies
}

/// The route and body of one request carrying `bodies`, chosen at random among the equivalent
/// ingest routes (`/v1/<type>`, its short path, `/v1/batch`, `/v1/import`, `/v1/events`).
fn request(rng: &mut Rng, bodies: Vec<Value>) -> (String, Value) {
    if let [single] = bodies.as_slice() {
        let kind = single["type"].as_str().unwrap();
        let short = &kind[..1];
        let path = match (kind, rng.below(3)) {
            ("delete", _) | (_, 0) => "/v1/events".to_owned(),
            (_, 1) => format!("/v1/{kind}"),
            _ => format!("/v1/{short}"),
        };
        return (path, single.clone());
    }
    match rng.below(5) {
        0 => ("/v1/batch".to_owned(), json!({"batch": bodies})),
        1 => ("/v1/import".to_owned(), json!({"batch": bodies})),
        2 => ("/v1/b".to_owned(), json!({"batch": bodies})),
        3 => ("/v1/events".to_owned(), json!({"batch": bodies})),
        _ => ("/v1/events".to_owned(), Value::Array(bodies)),
    }
}

/// Sends the bodies in random batches, up to three requests in flight, each to a node picked
/// at random; every request must be wholly accepted.
async fn deliver(nodes: &[&TestServer], rng: &mut Rng, mut bodies: Vec<Value>, seed: u64) {
    let mut requests = Vec::new();
    while !bodies.is_empty() {
        let size = if rng.chance(30) { 1 } else { 2 + rng.below(24) }.min(bodies.len());
        let rest = bodies.split_off(size);
        requests.push(request(rng, bodies));
        bodies = rest;
    }
    for wave in requests.chunks(3) {
        let mut in_flight = tokio::task::JoinSet::new();
        for (path, body) in wave {
            let server = pick_node(nodes, rng);
            let request = server
                .client
                .post(format!("{}{path}", server.url))
                .header("authorization", server.basic())
                .header("content-type", "application/json")
                .body(body.to_string());
            let path = path.clone();
            in_flight.spawn(async move { (path, common::read(request.send().await.expect("request")).await) });
        }
        while let Some(done) = in_flight.join_next().await {
            let (path, (status, answer)) = done.expect("a request task");
            assert_eq!(status, StatusCode::OK, "seed {seed}: {path}: {answer}");
            let rejected = answer.get("rejected").and_then(Value::as_array).map_or(0, Vec::len);
            assert_eq!(rejected, 0, "seed {seed}: {path}: {answer}");
        }
    }
}

/// One of the nodes, at random (with one node, without drawing from `rng`, so that a seed's
/// workload is the same whether or not other nodes run).
fn pick_node<'a>(nodes: &[&'a TestServer], rng: &mut Rng) -> &'a TestServer {
    match nodes {
        [only] => only,
        _ => nodes[rng.below(nodes.len())],
    }
}

/// Asserts that what every node's API shows is what the model expects, reading each contact
/// from a node picked at random.
async fn compare(nodes: &[&TestServer], rng: &mut Rng, model: &Model, seed: u64, phase: &str) {
    for node in nodes {
        let emails: BTreeSet<String> = node.emails().await.into_iter().collect();
        let expected: BTreeSet<String> = model.contacts.keys().cloned().collect();
        assert_eq!(emails, expected, "seed {seed}, {phase}: contacts on {}", node.url);
    }
    for email in model.contacts.keys() {
        compare_contact(pick_node(nodes, rng), model, email, &format!("seed {seed}, {phase}")).await;
    }
    compare_audiences(pick_node(nodes, rng), model, &format!("seed {seed}, {phase}")).await;
}

/// Asserts that one contact is shown as the model expects: identities, timeline, closeness
/// key and audiences.
async fn compare_contact(server: &TestServer, model: &Model, email: &str, context: &str) {
    let contact = &model.contacts[email];
    let shown = server.contact(email).await;
    let identities: BTreeSet<(String, String)> = shown["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["value"].as_str().unwrap().to_owned(), i["kind"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(identities, contact.identities, "{context}: identities of {email}");

    let timeline = server.get(&format!("/api/contacts/{email}/timeline?limit=1000")).await;
    assert!(timeline["next_cursor"].is_null(), "{context}: one page holds the timeline of {email}");
    let days: Vec<(String, i64, String, i64)> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            assert_eq!(item["kind"], "activity", "{context}: {item}");
            let at = item["occurred_at"].as_str().unwrap().parse::<Timestamp>().unwrap();
            (
                item["day"].as_str().unwrap().to_owned(),
                at.as_millisecond(),
                item["description"].as_str().unwrap().to_owned(),
                item["hits"].as_i64().unwrap(),
            )
        })
        .rev()
        .collect();
    let expected_days: Vec<(String, i64, String, i64)> = contact
        .days
        .iter()
        .map(|(date, day)| (date.to_string(), day.time, day.description.clone(), day.hits))
        .collect();
    assert_eq!(days, expected_days, "{context}: timeline of {email} (day, time, description, hits)");

    let key = shown["closeness"]["key"].as_f64();
    match (key, contact.closeness_key(30.0)) {
        (Some(key), Some(expected)) => {
            assert!((key - expected).abs() < 1e-9, "{context}: closeness key of {email}: {key} ≠ {expected}")
        }
        (key, expected) => assert_eq!(key, expected, "{context}: closeness key of {email}"),
    }

    let audiences: BTreeMap<String, (bool, i64)> = shown["audiences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let at = m["changed_at"].as_str().unwrap().parse::<Timestamp>().unwrap();
            (m["audience"].as_str().unwrap().to_owned(), (m["is_member"].as_bool().unwrap(), at.as_millisecond()))
        })
        .collect();
    assert_eq!(audiences, contact.audiences, "{context}: audiences of {email}");
}

/// Asserts that every audience's counts are the model's.
async fn compare_audiences(server: &TestServer, model: &Model, context: &str) {
    for (key, (members, entered, exited)) in model.audiences() {
        let audience = server.get(&format!("/api/audiences/{key}")).await;
        let counts =
            (audience["member_count"].as_u64(), audience["entered_count"].as_u64(), audience["exited_count"].as_u64());
        let expected = (Some(members as u64), Some(entered as u64), Some(exited as u64));
        assert_eq!(counts, expected, "{context}: audience {key} (members, entries, exits)");
    }
}

/// One seed, start to end, on a fresh database served by `node_count` nodes.
async fn run_seed(seed: u64, node_count: usize) {
    let mut rng = Rng::new(seed);
    let mut workload = Workload::new(seed, &mut rng);
    let server = TestServer::start().await;
    let mut others = Vec::new();
    for _ in 1..node_count {
        others.push(server.another_node().await);
    }
    let nodes: Vec<&TestServer> = std::iter::once(&server).chain(&others).collect();
    server.set_time_zone(workload.zone).await;
    let mut model = Model::new(workload.zone);

    let events = workload.first_phase(&mut rng);
    model.apply_all(&events);
    let bodies = arrivals(&mut rng, &events);
    deliver(&nodes, &mut rng, bodies, seed).await;
    compare(&nodes, &mut rng, &model, seed, "after the first delivery").await;

    // A merge and an erasure, between two people who have contacts.
    let mut known: Vec<usize> =
        (0..workload.people.len()).filter(|&i| model.contacts.contains_key(&workload.people[i].email)).collect();
    rng.shuffle(&mut known);
    let mut comebacks = Vec::new();
    if let [into, from, ..] = known[..] {
        let (into_email, from_email) = (&workload.people[into].email, &workload.people[from].email);
        let (status, body) = pick_node(&nodes, &mut rng)
            .call(Method::POST, &format!("/api/contacts/{into_email}/merge"), &json!({"contact": from_email}))
            .await;
        assert_eq!(status, StatusCode::OK, "seed {seed}: merge: {body}");
        model.merge(into_email, from_email);
        comebacks.extend(workload.comeback(&mut rng, from));
    }
    if let [_, _, erased, ..] = known[..] {
        let (time, id) = (workload.times.next(&mut rng), workload.message_id());
        let deletion = Event::delete(time, &id, &workload.people[erased].user_id);
        deliver(&nodes, &mut rng, vec![deletion.body.clone()], seed).await;
        model.apply_all(&[deletion]);
        comebacks.extend(workload.comeback(&mut rng, erased));
    }
    compare(&nodes, &mut rng, &model, seed, "after the merge and the erasure").await;
    drop(nodes);
    // The first node restarts; the others, if any, keep serving.
    let server = server.restart(common::Options::default()).await;
    let nodes: Vec<&TestServer> = std::iter::once(&server).chain(&others).collect();
    compare(&nodes, &mut rng, &model, seed, "after a restart").await;

    // The merged-away person's ids and email now reach the contact they went into; the erased
    // person starts again from nothing; replays of the first phase still change nothing.
    let replays: Vec<Event> = events.iter().filter(|_| rng.chance(10)).cloned().collect();
    // Whether an erased person's messageIds are still remembered is not the contract's to say:
    // their events are left out of the replays.
    let survivors: Vec<Event> = replays
        .into_iter()
        .filter(|e| !known.get(2).is_some_and(|&erased| mentions(e, &workload.people[erased])))
        .collect();
    model.apply_all(&comebacks);
    model.apply_all(&survivors);
    let mut bodies = arrivals(&mut rng, &comebacks);
    bodies.extend(survivors.iter().map(|e| e.body.clone()));
    rng.shuffle(&mut bodies);
    deliver(&nodes, &mut rng, bodies, seed).await;
    compare(&nodes, &mut rng, &model, seed, "after the comebacks").await;

    // A new time zone: every day is counted again from the stored events, in the background.
    let (zone, _) = ZONES[(ZONES.iter().position(|(z, _)| *z == workload.zone).unwrap() + 1) % ZONES.len()];
    server.set_time_zone(zone).await;
    model.set_zone(zone);
    let reprojection = server.get("/api/workspace/reprojection").await;
    assert_eq!(reprojection["state"], "running", "seed {seed}: {reprojection}");
    assert_eq!(reprojection["reason"], "time zone changed");
    let report = server.run_jobs().await;
    assert_eq!(report.reprojected as usize, model.contacts.len(), "seed {seed}: contacts rebuilt");
    let reprojection = server.get("/api/workspace/reprojection").await;
    assert_eq!((reprojection["state"].as_str(), reprojection["percent_done"].as_u64()), (Some("finished"), Some(100)));
    compare(&nodes, &mut rng, &model, seed, &format!("after the time zone changed to {zone}")).await;
    drop(nodes);
    for node in others {
        node.stop().await;
    }
    server.stop().await;
}

/// Whether an event names one of a person's ids or their email.
fn mentions(event: &Event, person: &Person) -> bool {
    let ids = [&person.user_id, &person.anonymous_id, &person.old_id];
    [&event.user_id, &event.anonymous_id, &event.previous_id].into_iter().flatten().any(|id| ids.contains(&id))
        || event.email.as_ref() == Some(&person.email)
}

/// The seeds to run: `KITH_DIFFERENTIAL_SEED` alone, else a fixed set (the same on every run,
/// so a failure reproduces).
fn seeds() -> Vec<u64> {
    match std::env::var("KITH_DIFFERENTIAL_SEED") {
        Ok(seed) => vec![seed.trim().parse().expect("KITH_DIFFERENTIAL_SEED is a number")],
        Err(_) => (1..=6).collect(),
    }
}

async fn the_server_agrees_with_the_model_over_generated_workloads() {
    for seed in seeds() {
        run_seed(seed, 1).await;
    }
}

/// The same workloads sent to three PostgreSQL nodes on one database, each request to a node
/// picked at random (three in flight), each contact read back from a node picked at random,
/// and every node listing every contact: several nodes store what one node stores.
#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn three_postgres_nodes_agree_with_the_model_over_generated_workloads() {
    common::run_on(common::Backend::Postgres, "three_nodes", async {
        for seed in seeds() {
            run_seed(seed, 3).await;
        }
    })
    .await
}

/// The case the generated workloads found: in one batch, aliases come before the identify
/// that links their userId, one alias hanging on the other. Both must link, and the events
/// sent by the aliased ids must reach the contact, as they would had the batch been cut.
async fn aliases_before_their_identify_in_one_batch_still_link() {
    let server = TestServer::start().await;
    let at = |hour: i64| Timestamp::from_second(1_709_888_400 + hour * 3600).unwrap().as_millisecond();
    let events = [
        Event::activity("track", at(1), "t1", "Signed Up", Some("older"), None),
        Event::alias(at(2), "a1", "older", "old"),
        Event::alias(at(3), "a2", "old", "u1"),
        Event::identify(at(4), "i1", "ada@example.com", Some("u1"), None, None),
        Event::activity("track", at(5), "t2", "Exported", Some("old"), None),
    ];
    let mut model = Model::new("UTC");
    model.apply_all(&events);
    let bodies: Vec<Value> = events.iter().map(|e| e.body.clone()).collect();
    server.ingest("/v1/batch", &json!({"batch": bodies})).await;
    compare(&[&server], &mut Rng::new(0), &model, 0, "one batch").await;
    let identities = &model.contacts["ada@example.com"].identities;
    assert!(identities.contains(&("older".to_owned(), "alias".to_owned())), "{identities:?}");
    server.stop().await;
}

backend_tests!(
    the_server_agrees_with_the_model_over_generated_workloads,
    aliases_before_their_identify_in_one_batch_still_link
);
