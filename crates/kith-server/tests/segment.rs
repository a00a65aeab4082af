//! Segment-spec events as SDKs send them (`fixtures/segment/`), each behaving as the
//! fixture README says.

mod common;

use common::{fixture, TestServer};
use reqwest::StatusCode;

async fn ada() -> TestServer {
    let server = TestServer::start().await;
    let (status, body) = server.send("/v1/identify", fixture("segment/identify.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server
}

async fn identify_normalises_the_email_and_links_both_ids() {
    let server = ada().await;
    assert_eq!(server.emails().await, ["ada@example.com"]);
    let contact = server.contact("ada@example.com").await;
    let ids: Vec<&str> =
        contact["identities"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
    assert!(ids.contains(&"97980cfea0067") && ids.contains(&"507f191e810c19729de860ea"), "{ids:?}");
    let timeline = server.timeline("ada@example.com").await;
    assert_eq!(timeline[0]["description"], "https://app.acme.io/settings");
    assert_eq!(timeline[0]["occurred_at"], "2024-06-03T16:00:00.292Z", "relayed by Segment: used as is");
    server.stop().await;
}

async fn track_without_received_at_is_corrected_for_clock_skew() {
    let server = ada().await;
    let before = jiff::Timestamp::now();
    server.send("/v1/track", fixture("segment/track.json")).await;
    let after = jiff::Timestamp::now();
    let contact = server.contact("ada@example.com").await;
    let events = server.get(&format!("/api/contacts/{}/events", contact["id"])).await;
    let track = &events["items"][0];
    assert_eq!(track["type"], "track");
    assert_eq!(track["name"], "Upgraded Plan");
    assert_eq!(track["properties"]["seats"], 25);
    assert_eq!(track["traits"]["plan"], "pro", "the contact's traits at the event's time stand beside it");
    let time: jiff::Timestamp = track["occurred_at"].as_str().unwrap().parse().unwrap();
    let skew = jiff::SignedDuration::from_millis(50);
    assert!(
        time >= before - skew - jiff::SignedDuration::from_millis(5) && time <= after - skew,
        "{time} not now − 50 ms"
    );
    let timeline = server.timeline("ada@example.com").await;
    assert_eq!(timeline[0]["description"], "Upgraded Plan");
    assert_ne!(timeline[0]["day"], "2024-06-03");
    server.stop().await;
}

async fn page_screen_group_and_alias_reach_ada_through_her_user_id() {
    let server = ada().await;
    for (path, file) in [
        ("/v1/page", "segment/page.json"),
        ("/v1/screen", "segment/screen.json"),
        ("/v1/group", "segment/group.json"),
        ("/v1/alias", "segment/alias.json"),
    ] {
        let (status, body) = server.send(path, fixture(file)).await;
        assert_eq!(status, StatusCode::OK, "{file}: {body}");
    }
    assert_eq!(server.emails().await, ["ada@example.com"], "no other contact appears");
    let timeline = server.timeline("ada@example.com").await;
    let days: Vec<(&str, &str, i64)> = timeline
        .iter()
        .map(|i| (i["day"].as_str().unwrap(), i["description"].as_str().unwrap(), i["hits"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        days,
        [("2024-06-04", "Viewed Dashboard", 1), ("2024-06-03", "https://app.acme.io/settings", 2)],
        "the page view on the identify's day is a hit of that day's interaction"
    );
    let account = server.get("/api/accounts/acct_42").await;
    assert_eq!(account["name"], "Analytical Engines");
    assert_eq!(account["traits"]["plan"], "enterprise");
    assert_eq!(account["member_count"], 1);
    assert_eq!(account["members"][0]["email"], "ada@example.com");
    let contact = server.contact("ada@example.com").await;
    assert_eq!(contact["accounts"][0]["group_id"], "acct_42");
    let ids: Vec<&str> =
        contact["identities"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
    assert!(ids.contains(&"507f191e810c19729de860ea"));
    let events = server.get(&format!("/api/contacts/{}/events", contact["id"])).await;
    assert_eq!(events["items"].as_array().unwrap().len(), 5);
    server.stop().await;
}

async fn the_batch_keeps_unknown_users_pending_and_refuses_the_identify_without_email() {
    let server = TestServer::start().await;
    let (status, body) = server.send("/v1/batch", fixture("segment/batch.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 4);
    assert_eq!(body["rejected"].as_array().unwrap().len(), 1);
    assert_eq!(body["rejected"][0]["index"], 4);
    assert_eq!(body["rejected"][0]["code"], "missing_email");
    assert_eq!(server.emails().await, ["grace@example.org"], "u_unknown_7 creates no contact");
    let timeline = server.timeline("grace@example.org").await;
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0]["day"], "2024-06-05");
    assert_eq!(timeline[0]["description"], "Active in your product");
    assert_eq!(timeline[0]["hits"], 3);

    // The pending event attaches, with its interaction, once an identify names its user.
    server
        .ingest(
            "/v1/identify",
            &serde_json::json!({"type":"identify","userId":"u_unknown_7","traits":{"email":"late@example.org"},
                "timestamp":"2024-06-09T10:00:00Z"}),
        )
        .await;
    let timeline = server.timeline("late@example.org").await;
    let descriptions: Vec<&str> = timeline.iter().map(|i| i["description"].as_str().unwrap()).collect();
    assert_eq!(descriptions, ["Active in your product", "Viewed Pricing"]);
    assert_eq!(timeline[1]["day"], "2024-06-05");
    server.stop().await;
}

crate::backend_tests!(
    identify_normalises_the_email_and_links_both_ids,
    track_without_received_at_is_corrected_for_clock_skew,
    page_screen_group_and_alias_reach_ada_through_her_user_id,
    the_batch_keeps_unknown_users_pending_and_refuses_the_identify_without_email,
);
