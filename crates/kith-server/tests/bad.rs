//! Inputs that must be refused (`fixtures/bad/`), plus generated oversize, gzip-bomb and
//! key cases: each answer is a 4xx with the expected code, nothing is stored and the server
//! keeps serving.

mod common;

use common::{basic, fixture, fixtures_dir, gzip, TestServer};
use reqwest::StatusCode;
use serde_json::json;

async fn assert_nothing_stored(server: &TestServer) {
    assert!(server.emails().await.is_empty(), "no contact may be created");
    let metrics = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kith_events_stored_total 0"), "{metrics}");
}

#[tokio::test]
async fn every_bad_fixture_gets_its_code() {
    let server = TestServer::start().await;
    let mut files: Vec<_> = std::fs::read_dir(fixtures_dir().join("bad"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json"))
        .collect();
    files.sort();
    assert!(files.len() >= 18, "the bad fixtures are present: {files:?}");
    for file in files {
        let expected = file.split("--").next().unwrap();
        let path = if expected == "empty_batch" { "/v1/batch" } else { "/v1/events" };
        let (status, body) = server.send(path, fixture(&format!("bad/{file}"))).await;
        assert!(status.is_client_error(), "{file}: {status} {body}");
        assert_eq!(body["code"], expected, "{file}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{file}: a message for a person");
    }
    assert_nothing_stored(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn oversize_events_requests_and_batches_are_refused() {
    let server = TestServer::start().await;
    let big = "x".repeat(33 * 1024);
    let event =
        json!({"type":"identify","traits":{"email":"a@example.com","blob":big},"timestamp":"2024-06-01T10:00:00Z"});
    let (status, body) = server.send_json("/v1/identify", &event).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));

    let item = json!({"type":"track","userId":"u1","event":"E","properties":{"pad":"y".repeat(20 * 1024)},"timestamp":"2024-06-01T10:00:00Z"});
    let batch = json!({"batch": vec![item; 30]});
    let (status, body) = server.send_json("/v1/batch", &batch).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));

    let small = json!({"type":"track","userId":"u1","event":"E","timestamp":"2024-06-01T10:00:00Z"});
    let batch = json!({"batch": vec![small; 2501]});
    let (status, body) = server.send_json("/v1/batch", &batch).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("batch_too_large")));
    assert_nothing_stored(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_before_it_is_inflated() {
    let server = TestServer::start().await;
    let mut bomb = br#"{"type":"identify","traits":{"email":"a@example.com","pad":""#.to_vec();
    bomb.extend(std::iter::repeat_n(b'a', 64 * 1024 * 1024));
    bomb.extend(br#""},"timestamp":"2024-06-01T10:00:00Z"}"#);
    let compressed = gzip(&bomb);
    assert!(compressed.len() < 200 * 1024, "the bomb is small on the wire");
    let response = server
        .client
        .post(format!("{}/v1/identify", server.url))
        .header("authorization", server.basic())
        .header("content-encoding", "gzip")
        .body(compressed)
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));
    assert_nothing_stored(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn keys_are_required_and_checked() {
    let server = TestServer::start().await;
    let event = json!({"type":"identify","traits":{"email":"a@example.com"},"timestamp":"2024-06-01T10:00:00Z"});
    let url = format!("{}/v1/identify", server.url);

    let response = server.client.post(&url).body(event.to_string()).send().await.unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));

    let response = server
        .client
        .post(&url)
        .header("authorization", basic("kith_wk_not_a_real_key"))
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));

    let mut with_wrong_body_key = event.clone();
    with_wrong_body_key["writeKey"] = json!("kith_wk_wrong");
    let response = server.client.post(&url).body(with_wrong_body_key.to_string()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let response =
        server.client.get(format!("{}/api/contacts", server.url)).bearer_auth(&server.write_key).send().await.unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));

    let response = server.client.get(format!("{}/api/contacts", server.url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_nothing_stored(&server).await;
    server.stop().await;
}
