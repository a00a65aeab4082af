//! Inputs that must be refused (`fixtures/bad/`), plus generated oversize, gzip-bomb and key cases:
//! each answer has the exact status kith promises (413 for size, 400 for shape, gzipped or not) and
//! the expected code, nothing is stored and the server keeps serving.

mod common;

use common::{basic, fixture, fixtures_dir, gzip, TestServer};
use reqwest::StatusCode;
use serde_json::json;

async fn assert_nothing_stored(server: &TestServer) {
    assert!(server.emails().await.is_empty(), "no contact may be created");
    let metrics = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kith_events_stored_total 0"), "{metrics}");
}

/// The status of each refusal: 413 for size, 401 and 403 for keys, 400 for shape.
fn status_of(code: &str) -> StatusCode {
    match code {
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "forbidden" => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    }
}

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
        let bytes = fixture(&format!("bad/{file}"));
        let (status, body) = server.send(path, bytes.clone()).await;
        assert_eq!(status, status_of(expected), "{file}: {body}");
        assert_eq!(body["code"], expected, "{file}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{file}: a message for a person");
        // Gzipped (recognised by its magic bytes), the same answer.
        let (status, body) = server.send(path, gzip(&bytes)).await;
        assert_eq!((status, body["code"].as_str()), (status_of(expected), Some(expected)), "gzipped {file}: {body}");
    }
    assert_nothing_stored(&server).await;
    server.stop().await;
}

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

