//! The messageId window: a duplicate is recognised for at least 7 days, in its own workspace only,
//! and a messageId is taken only by an event that was stored.

mod common;

use common::{Backend, TestDatabase, TestServer};
use jiff::{SignedDuration, Timestamp};
use kith_core::event::{parse_value, ParseContext, Parsed};
use kith_server::auth::generate_key;
use kith_server::Clock;
use kith_store::{Incoming, KeyKind, Outcome};
use reqwest::StatusCode;
use serde_json::{json, Value};

const T0: &str = "2024-07-01T09:00:00Z";

fn track(name: &str, time: &str, message_id: &str) -> Value {
    json!({"type": "track", "userId": "u1", "event": name, "timestamp": time, "messageId": message_id})
}

/// Ada's identify, at T0, with this messageId.
fn identify_ada(message_id: &str) -> Value {
    json!({"userId": "u1", "traits": {"email": "ada@example.com"}, "timestamp": T0, "messageId": message_id})
}

async fn event_count(server: &TestServer, email: &str) -> usize {
    let contact = server.contact(email).await;
    server.get(&format!("/api/contacts/{}/events", contact["id"])).await["items"].as_array().unwrap().len()
}

async fn a_duplicate_seven_days_later_is_still_a_duplicate() {
    let clock = Clock::manual(T0.parse::<Timestamp>().unwrap());
    let server = TestServer::start_with_clock(clock.clone()).await;
    server.ingest("/v1/identify", &identify_ada("i1")).await;
    server.ingest("/v1/track", &track("Exported", "2024-07-01T10:00:00Z", "t1")).await;
    let before = server.timeline("ada@example.com").await;
    assert_eq!(event_count(&server, "ada@example.com").await, 2);

    // A week and a little more, with every background job run on the way, as a server that
    // prunes old messageIds would.
    for _ in 0..7 {
        clock.advance(SignedDuration::from_hours(24));
        server.run_jobs().await;
    }
    clock.advance(SignedDuration::from_mins(5));
    server.run_jobs().await;
    // The same message again, and the same messageId with another body: both duplicates.
    let answer = server.ingest("/v1/track", &track("Exported", "2024-07-01T10:00:00Z", "t1")).await;
    assert_eq!(answer["success"], true, "a duplicate is acknowledged");
    server.ingest("/v1/track", &track("Exported again", "2024-07-08T09:00:00Z", "t1")).await;
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "u1", "traits": {"email": "ada@example.com", "plan": "pro"}, "timestamp": T0, "messageId": "i1"}),
        )
        .await;
    assert_eq!(event_count(&server, "ada@example.com").await, 2, "nothing stored twice");
    assert_eq!(server.timeline("ada@example.com").await, before, "no new day, no extra hit");
    assert!(server.contact("ada@example.com").await["traits"].get("plan").is_none());
    server.stop().await;
}

