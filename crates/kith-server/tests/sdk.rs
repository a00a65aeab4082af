//! Bodies captured on the wire from the real SDKs (`fixtures/sdk/`), sent the way each SDK
//! sent them (path, Content-Type, gzip, auth), giving the contact, timeline, account and
//! identities a Segment user would expect.

mod common;

use common::{fixture, fixture_json, gzip, TestServer};
use reqwest::StatusCode;
use serde_json::Value;

/// How an SDK sends: Content-Type and whether it gzips.
struct Sdk {
    folder: &'static str,
    content_type: &'static str,
    gzip: bool,
}

const SERVER_SDKS: [Sdk; 4] = [
    Sdk { folder: "py-segment", content_type: "application/json", gzip: false },
    Sdk { folder: "py-rudder", content_type: "application/json", gzip: true },
    Sdk { folder: "node-segment", content_type: "application/json", gzip: false },
    Sdk { folder: "node-rudder", content_type: "application/x-www-form-urlencoded", gzip: true },
];

async fn post(
    server: &TestServer,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    gzipped: bool,
) -> (StatusCode, Value) {
    let mut request = server
        .client
        .post(format!("{}{path}", server.url))
        .header("authorization", server.basic())
        .header("content-type", content_type);
    let body = if gzipped {
        request = request.header("content-encoding", "gzip");
        gzip(&body)
    } else {
        body
    };
    common::read(request.body(body).send().await.unwrap()).await
}

