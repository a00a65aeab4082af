//! Several kith nodes on one PostgreSQL database: two real `kith serve` processes take the same
//! users' events at once, in parallel and with replays. Afterwards there is one activity
//! interaction per contact per day, no messageId stored twice, no event lost, and the data
//! (closeness keys included) equals a single node's run of the same events. The node applying
//! the event log can be killed with SIGKILL mid-load: the other takes its lease over and
//! nothing acknowledged is lost or counted twice.
//!
//! Runs when `KITH_TEST_DATABASE_URL` names a PostgreSQL server; without it these tests are
//! compiled as ignored (see the crate's build.rs), so the run reports them as skipped.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running `kith serve` on PostgreSQL, stopped when dropped.
struct Node {
    child: Child,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The keys the first node of a database prints.
struct Keys {
    write: String,
    secret: String,
}

/// Starts a node on `database_url`; the first node of a database returns the keys it prints.
fn start_node(database_url: &str, first: bool) -> (Node, Option<Keys>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command.args(["--database-url", database_url, "serve"]).env_remove("KITH_CONFIG").env("KITH_LOG", "warn");
    let served = common::serve(command);
    let printed = |what: &str| {
        let line = served.banner.iter().find(|line| line.contains(what));
        line.and_then(|line| line.split_whitespace().last()).map(str::to_owned)
    };
    let keys = printed("write key").zip(printed("secret key")).map(|(write, secret)| Keys { write, secret });
    assert!(!first || keys.is_some(), "the first node prints its keys");
    (Node { child: served.child, url: format!("http://127.0.0.1:{}", served.port) }, keys)
}

/// One request: a path and its body.
#[derive(Clone)]
struct Request {
    path: &'static str,
    body: Value,
}

/// Every user identifies twice (two messageIds, so both nodes may create the contact at
/// once) and is active over eight days, two events a day, each its own request so that
/// the two nodes update the same contact, its days and its contact-days at the same moment; tracks and pages
/// may also arrive before any identify and wait as pending.
fn workload() -> (Vec<Request>, BTreeSet<String>) {
    let mut requests = Vec::new();
    let mut message_ids = BTreeSet::new();
    for user in 0..30 {
        for copy in 0..2 {
            let id = format!("identify-{user}-{copy}");
            message_ids.insert(id.clone());
            requests.push(Request {
                path: "/v1/identify",
                body: json!({"messageId": id, "userId": format!("user-{user}"),
                    "timestamp": format!("2024-06-01T08:0{copy}:00Z"),
                    "traits": {"email": format!("user{user}@example.com"), "name": format!("User {user}")}}),
            });
        }
        for day in 1..=8 {
            for i in 0..2 {
                let id = format!("u{user}-d{day}-{i}");
                message_ids.insert(id.clone());
                let time = format!("2024-06-{day:02}T1{}:{:02}:00Z", i, user % 60);
                let user_id = format!("user-{user}");
                requests.push(if (user + i) % 2 == 0 {
                    Request {
                        path: "/v1/track",
                        body: json!({"event": "Report Viewed", "messageId": id, "userId": user_id, "timestamp": time}),
                    }
                } else {
                    Request {
                        path: "/v1/page",
                        body: json!({"messageId": id, "userId": user_id, "timestamp": time,
                            "properties": {"url": format!("https://app.example.com/reports/{i}")}}),
                    }
                });
            }
        }
    }
    (requests, message_ids)
}

/// What the day rule (one activity per contact per day) says each contact-day must show, worked out
/// from the workload itself: `(email, "activity", day, occurred_at, description, hits)` with the
/// earliest event's time and description (ties broken by the smaller description) and one hit per
/// distinct messageId.
fn expected_days(requests: &[Request]) -> Vec<(String, String, i32, i64, String, i64)> {
    let mut days: BTreeMap<(String, i32), (i64, String, BTreeSet<String>)> = BTreeMap::new();
    for Request { path, body } in requests {
        let email = body["userId"].as_str().unwrap().replace("user-", "user") + "@example.com";
        let time = body["timestamp"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_millisecond();
        let description = match *path {
            "/v1/track" => body["event"].as_str().unwrap().to_owned(),
            "/v1/page" => format!("Visited {}", body["properties"]["url"].as_str().unwrap()),
            _ => "Active in your product".to_owned(),
        };
        let day = i32::try_from(time.div_euclid(86_400_000)).unwrap();
        let entry = days.entry((email, day)).or_insert_with(|| (time, description.clone(), BTreeSet::new()));
        if (time, &description) < (entry.0, &entry.1) {
            (entry.0, entry.1) = (time, description);
        }
        entry.2.insert(body["messageId"].as_str().unwrap().to_owned());
    }
    days.into_iter()
        .map(|((email, day), (time, description, ids))| {
            (email, "activity".to_owned(), day, time, description, ids.len() as i64)
        })
        .collect()
}

fn send(client: &reqwest::blocking::Client, node: &str, key: &str, request: &Request) {
    let response = client
        .post(format!("{node}{}", request.path))
        .basic_auth(key, Some(""))
        .json(&request.body)
        .send()
        .expect("request");
    assert_eq!(response.status(), 200, "{}", response.text().unwrap_or_default());
}

/// Sends every request from several threads: request `n` goes to node `n % nodes.len()`,
/// and every third one is replayed on the next node.
fn send_all(nodes: &[&str], key: &str, requests: &[Request]) {
    let queue = Mutex::new(requests.iter().enumerate().rev().collect::<Vec<_>>());
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                let client = reqwest::blocking::Client::new();
                loop {
                    // Not in the loop's condition: a guard there would be held for the whole
                    // body and send one request at a time.
                    let next = queue.lock().unwrap().pop();
                    let Some((n, request)) = next else { break };
                    send(&client, nodes[n % nodes.len()], key, request);
                    if n % 3 == 0 {
                        send(&client, nodes[(n + 1) % nodes.len()], key, request);
                    }
                }
            });
        }
    });
}