async fn the_same_message_id_in_two_workspaces_is_two_events() {
    let server = TestServer::start().await;
    let store = &server.state.store;
    let other = store.create_workspace("Other").await.unwrap();
    let (other_write, other_secret) = (generate_key(KeyKind::Write), generate_key(KeyKind::Secret));
    store.create_key(other.id, KeyKind::Write, "w", &other_write).await.unwrap();
    store.create_key(other.id, KeyKind::Secret, "s", &other_secret).await.unwrap();

    let identify =
        json!({"userId": "u1", "traits": {"email": "ada@example.com"}, "timestamp": T0, "messageId": "shared"});
    let event = track("Exported", "2024-07-01T10:00:00Z", "shared-track");
    for _ in 0..2 {
        for key in [&server.write_key, &other_write] {
            for (path, body) in [("/v1/identify", &identify), ("/v1/track", &event)] {
                let response = server
                    .client
                    .post(format!("{}{path}", server.url))
                    .header("authorization", common::basic(key))
                    .json(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            }
        }
    }
    assert_eq!(event_count(&server, "ada@example.com").await, 2);
    let read = |path: String| {
        let request = server.client.get(format!("{}{path}", server.url)).bearer_auth(&other_secret);
        async move { common::read(request.send().await.unwrap()).await }
    };
    let (status, contact) = read("/api/contacts/ada@example.com".into()).await;
    assert_eq!(status, StatusCode::OK, "the other workspace stored its own copy: {contact}");
    assert_ne!(contact["id"], server.contact("ada@example.com").await["id"]);
    let (_, events) = read(format!("/api/contacts/{}/events", contact["id"])).await;
    assert_eq!(events["items"].as_array().unwrap().len(), 2, "{events}");
    let (_, timeline) = read("/api/contacts/ada@example.com/timeline".into()).await;
    assert_eq!(timeline["items"][0]["hits"], 2, "{timeline}");
    server.stop().await;
}

async fn a_refused_event_leaves_its_message_id_free_for_the_corrected_retry() {
    let server = TestServer::start().await;
    // Refused when read: no timestamp.
    let (status, body) = server
        .send_json("/v1/identify", &json!({"userId": "u1", "traits": {"email": "ada@example.com"}, "messageId": "r1"}))
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("missing_timestamp")));
    server.ingest("/v1/identify", &identify_ada("r1")).await;
    assert_eq!(server.emails().await, ["ada@example.com"], "the retry was stored, not taken for a duplicate");

    // Refused when stored: an identify of an unknown user without an email.
    let (status, body) = server
        .send_json(
            "/v1/identify",
            &json!({"userId": "u2", "traits": {"plan": "pro"}, "timestamp": T0, "messageId": "r2"}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("missing_email")), "{body}");
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "u2", "traits": {"plan": "pro", "email": "bob@example.com"}, "timestamp": T0, "messageId": "r2"}),
        )
        .await;
    assert_eq!(server.contact("bob@example.com").await["traits"]["plan"], "pro");

    // Refused inside a batch whose other events are stored.
    let batch = json!({"batch": [
        track("Exported", "2024-07-01T10:00:00Z", "b1"),
        {"type": "identify", "userId": "u3", "timestamp": T0, "messageId": "r3"},
    ]});
    let (status, body) = server.send_json("/v1/batch", &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rejected"][0]["index"], 1, "{body}");
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "u3", "traits": {"email": "cy@example.com"}, "timestamp": T0, "messageId": "r3"}),
        )
        .await;
    assert_eq!(server.emails().await.len(), 3);
    assert_eq!(event_count(&server, "cy@example.com").await, 1);
    assert_eq!(event_count(&server, "ada@example.com").await, 2, "the identify and the batch's track");
    server.stop().await;
}

