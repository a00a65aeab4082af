//! Reads see every acknowledged write: once an ingest call is answered 200, the next read
//! shows its event, even while other clients keep the writer busy. On SQLite the answer
//! comes when the event log has the event and reads wait for the projection to reach it;
//! this is what proves the wait.

mod common;

use std::sync::Arc;

use common::TestServer;
use serde_json::{json, Value};

/// Clients that each write and read back, one call after another.
const READERS: usize = 6;
/// Write-then-read rounds per client.
const ROUNDS: usize = 25;
/// Batches of 100 events the background load sends.
const LOAD_BATCHES: usize = 40;

fn time(second: usize) -> String {
    format!("2024-07-01T{:02}:{:02}:{:02}Z", 9 + second / 3600, (second / 60) % 60, second % 60)
}

/// Product-like batches for other users, to keep the projection behind the log.
async fn background_load(server: Arc<TestServer>) {
    for batch in 0..LOAD_BATCHES {
        let events: Vec<Value> = (0..100)
            .map(|n| {
                let user = (batch * 100 + n) % 500;
                if batch == 0 && n < 100 {
                    json!({"type": "identify", "userId": format!("load-{user}"),
                           "traits": {"email": format!("load-{user}@example.com")},
                           "timestamp": time(n), "messageId": format!("load-{batch}-{n}")})
                } else {
                    json!({"type": "track", "userId": format!("load-{}", user % 100), "event": "Viewed",
                           "properties": {"n": n}, "timestamp": time(batch * 100 + n),
                           "messageId": format!("load-{batch}-{n}")})
                }
            })
            .collect();
        let (status, body) = server.send_json("/v1/batch", &json!({ "batch": events })).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    }
}

/// One client: a new contact, then tracks, each read back right after its 200.
async fn write_then_read(server: Arc<TestServer>, client: usize) {
    let email = format!("reader-{client}@example.com");
    let user = format!("reader-{client}");
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": user, "traits": {"email": email}, "timestamp": time(0),
                    "messageId": format!("reader-{client}-identify")}),
        )
        .await;
    let contact = server.contact(&email).await;
    assert_eq!(contact["email"], email.as_str(), "the new contact is readable right after the 200");
    let id = contact["id"].clone();
    for round in 1..=ROUNDS {
        let message_id = format!("reader-{client}-{round}");
        server
            .ingest(
                "/v1/track",
                &json!({"userId": user, "event": format!("Step {round}"), "timestamp": time(round * 60),
                        "messageId": message_id}),
            )
            .await;
        let events = server.get(&format!("/api/contacts/{id}/events?limit=1")).await;
        assert_eq!(
            events["items"][0]["message_id"],
            message_id.as_str(),
            "client {client}, round {round}: the acknowledged event is the newest one read: {events}"
        );
    }
    let events = server.get(&format!("/api/contacts/{id}/events?limit=100")).await;
    assert_eq!(events["items"].as_array().map(Vec::len), Some(ROUNDS + 1), "every event exactly once");
}

async fn every_answered_event_is_visible_to_the_next_read_under_load() {
    let server = Arc::new(TestServer::start().await);
    let load = tokio::spawn(background_load(server.clone()));
    let clients: Vec<_> = (0..READERS).map(|client| tokio::spawn(write_then_read(server.clone(), client))).collect();
    for client in clients {
        client.await.expect("a client's reads all saw their writes");
    }
    load.await.expect("the load was accepted");
    Arc::into_inner(server).expect("no other handle").stop().await;
}

crate::backend_tests!(every_answered_event_is_visible_to_the_next_read_under_load);