/// `(email, name, first seen, last seen, last interaction, warm until)` of a contact.
type ContactRow = (String, Option<String>, i64, i64, Option<i64>, Option<i64>);

/// What a run leaves in the database, in a form two runs can be compared by.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// `(email, kind, day, occurred_at, description, hits)` of every interaction.
    interactions: Vec<(String, String, i32, i64, String, i64)>,
    /// `(email, closeness key)`.
    closeness: Vec<(String, Option<f64>)>,
    /// Every contact's row.
    contacts: Vec<ContactRow>,
}

/// Waits, with the nodes still running, until the projection has applied the whole event log.
async fn settle(url: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let start = Instant::now();
    loop {
        let waiting: i64 = client.query_one("SELECT count(*) FROM event_log", &[]).await.unwrap().get(0);
        if waiting == 0 {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{waiting} events still unapplied after a minute");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read_back(url: &str, message_ids: &BTreeSet<String>) -> Outcome {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let doubled = client
        .query(
            "SELECT contact_id, day FROM interactions WHERE kind = 'activity' GROUP BY 1, 2 HAVING count(*) > 1",
            &[],
        )
        .await
        .unwrap();
    assert!(doubled.is_empty(), "{} contact-days have more than one activity interaction", doubled.len());
    let stored: Vec<String> =
        client.query("SELECT message_id FROM events", &[]).await.unwrap().iter().map(|row| row.get(0)).collect();
    assert_eq!(stored.len(), message_ids.len(), "every event stored exactly once");
    assert_eq!(&stored.into_iter().collect::<BTreeSet<_>>(), message_ids, "no event lost");
    let pending: i64 =
        client.query_one("SELECT count(*) FROM events WHERE contact_id IS NULL", &[]).await.unwrap().get(0);
    assert_eq!(pending, 0, "every event reached its contact");
    let interactions = client
        .query(
            "SELECT c.email, i.kind, i.day, i.occurred_at, i.description, i.hits
             FROM interactions i JOIN contacts c ON c.id = i.contact_id
             ORDER BY c.email, i.day, i.kind, i.occurred_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5)))
        .collect();
    let closeness = client
        .query("SELECT email, closeness_key FROM contacts ORDER BY email", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let contacts = client
        .query(
            "SELECT email, name, first_seen_at, last_seen_at, last_interaction_at, warm_until FROM contacts ORDER BY email",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5)))
        .collect();
    Outcome { interactions, closeness, contacts }
}