/// SQLite keeps recent messageIds in memory and older ones in sealed runs in the event log's
/// file (`kith-store/src/sqlite/dedup.rs`): none may be forgotten inside the window, across a
/// seal, a restart and a damaged filter, and a run is dropped whole once it is old enough.
#[tokio::test]
async fn sqlite_remembers_message_ids_across_a_seal_a_restart_and_a_filter_rebuild() {
    let clock = Clock::manual(T0.parse::<Timestamp>().unwrap());
    let mut server = TestServer::start_with_clock(clock.clone()).await;
    server.ingest("/v1/identify", &identify_ada("w0")).await;
    server.ingest("/v1/track", &track("Exported", "2024-07-01T09:30:00Z", "w1")).await;
    // Two hours on, the next append seals the first two messageIds into a run.
    clock.advance(SignedDuration::from_hours(2));
    server.ingest("/v1/track", &track("Exported", "2024-07-01T11:00:00Z", "w2")).await;
    let log = server.sqlite_file("kith.db.log").expect("a SQLite server");
    let runs =
        |sql: &str| -> i64 { rusqlite::Connection::open(&log).unwrap().query_row(sql, [], |row| row.get(0)).unwrap() };
    assert_eq!(runs("SELECT COUNT(*) FROM dedup_runs"), 1, "one sealed run");
    assert_eq!(runs("SELECT COUNT(*) FROM dedup_digests"), 2, "holding the two older messageIds");

    // A restart: the run's filter comes back from the file, the unsealed w2 from the log.
    server = server.restart(common::Options { clock: Some(clock.clone()), ..Default::default() }).await;
    assert_eq!(event_count(&server, "ada@example.com").await, 3);
    // A damaged filter is rebuilt from the run at the next start (the running server holds
    // its copy in memory).
    rusqlite::Connection::open(&log).unwrap().execute("UPDATE dedup_runs SET filter = X'0102'", []).unwrap();
    server = server.restart(common::Options { clock: Some(clock.clone()), ..Default::default() }).await;

    // Six days and 23 hours after the first events: every messageId is still taken.
    clock.advance(SignedDuration::from_hours(6 * 24 + 21));
    for (id, time) in [("w1", "2024-07-01T09:30:00Z"), ("w2", "2024-07-01T11:00:00Z")] {
        let answer = server.ingest("/v1/track", &track("Exported", time, id)).await;
        assert_eq!(answer["success"], true, "a duplicate is acknowledged");
    }
    assert_eq!(
        event_count(&server, "ada@example.com").await,
        3,
        "no duplicate stored, after seal, restart and rebuild"
    );

    // Nine days on, two appends two hours apart: the second seals the first, and the runs
    // older than the window go whole; their messageIds are free again.
    clock.advance(SignedDuration::from_hours(2 * 24 + 3));
    server.ingest("/v1/track", &track("Opened", "2024-07-10T10:00:00Z", "w3")).await;
    clock.advance(SignedDuration::from_hours(2));
    server.ingest("/v1/track", &track("Opened", "2024-07-10T12:00:00Z", "w4")).await;
    assert_eq!(runs("SELECT COUNT(*) FROM dedup_runs"), 1, "only the run sealed just now is left");
    assert_eq!(runs("SELECT COUNT(*) FROM dedup_digests"), 1, "holding w3");
    server.ingest("/v1/track", &track("Exported", "2024-07-10T13:00:00Z", "w1")).await;
    assert_eq!(event_count(&server, "ada@example.com").await, 6, "w1 is a new event once its run is gone");
    server.stop().await;
}

/// A database written before the event log kept its messageIds in a `message_ids` table of
/// the main file: the first start after the upgrade takes them over, forgetting none.
#[tokio::test]
async fn sqlite_takes_over_the_message_ids_of_a_database_from_before_the_event_log() {
    let server = TestServer::start().await;
    server.ingest("/v1/identify", &identify_ada("i1")).await;
    let main = rusqlite::Connection::open(server.sqlite_file("kith.db").expect("a SQLite server")).unwrap();
    main.execute_batch("CREATE TABLE message_ids (digest BLOB PRIMARY KEY) WITHOUT ROWID").unwrap();
    let legacy = kith_store::message_digest(server.workspace, "legacy-1");
    main.execute("INSERT INTO message_ids (digest) VALUES (?1)", [legacy.as_slice()]).unwrap();
    drop(main);

    let server = server.restart(common::Options::default()).await;
    server.ingest("/v1/track", &track("Exported", "2024-07-01T10:00:00Z", "legacy-1")).await;
    server.ingest("/v1/track", &track("Exported", "2024-07-01T10:00:00Z", "new-1")).await;
    assert_eq!(
        event_count(&server, "ada@example.com").await,
        2,
        "the legacy messageId is a duplicate, the new one not"
    );
    assert_eq!(
        server.count_rows("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'message_ids'").await,
        0,
        "the old table is gone once taken over"
    );
    server.stop().await;
}

crate::backend_tests!(
    a_duplicate_seven_days_later_is_still_a_duplicate,
    the_same_message_id_in_two_workspaces_is_two_events,
    a_refused_event_leaves_its_message_id_free_for_the_corrected_retry,
);