/// What every SDK's six calls must give.
async fn assert_jane(server: &TestServer, sdk: &str) {
    assert_eq!(server.emails().await, ["jane@example.com"], "{sdk}");
    let contact = server.contact("jane@example.com").await;
    assert_eq!(contact["name"], "Jane Doe", "{sdk}");
    let ids: Vec<&str> =
        contact["identities"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
    assert!(ids.contains(&"user-123"), "{sdk}: {ids:?}");
    assert!(ids.contains(&"anon-previous-789"), "{sdk}: the alias joined Jane: {ids:?}");
    assert_eq!(contact["accounts"][0]["group_id"], "group-456", "{sdk}");
    assert_eq!(contact["accounts"][0]["name"], "Acme Inc", "{sdk}");
    assert_eq!(contact["accounts"][0]["traits"]["plan"], "enterprise", "{sdk}");
    let timeline = server.timeline("jane@example.com").await;
    assert_eq!(timeline.len(), 1, "{sdk}: all on one day: {timeline:?}");
    assert_eq!(timeline[0]["hits"], 4, "{sdk}: identify, track, page and screen are activity");
    let events = server.get(&format!("/api/contacts/{}/events?limit=100", contact["id"])).await;
    let mut types: Vec<&str> =
        events["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(types, ["alias", "group", "identify", "page", "screen", "track"], "{sdk}");
    let track = events["items"].as_array().unwrap().iter().find(|e| e["type"] == "track").unwrap();
    assert_eq!(track["name"], "Order Completed", "{sdk}");
    assert_eq!(track["properties"]["revenue"], 42.5, "{sdk}");
    let page = events["items"].as_array().unwrap().iter().find(|e| e["type"] == "page").unwrap();
    assert_eq!(page["properties"]["url"], "https://example.com/home", "{sdk}");
}

async fn each_server_sdks_single_calls() {
    for sdk in SERVER_SDKS {
        let server = TestServer::start().await;
        for call in ["identify", "track", "page", "screen", "group", "alias"] {
            let body = fixture(&format!("sdk/{}/{call}.json", sdk.folder));
            let (status, answer) = post(&server, "/v1/batch", sdk.content_type, body, sdk.gzip).await;
            assert_eq!(status, StatusCode::OK, "{} {call}: {answer}", sdk.folder);
            assert_eq!(answer["rejected"], serde_json::json!([]), "{} {call}", sdk.folder);
        }
        assert_jane(&server, sdk.folder).await;
        server.stop().await;
    }
}

async fn each_server_sdks_full_flush() {
    let flushes = [
        ("py-segment", vec!["full-body_async_flush_0.json"]),
        ("py-rudder", vec!["full-body_async_flush_0.json"]),
        ("node-segment", vec!["full-body_default_closeAndFlush_0.json"]),
        ("node-rudder", vec!["full-body_default_flush_0.json", "full-body_default_flush_1.json"]),
    ];
    for (sdk, (folder, files)) in SERVER_SDKS.iter().zip(flushes) {
        assert_eq!(sdk.folder, folder);
        let server = TestServer::start().await;
        for file in files {
            let body = fixture(&format!("sdk/{folder}/{file}"));
            let (status, answer) = post(&server, "/v1/batch", sdk.content_type, body, sdk.gzip).await;
            assert_eq!(status, StatusCode::OK, "{folder} {file}: {answer}");
        }
        assert_jane(&server, folder).await;
        server.stop().await;
    }
}

async fn analytics_next_in_the_browser_one_event_per_request() {
    let server = TestServer::start().await;
    for (path, call) in [
        ("/v1/i", "identify"),
        ("/v1/t", "track"),
        ("/v1/p", "page"),
        ("/v1/s", "screen"),
        ("/v1/g", "group"),
        ("/v1/a", "alias"),
    ] {
        // The body names the capture's own write key; the Basic header's key wins.
        let body = fixture(&format!("sdk/browser-segment/{call}.json"));
        let (status, answer) = post(&server, path, "text/plain", body, false).await;
        assert_eq!(status, StatusCode::OK, "{call}: {answer}");
    }
    let (status, _) =
        post(&server, "/v1/m", "text/plain", fixture("sdk/browser-segment/metrics-v1-m.json"), false).await;
    assert!(status.is_success());
    assert_jane(&server, "browser-segment").await;
    let contact = server.contact("jane@example.com").await;
    let timeline = server.timeline("jane@example.com").await;
    assert!(
        timeline[0]["description"].as_str().unwrap().starts_with("http://127.0.0.1:18108/index.html"),
        "the identify's page url describes the day: {}",
        timeline[0]["description"]
    );
    let ids: Vec<&str> =
        contact["identities"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert!(ids.contains(&"anonymous_id"));
    server.stop().await;
}

async fn analytics_next_batching_mode() {
    let server = TestServer::start().await;
    for file in ["batch-1.json", "batch-2.json"] {
        let body = fixture(&format!("sdk/browser-segment-batching/{file}"));
        let (status, answer) = post(&server, "/v1/b", "text/plain", body, false).await;
        assert_eq!(status, StatusCode::OK, "{file}: {answer}");
        assert_eq!(answer["accepted"], 3);
    }
    assert_jane(&server, "browser-segment-batching").await;
    // The extracted messages are the same events: replaying them changes nothing.
    for call in ["identify", "track", "page", "screen", "group", "alias"] {
        let message = fixture_json(&format!("sdk/browser-segment-batching/{call}.json"))["message"].clone();
        let (status, _) = post(&server, "/v1/events", "text/plain", message.to_string().into_bytes(), false).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_jane(&server, "browser-segment-batching replayed").await;
    server.stop().await;
}

/// rudder-sdk-python puts an identify's traits only in `context.traits`: the event stream shows
/// them beside the identify, as it does for the other SDKs' `traits`.
async fn rudder_python_identify_shows_its_context_traits_in_the_event_stream() {
    let server = TestServer::start().await;
    let body = fixture("sdk/py-rudder/identify.json");
    let (status, answer) = post(&server, "/v1/batch", "application/json", body, true).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let contact = server.contact("jane@example.com").await;
    let events = server.get(&format!("/api/contacts/{}/events", contact["id"])).await;
    let identify = &events["items"][0];
    assert_eq!(identify["type"], "identify");
    assert_eq!(identify["properties"], serde_json::json!({"email": "jane@example.com", "name": "Jane Doe"}));
    server.stop().await;
}

crate::backend_tests!(
    each_server_sdks_single_calls,
    each_server_sdks_full_flush,
    analytics_next_in_the_browser_one_event_per_request,
    analytics_next_batching_mode,
    rudder_python_identify_shows_its_context_traits_in_the_event_stream,
);
