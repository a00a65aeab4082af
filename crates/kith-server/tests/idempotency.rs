//! The messageId window (SPEC §1.4): a duplicate is recognised for at least 7 days, in its
//! own workspace only, and a messageId is taken only by an event that was stored.

mod common;

use common::TestServer;
use jiff::{SignedDuration, Timestamp};
use kith_server::auth::generate_key;
use kith_server::Clock;
use kith_store::KeyKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

const T0: &str = "2024-07-01T09:00:00Z";

fn track(name: &str, time: &str, message_id: &str) -> Value {
    json!({"type": "track", "userId": "u1", "event": name, "timestamp": time, "messageId": message_id})
}

async fn event_count(server: &TestServer, email: &str) -> usize {
    let contact = server.contact(email).await;
    server.get(&format!("/api/contacts/{}/events", contact["id"])).await["items"].as_array().unwrap().len()
}

async fn a_duplicate_seven_days_later_is_still_a_duplicate() {
    let clock = Clock::manual(T0.parse::<Timestamp>().unwrap());
    let server = TestServer::start_with_clock(clock.clone()).await;
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "u1", "traits": {"email": "ada@example.com"}, "timestamp": T0, "messageId": "i1"}),
        )
        .await;
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
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "u1", "traits": {"email": "ada@example.com"}, "timestamp": T0, "messageId": "r1"}),
        )
        .await;
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

crate::backend_tests!(
    a_duplicate_seven_days_later_is_still_a_duplicate,
    the_same_message_id_in_two_workspaces_is_two_events,
    a_refused_event_leaves_its_message_id_free_for_the_corrected_retry,
);