fn nested(depth: usize, open: &str, close: &str, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

async fn deep_nesting_is_refused_wherever_it_is_and_never_crashes() {
    let server = TestServer::start().await;
    let deep_object = nested(5_000, r#"{"a":"#, "}", "1");
    let deep_array = nested(100_000, "[", "]", "");
    let cases = [
        // In traits, in properties, in a batch item, under the batch's own context, unclosed.
        format!(
            r#"{{"type":"identify","traits":{{"email":"a@example.com","x":{deep_object}}},"timestamp":"2024-06-01T10:00:00Z"}}"#
        ),
        format!(
            r#"{{"type":"track","userId":"u1","event":"E","properties":{{"x":{deep_array}}},"timestamp":"2024-06-01T10:00:00Z"}}"#
        ),
        format!(
            r#"{{"batch":[{{"type":"track","userId":"u1","event":"E","properties":{deep_object},"timestamp":"2024-06-01T10:00:00Z"}}]}}"#
        ),
        format!(
            r#"{{"batch":[{{"type":"track","userId":"u1","event":"E","timestamp":"2024-06-01T10:00:00Z"}}],"context":{deep_array}}}"#
        ),
        "[".repeat(400_000),
        r#"{"a":"#.repeat(80_000),
    ];
    for (index, body) in cases.into_iter().enumerate() {
        for path in ["/v1/identify", "/v1/batch", "/v1/events"] {
            let (status, answer) = server.send(path, body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "case {index} on {path}: {answer}");
            assert_eq!(answer["code"], "invalid_json", "case {index} on {path}: {answer}");
        }
        // The same nesting gzipped, detected by its magic bytes.
        let (status, answer) = server.send("/v1/batch", gzip(body.as_bytes())).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_json")),
            "gzipped case {index}: {answer}"
        );
    }
    assert_nothing_stored(&server).await;
    server.stop().await;
}

async fn nesting_within_the_json_limit_is_stored_and_read_back() {
    let server = TestServer::start().await;
    // serde_json refuses more than 128 levels; a payload just within is a real event and must
    // come back out of the event stream intact.
    let deep = nested(120, r#"{"a":"#, "}", r#""bottom""#);
    let body = format!(
        r#"{{"type":"identify","userId":"deep-1","traits":{{"email":"deep@example.com"}},"context":{{"x":{deep}}},"timestamp":"2024-06-01T10:00:00Z"}}"#
    );
    let (status, answer) = server.send("/v1/identify", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let contact = server.contact("deep@example.com").await;
    let events = server.get(&format!("/api/contacts/{}/events", contact["id"])).await;
    let mut value = &events["items"][0]["payload"]["context"]["x"];
    for _ in 0..120 {
        value = &value["a"];
    }
    assert_eq!(value, "bottom", "{events}");
    server.stop().await;
}

async fn gzip_that_lies_is_refused_and_bombs_are_caught_without_the_header() {
    let server = TestServer::start().await;
    let event = br#"{"type":"identify","traits":{"email":"a@example.com"},"timestamp":"2024-06-01T10:00:00Z"}"#;
    let whole = gzip(event);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated gzip", whole[..whole.len() / 2].to_vec(), "invalid_json"),
        ("gzip magic then garbage", [&[0x1f, 0x8b][..], b"garbage that is not deflate"].concat(), "invalid_json"),
        ("gzip of a non-JSON body", gzip(b"hello, world"), "invalid_json"),
        ("a gzip bomb on /v1/batch without Content-Encoding", gzip(&vec![b' '; 40 * 1024 * 1024]), "payload_too_large"),
        ("gzip inside gzip", gzip(&whole), "invalid_json"),
    ];
    for (what, body, code) in cases {
        let (status, answer) = server.send("/v1/batch", body).await;
        assert_eq!((status, answer["code"].as_str()), (status_of(code), Some(code)), "{what}: {answer}");
    }
    assert_nothing_stored(&server).await;
    server.stop().await;
}

async fn the_request_limit_is_exact_and_an_oversize_item_is_refused_by_index() {
    let server = TestServer::start().await;
    let limit = kith_core::envelope::MAX_REQUEST_BYTES;
    let event = r#"{"type":"identify","traits":{"email":"edge@example.com"},"timestamp":"2024-06-01T10:00:00Z"}"#;
    // Whitespace pads a valid body to exactly the limit, then one byte past it.
    let at_limit = format!("{event}{}", " ".repeat(limit - event.len()));
    let (status, answer) = server.send("/v1/identify", at_limit.clone()).await;
    assert_eq!(status, StatusCode::OK, "a body of exactly 500 KB is accepted: {answer}");
    let (status, answer) = server.send("/v1/identify", format!("{at_limit} ")).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));

    let small = json!({"type":"track","userId":"edge-user","event":"E","timestamp":"2024-06-01T10:00:00Z"});
    let big = json!({"type":"track","userId":"edge-user","event":"E","properties":{"pad":"z".repeat(33 * 1024)},
        "timestamp":"2024-06-01T10:00:00Z"});
    let (status, answer) = server.send_json("/v1/batch", &json!({"batch": [small, big, small]})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(
        (answer["rejected"][0]["index"].as_u64(), answer["rejected"][0]["code"].as_str()),
        (Some(1), Some("payload_too_large"))
    );
    server.stop().await;
}

async fn odd_json_gets_a_4xx_with_a_code_never_a_5xx() {
    let server = TestServer::start().await;
    let long_message_id = format!(
        r#"{{"type":"identify","messageId":"{}","traits":{{"email":"a@example.com"}},"timestamp":"2024-06-01T10:00:00Z"}}"#,
        "m".repeat(101)
    );
    let cases: Vec<(&str, &str, &str)> = vec![
        ("an empty body", "", "invalid_json"),
        ("whitespace", " \n\t ", "invalid_json"),
        ("a bare string", r#""identify""#, "invalid_json"),
        (
            "a number out of range",
            r#"{"type":"identify","traits":{"email":"a@example.com","n":1e400},"timestamp":"2024-06-01T10:00:00Z"}"#,
            "invalid_json",
        ),
        (
            "a lone surrogate",
            r#"{"type":"identify","traits":{"email":"a@example.com","s":"\ud800"},"timestamp":"2024-06-01T10:00:00Z"}"#,
            "invalid_json",
        ),
        ("trailing data", r#"{"type":"identify"} {"type":"track"}"#, "invalid_json"),
        ("batch that is not an array", r#"{"batch":{"type":"identify"}}"#, "invalid_json"),
        ("an array of non-objects", r#"[1, "two", null, []]"#, "invalid_json"),
        ("a messageId over 100 characters", &long_message_id, "invalid_message_id"),
        (
            "a type that is an object",
            r#"{"type":{"name":"identify"},"traits":{"email":"a@example.com"},"timestamp":"2024-06-01T10:00:00Z"}"#,
            "unknown_type",
        ),
        (
            "a timestamp that is a number",
            r#"{"type":"identify","traits":{"email":"a@example.com"},"timestamp":1717236000}"#,
            "invalid_timestamp",
        ),
        (
            "an email that is an object",
            r#"{"type":"identify","traits":{"email":{"a":"b"}},"timestamp":"2024-06-01T10:00:00Z"}"#,
            "invalid_email",
        ),
    ];
    for (what, body, code) in cases {
        let (status, answer) = server.send("/v1/events", body.to_owned()).await;
        assert_eq!((status, answer["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{what}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {answer}");
    }
    assert_nothing_stored(&server).await;
    server.stop().await;
}

async fn control_and_unicode_characters_are_stored_as_sent() {
    let server = TestServer::start().await;
    let name = "nul\u{0}tab\tbidi\u{202e}emoji\u{1f600}";
    let event = json!({"type":"identify","userId":"odd-1","traits":{"email":"odd@example.com","name":name},
        "timestamp":"2024-06-01T10:00:00Z"});
    server.ingest("/v1/identify", &event).await;
    let contact = server.contact("odd@example.com").await;
    assert_eq!(contact["traits"]["name"], name, "{contact}");
    server.stop().await;
}

crate::backend_tests!(
    every_bad_fixture_gets_its_code,
    oversize_events_requests_and_batches_are_refused,
    a_gzip_bomb_is_refused_before_it_is_inflated,
    keys_are_required_and_checked,
    deep_nesting_is_refused_wherever_it_is_and_never_crashes,
    nesting_within_the_json_limit_is_stored_and_read_back,
    gzip_that_lies_is_refused_and_bombs_are_caught_without_the_header,
    the_request_limit_is_exact_and_an_oversize_item_is_refused_by_index,
    odd_json_gets_a_4xx_with_a_code_never_a_5xx,
    control_and_unicode_characters_are_stored_as_sent,
);