/// The PostgreSQL server to run on; a test run without one (`--include-ignored`) fails rather
/// than passing without having run.
fn postgres_server() -> String {
    std::env::var("KITH_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .expect("set KITH_TEST_DATABASE_URL=postgres://… naming a PostgreSQL server")
}

/// A fresh database named after `purpose` on the test's server: `(server URL, name, URL)`.
async fn fresh_database(purpose: &str) -> (String, String, String) {
    let server = postgres_server();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("kith_test_{purpose}_{}_{nanos}", std::process::id());
    let url = kith_store::postgres::create_database(&server, &name).await.expect("create database");
    (server, name, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn two_nodes_store_what_one_node_stores() {
    let (server, two, two_url) = fresh_database("two_nodes").await;
    let (_, one, one_url) = fresh_database("one_node").await;
    let (requests, message_ids) = workload();
    let expected = expected_days(&requests);

    let outcome = {
        let (url, requests) = (two_url.clone(), requests.clone());
        let nodes = tokio::task::spawn_blocking(move || {
            let (a, keys) = start_node(&url, true);
            let (b, _) = start_node(&url, false);
            let key = keys.unwrap().write;
            send_all(&[&a.url, &b.url], &key, &requests);
            // Replays of everything, through the other node each time.
            send_all(&[&b.url, &a.url], &key, &requests);
            [a, b]
        })
        .await
        .unwrap();
        settle(&two_url).await;
        drop(nodes);
        read_back(&two_url, &message_ids).await
    };
    let reference = {
        let url = one_url.clone();
        let node = tokio::task::spawn_blocking(move || {
            let (node, keys) = start_node(&url, true);
            send_all(&[&node.url], &keys.unwrap().write, &requests);
            node
        })
        .await
        .unwrap();
        settle(&one_url).await;
        drop(node);
        read_back(&one_url, &message_ids).await
    };

    // Every day described by its earliest event, on two nodes as on one: compared with what
    // the workload itself says, so that a wrong description cannot pass by being wrong on both.
    let mut days = outcome.interactions.clone();
    days.sort();
    assert_eq!(days.len(), expected.len());
    for (day, expected) in days.iter().zip(&expected) {
        assert_eq!(day, expected, "a contact-day on two nodes");
    }
    assert_eq!(outcome.interactions, reference.interactions, "the same timelines as on one node");
    assert_eq!(outcome.contacts, reference.contacts, "the same contact rows as on one node");
    assert_eq!(outcome.closeness.len(), reference.closeness.len());
    for ((email, key), (_, expected)) in outcome.closeness.iter().zip(&reference.closeness) {
        let (key, expected) = (key.expect("a closeness key"), expected.expect("a closeness key"));
        assert!((key - expected).abs() <= 1e-9 * expected.abs().max(1.0), "{email}: closeness key {key} ≠ {expected}");
    }
    for name in [two, one] {
        kith_store::postgres::drop_database(&server, &name).await.expect("drop database");
    }
}

/// Races between nodes, each user's at the same moment: the first identify of a new user
/// reaches both nodes at once (two messageIds), and the user's track, which finds no contact
/// yet and must wait as pending, reaches one of them. Afterwards each user is one contact,
/// holding all three of its events, and nothing is left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn a_new_user_racing_on_two_nodes_is_one_contact_with_every_event() {
    const USERS: usize = 40;
    let (server, name, url) = fresh_database("races").await;
    let nodes = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let (a, keys) = start_node(&url, true);
            let (b, _) = start_node(&url, false);
            let key = keys.unwrap().write;
            let client = reqwest::blocking::Client::new();
            for user in 0..USERS {
                let (user_id, email) = (format!("racer-{user}"), format!("racer{user}@example.com"));
                let identify = |copy: &str| Request {
                    path: "/v1/identify",
                    body: json!({"messageId": format!("race-identify-{user}-{copy}"), "userId": user_id,
                        "timestamp": "2024-06-03T09:00:00Z", "traits": {"email": email}}),
                };
                let track = Request {
                    path: "/v1/track",
                    body: json!({"messageId": format!("race-track-{user}"), "userId": user_id,
                        "event": "Report Viewed", "timestamp": "2024-06-03T08:59:00Z"}),
                };
                let sends = [(&a.url, identify("a")), (&b.url, identify("b")), ([&a.url, &b.url][user % 2], track)];
                let start = std::sync::Barrier::new(sends.len());
                std::thread::scope(|scope| {
                    for (node, request) in &sends {
                        let (client, key, start) = (&client, &key, &start);
                        scope.spawn(move || {
                            start.wait();
                            send(client, node, key, request);
                        });
                    }
                });
            }
            [a, b]
        })
        .await
        .unwrap()
    };
    settle(&url).await;
    drop(nodes);

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let contacts: i64 = client
        .query_one("SELECT count(*) FROM contacts WHERE email LIKE 'racer%@example.com'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(contacts, USERS as i64, "one contact per user");
    let pending: i64 =
        client.query_one("SELECT count(*) FROM events WHERE contact_id IS NULL", &[]).await.unwrap().get(0);
    assert_eq!(pending, 0, "every track reached its user's contact");
    let misplaced: i64 = client
        .query_one(
            "SELECT count(*) FROM events e JOIN contacts c ON c.id = e.contact_id
             WHERE c.email <> replace(e.user_id, 'racer-', 'racer') || '@example.com'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(misplaced, 0, "each event on its own user's contact");
    let events: i64 = client.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0);
    assert_eq!(events, 3 * USERS as i64, "every event stored once");
    drop(client);
    kith_store::postgres::drop_database(&server, &name).await.expect("drop database");
}