/// PostgreSQL keeps messageIds in partitions by the day each event was received
/// (`kith-store/src/postgres/dedup.rs`): a duplicate is recognised across the days'
/// partitions for seven days, and partitions older than the window are dropped whole, which
/// frees their messageIds.
#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn postgres_keeps_message_ids_in_day_partitions_dropped_by_age() {
    common::run_on(Backend::Postgres, "day_partitions", async {
        let clock = Clock::manual(T0.parse::<Timestamp>().unwrap());
        let server = TestServer::start_with_clock(clock.clone()).await;
        let partitions = || {
            server.count_rows(
                "SELECT COUNT(*) FROM pg_inherits WHERE inhparent = 'message_ids'::regclass
                 AND inhrelid::regclass::text LIKE 'message_ids_2024%'",
            )
        };
        server.ingest("/v1/identify", &identify_ada("w0")).await;
        server.ingest("/v1/track", &track("Exported", "2024-07-01T09:30:00Z", "w1")).await;
        assert_eq!(partitions().await, 4, "from yesterday's to the day after tomorrow's");

        // Six days and 23 hours on, from another day's partition: still a duplicate.
        clock.advance(SignedDuration::from_hours(6 * 24 + 23));
        let answer = server.ingest("/v1/track", &track("Exported", "2024-07-01T09:30:00Z", "w1")).await;
        assert_eq!(answer["success"], true, "a duplicate is acknowledged");
        server.ingest("/v1/track", &track("Exported", "2024-07-08T07:00:00Z", "w2")).await;
        assert_eq!(event_count(&server, "ada@example.com").await, 3, "w1 not stored twice");
        assert_eq!(partitions().await, 8, "the days around today are made as they come");

        // Nine days after the first events their partitions are dropped, and w1 is free again;
        // w2, two days old, is still taken.
        clock.advance(SignedDuration::from_hours(2 * 24 + 2));
        server.ingest("/v1/track", &track("Exported", "2024-07-01T09:30:00Z", "w1")).await;
        server.ingest("/v1/track", &track("Exported", "2024-07-08T07:00:00Z", "w2")).await;
        assert_eq!(event_count(&server, "ada@example.com").await, 4, "w1 is new once its day is dropped");
        assert_eq!(partitions().await, 8, "2024-06-30 and 2024-07-01 dropped, 2024-07-11 and 2024-07-12 made");
        let oldest = server
            .count_rows(
                "SELECT MIN(substr(inhrelid::regclass::text, 13)::int)::bigint FROM pg_inherits
                 WHERE inhparent = 'message_ids'::regclass AND inhrelid::regclass::text LIKE 'message_ids_2024%'",
            )
            .await;
        assert_eq!(oldest, 20240702);
        server.stop().await;
    })
    .await
}

/// Two PostgreSQL nodes whose clocks straddle midnight put a messageId into two days'
/// partitions, neither seeing the other's insert until it commits: the same events sent to
/// both at once must still be stored once each, and a node a day later must know them all.
#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn postgres_nodes_either_side_of_midnight_take_each_message_id_once() {
    common::run_on(Backend::Postgres, "midnight", async {
        let database = TestDatabase::create().await;
        let clocks = ["2024-07-01T23:55:00Z", "2024-07-02T00:05:00Z", "2024-07-02T12:00:00Z"]
            .map(|time| Clock::manual(time.parse::<Timestamp>().unwrap()));
        let mut nodes = Vec::new();
        for clock in &clocks {
            nodes.push(database.open(clock.clone()).await);
        }
        let workspace = nodes[0].create_workspace("Midnight").await.unwrap().id;
        let events = |clock: &Clock, round: usize| -> Vec<Incoming> {
            let context = ParseContext::live(None, clock.now());
            (0..50)
                .map(|i| {
                    let body = track("Exported", "2024-07-01T23:00:00Z", &format!("m{round}-{i}"));
                    let Ok(Parsed::Event(event)) = parse_value(&body, &context) else { panic!("a valid track") };
                    Incoming::new(workspace, *event)
                })
                .collect()
        };
        let accepted = |outcomes: &[Outcome]| outcomes.iter().filter(|o| **o == Outcome::Accepted).count();
        for round in 0..20 {
            let (before, after) = tokio::join!(
                nodes[0].write_events(events(&clocks[0], round)),
                nodes[1].write_events(events(&clocks[1], round)),
            );
            let (before, after) = (accepted(&before.unwrap()), accepted(&after.unwrap()));
            assert_eq!(before + after, 50, "round {round}: {before} accepted before midnight, {after} after");
        }
        for round in 0..20 {
            let outcomes = nodes[2].write_events(events(&clocks[2], round)).await.unwrap();
            assert_eq!(accepted(&outcomes), 0, "round {round}: the next day, every messageId is taken");
        }
        nodes[2].settle().await.unwrap();
        drop(nodes);
    })
    .await
}
