//! The Nat.app identify contract, from the repository's copy of `fixtures/nat/`: each documented
//! format, sent as printed.

mod common;

use common::{fixture, TestServer};
use reqwest::StatusCode;

async fn sent_alone(file: &str) -> (TestServer, serde_json::Value) {
    let server = TestServer::start().await;
    let (status, body) = server.send("/v1/identify", fixture(&format!("nat/{file}"))).await;
    assert_eq!(status, StatusCode::OK, "{file}: {body}");
    assert_eq!(body, serde_json::json!({"success": true}));
    (server, body)
}

async fn recommended_format_gives_the_url_as_description() {
    let (server, _) = sent_alone("recommended.json").await;
    assert_eq!(server.emails().await, ["peter@example.com"]);
    let timeline = server.timeline("peter@example.com").await;
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0]["description"], "https://example.com");
    assert_eq!(timeline[0]["day"], "2020-05-31");
    assert_eq!(timeline[0]["occurred_at"], "2020-05-31T17:55:47.263Z");
    assert_eq!(timeline[0]["kind"], "activity");
    server.stop().await;
}

async fn example_1_without_traits_gets_the_standard_message() {
    let (server, _) = sent_alone("alt-1-no-traits.json").await;
    let timeline = server.timeline("test@example.com").await;
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0]["description"], "Active in your product");
    assert_eq!(timeline[0]["day"], "2020-05-31");
    server.stop().await;
}

async fn example_2_event_replaces_the_url() {
    let (server, _) = sent_alone("alt-2-event.json").await;
    let timeline = server.timeline("test@example.com").await;
    assert_eq!(timeline[0]["description"], "User logged in");
    assert_eq!(timeline[0]["day"], "2020-05-31");
    server.stop().await;
}

async fn example_2_as_printed_is_invalid_json_with_line_and_column() {
    let server = TestServer::start().await;
    let (status, body) = server.send("/v1/identify", fixture("nat/alt-2-event-as-printed.txt")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_json");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("line 7, column 3"), "{message}");
    assert!(server.emails().await.is_empty(), "nothing stored");
    // The server keeps serving.
    let (status, _) = server.send("/v1/identify", fixture("nat/alt-2-event.json")).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

async fn the_three_formats_also_arrive_through_the_destination_endpoint() {
    let server = TestServer::start().await;
    for file in ["recommended.json", "alt-1-no-traits.json"] {
        let (status, body) = server.send("/v1/events", fixture(&format!("nat/{file}"))).await;
        assert_eq!(status, StatusCode::OK, "{file}: {body}");
    }
    assert_eq!(server.emails().await.len(), 2);
    server.stop().await;
}

crate::backend_tests!(
    recommended_format_gives_the_url_as_description,
    example_1_without_traits_gets_the_standard_message,
    example_2_event_replaces_the_url,
    example_2_as_printed_is_invalid_json_with_line_and_column,
    the_three_formats_also_arrive_through_the_destination_endpoint,
);
