//! `/metrics` as a scraper reads it: HTTP requests by route template, method and status with
//! their latency histogram, the writer's wait, background passes and deliveries by outcome,
//! beside the ingest and event-log series that were there before.

mod common;

use common::outbound::Receiver;
use common::TestServer;
use kith_store::NewDelivery;
use reqwest::StatusCode;
use serde_json::json;

async fn scrape(server: &TestServer) -> String {
    let response = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    response.text().await.unwrap()
}

/// The value of the one sample named exactly `series` (with its labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn requests_passes_and_deliveries_are_counted() {
    let server = TestServer::start().await;
    let identify =
        json!({"type": "identify", "traits": {"email": "m@example.com"}, "timestamp": "2024-06-01T10:00:00Z"});
    server.ingest("/v1/identify", &identify).await;
    server.send("/v1/identify", "{").await;
    let contact = server.contact("m@example.com").await;
    server.get(&format!("/api/contacts/{}", contact["id"])).await;
    let response = server.client.get(format!("{}/no/such/page/42", server.url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Two webhooks; the receiver refuses the first attempt with a 503, so one is sent and
    // the other is tried again later.
    let hook = Receiver::start().await;
    hook.answer(&[(503, None)]);
    let deliveries = (0..2)
        .map(|_| NewDelivery { kind: "webhook".into(), target: format!("{}/hook", hook.url), payload: json!({}) })
        .collect();
    server.state.store.enqueue(server.workspace, deliveries, server.state.clock.now()).await.unwrap();
    let report = server.run_jobs().await;
    assert_eq!((report.deliveries.sent, report.deliveries.retried), (1, 1), "{report:?}");

    let text = scrape(&server).await;
    let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));

    // Requests, by the route's template and never the path a client sent.
    assert_eq!(value(r#"kith_http_requests_total{route="/v1/identify",method="POST",status="200"}"#), 1.0);
    assert_eq!(value(r#"kith_http_requests_total{route="/v1/identify",method="POST",status="400"}"#), 1.0);
    assert_eq!(value(r#"kith_http_requests_total{route="/api/contacts/{id}",method="GET",status="200"}"#), 2.0);
    assert_eq!(value(r#"kith_http_requests_total{route="unmatched",method="GET",status="404"}"#), 1.0);
    assert!(!text.contains("/no/such/page"), "{text}");
    assert!(text.contains("# TYPE kith_http_request_duration_seconds histogram"), "{text}");
    let identified = r#"kith_http_request_duration_seconds_bucket{route="/v1/identify",method="POST",status="200","#;
    assert_eq!(value(&format!(r#"{identified}le="10"}}"#)), 1.0);
    assert_eq!(value(&format!(r#"{identified}le="+Inf"}}"#)), 1.0);
    assert!(text.contains(&format!(r#"{identified}le="0.001"}}"#)), "buckets from a millisecond: {text}");
    assert_eq!(
        value(r#"kith_http_request_duration_seconds_count{route="/api/contacts/{id}",method="GET",status="200"}"#),
        2.0
    );

    // The writer's wait for the one request that reached it.
    assert_eq!(value("kith_ingest_write_seconds_count"), 1.0);
    assert!(value("kith_ingest_write_seconds_sum") > 0.0, "{text}");

    // Background passes and deliveries.
    assert_eq!(value(r#"kith_jobs_passes_total{pass="nudges",outcome="ok"}"#), 1.0);
    assert_eq!(value(r#"kith_jobs_passes_total{pass="digests",outcome="ok"}"#), 1.0);
    assert_eq!(value(r#"kith_jobs_passes_total{pass="deliveries",outcome="ok"}"#), 2.0, "one with work, one without");
    assert_eq!(value(r#"kith_deliveries_total{kind="webhook",outcome="sent"}"#), 1.0);
    assert_eq!(value(r#"kith_deliveries_total{kind="webhook",outcome="retried"}"#), 1.0);

    // The series that were there before.
    assert_eq!(value("kith_events_stored_total"), 1.0);
    assert_eq!(value(r#"kith_rejections_total{code="invalid_json"}"#), 1.0);
    assert_eq!(value("kith_ingest_queue_events"), 0.0);
    assert_eq!(value("kith_commits_total"), 1.0);
    assert_eq!(value("kith_committed_events_total"), 1.0);
    assert_eq!(value("kith_commit_seconds_count"), 1.0);
    assert!(value("kith_commit_seconds_sum") > 0.0, "{text}");
    assert!(value("kith_commit_seconds_max") > 0.0, "{text}");
    assert_eq!(value("kith_commit_failures_total"), 0.0);
    assert_eq!(value("kith_jobs_stalled"), 0.0);
    assert_eq!(value("kith_jobs_pass_failures_total"), 0.0);
    assert_eq!(value("kith_jobs_restarts_total"), 0.0);
    assert_eq!(value("kith_jobs_seconds_since_progress"), 0.0, "jobs run on demand");
    for series in [
        "kith_events_pending_total",
        "kith_events_duplicate_total",
        "kith_events_suppressed_total",
        "kith_events_filtered_total",
    ] {
        assert_eq!(value(series), 0.0, "{series}");
    }
    // Present; how many interactions an identify makes is the store's business.
    value("kith_interactions_added_total");
    // Both backends acknowledge from an event log; this node is the one applying it.
    assert_eq!(value("kith_event_log_appended"), 1.0);
    assert_eq!(value("kith_event_log_applied"), 1.0);
    assert_eq!(value("kith_projection_lag_events"), 0.0);
    assert_eq!(value("kith_projection_leases"), 1.0);

    // A scrape is a request like the others.
    let text = scrape(&server).await;
    assert_eq!(sample(&text, r#"kith_http_requests_total{route="/metrics",method="GET",status="200"}"#), Some(1.0));
    server.stop().await;
}

/// Each server counts its own traffic: tests run many in one process.
async fn each_server_has_its_own_series() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    first.get("/api/contacts").await;
    let series = r#"kith_http_requests_total{route="/api/contacts",method="GET",status="200"}"#;
    assert_eq!(sample(&scrape(&first).await, series), Some(1.0));
    assert_eq!(sample(&scrape(&second).await, series), None);
    first.stop().await;
    second.stop().await;
}

crate::backend_tests!(requests_passes_and_deliveries_are_counted, each_server_has_its_own_series);