/// The node holding the projection lease (the first started) is killed with SIGKILL a third of
/// the way through the load. Clients retry what it did not answer on the other node, as a
/// load balancer would send them; every identify acknowledged by one node is read back at once
/// through the other. Afterwards the survivor has taken the lease over and applied everything:
/// each event stored once, each contact-day with one hit per distinct messageId, nothing
/// pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn a_killed_projection_node_is_taken_over_and_nothing_is_lost_or_counted_twice() {
    let (server, name, url) = fresh_database("takeover").await;
    let (requests, message_ids) = workload();
    let expected = expected_days(&requests);

    let survivor = {
        let (url, requests) = (url.clone(), requests.clone());
        tokio::task::spawn_blocking(move || {
            let (leader, keys) = start_node(&url, true);
            let (survivor, _) = start_node(&url, false);
            let keys = keys.unwrap();
            let urls = [leader.url.clone(), survivor.url.clone()];
            let leader = Mutex::new(Some(leader));
            let queue = Mutex::new(requests.iter().enumerate().rev().collect::<Vec<_>>());
            let (sent, kill_at) = (AtomicUsize::new(0), requests.len() / 3);
            std::thread::scope(|scope| {
                for _ in 0..8 {
                    scope.spawn(|| {
                        let client =
                            reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
                        loop {
                            let next = queue.lock().unwrap().pop();
                            let Some((n, request)) = next else { break };
                            if sent.fetch_add(1, Ordering::SeqCst) == kill_at {
                                let mut leader = leader.lock().unwrap();
                                if let Some(node) = leader.as_mut() {
                                    node.child.kill().expect("SIGKILL the leading node");
                                    node.child.wait().unwrap();
                                }
                            }
                            let first = n % 2;
                            let answered = client
                                .post(format!("{}{}", urls[first], request.path))
                                .basic_auth(&keys.write, Some(""))
                                .json(&request.body)
                                .send()
                                .map(|response| response.status().is_success())
                                .unwrap_or(false);
                            let node = if answered {
                                first
                            } else {
                                // The retry of a client behind a load balancer.
                                send(&client, &urls[1], &keys.write, request);
                                1
                            };
                            if request.path == "/v1/identify" {
                                // Read after the 200 through the other node, if it still runs.
                                let other = if node == 0 || leader.lock().unwrap().is_none() { 1 } else { 0 };
                                let email = request.body["traits"]["email"].as_str().unwrap();
                                let response = client
                                    .get(format!("{}/api/contacts/{email}", urls[other]))
                                    .bearer_auth(&keys.secret)
                                    .send();
                                // A node killed meanwhile does not answer at all.
                                if let Ok(response) = response {
                                    assert_eq!(response.status(), 200, "{email} read on node {other} after its 200");
                                }
                            }
                        }
                    });
                }
            });
            leader.lock().unwrap().take();
            survivor
        })
        .await
        .unwrap()
    };
    settle(&url).await;
    let metrics = reqwest::get(format!("{}/metrics", survivor.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kith_projection_leases 1\n"), "the survivor applies the log: {metrics}");
    drop(survivor);
    let outcome = read_back(&url, &message_ids).await;
    let mut days = outcome.interactions.clone();
    days.sort();
    assert_eq!(days, expected, "every contact-day once, with one hit per distinct messageId");
    kith_store::postgres::drop_database(&server, &name).await.expect("drop database");
}

#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn migrate_applies_the_postgresql_schema_once() {
    let (server, name, url) = fresh_database("migrate").await;
    let migrate = |url: String| {
        tokio::task::spawn_blocking(move || {
            let output = Command::new(env!("CARGO_BIN_EXE_kith"))
                .env_remove("KITH_CONFIG")
                .env("KITH_DATABASE_URL", &url)
                .arg("migrate")
                .output()
                .expect("run kith migrate");
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            String::from_utf8(output.stdout).unwrap()
        })
    };
    assert!(migrate(url.clone()).await.unwrap().contains("applied migrations [1"));
    assert!(migrate(url).await.unwrap().contains("up to date"));
    kith_store::postgres::drop_database(&server, &name).await.expect("drop database");
}
