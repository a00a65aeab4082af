//! Outbound requests against hostile or internal receivers: the address policy (no loopback,
//! private or metadata addresses unless `outbound_allow` lists them, whether written
//! literally or behind a name), no redirects, nothing of an answer's body shown, bounded
//! answers, and a job scheduler that a receiver cannot stop.

mod common;

use std::time::{Duration, Instant};

use axum::http::{header, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use common::outbound::Receiver;
use common::{Options, TestServer};
use jiff::{SignedDuration, Timestamp};
use kith_server::Clock;
use kith_store::NewDelivery;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A server that refuses every internal address, as `kith serve` does by default.
async fn strict_server() -> TestServer {
    TestServer::start_with(Options { outbound_allow: Some(vec![]), ..Options::default() }).await
}

/// Queues a webhook delivery as a rule or a digest would, without the checks made when
/// those are saved: what a name resolves to can change after it was saved.
async fn enqueue_webhook(server: &TestServer, url: &str) {
    enqueue_webhook_at(server, url, server.state.clock.now()).await
}

async fn enqueue_webhook_at(server: &TestServer, url: &str, at: Timestamp) {
    let delivery = NewDelivery { kind: "webhook".into(), target: url.to_owned(), payload: json!({"text": "hi"}) };
    server.state.store.enqueue(server.workspace, vec![delivery], at).await.unwrap();
}

async fn deliveries(server: &TestServer) -> Vec<Value> {
    server.get("/api/deliveries").await.as_array().unwrap().clone()
}

/// Starts an HTTP server on 127.0.0.1 that answers every request with `answer()`.
async fn answering<F, R>(answer: F) -> String
where
    F: Fn() -> R + Clone + Send + Sync + 'static,
    R: IntoResponse,
{
    let app = axum::Router::new().fallback(move || {
        let answer = answer.clone();
        async move { answer() }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn internal_targets_are_refused_when_saved() {
    let server = strict_server().await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/hook",
        "http://[::1]:8080/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
    ] {
        let rule = json!({"name": "R", "when": {"becomes_due": {}}, "then": [{"webhook": {"url": url}}]});
        let (status, body) = server.call(Method::POST, "/api/rules", &rule).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_eq!(body["code"], "address_not_allowed", "{url}: {body}");
        assert!(body["message"].as_str().unwrap().contains("outbound_allow"), "says how to allow it: {body}");
        let (status, body) = server.call(Method::PATCH, "/api/workspace", &json!({"digest_webhook_url": url})).await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("digest_webhook_url")), "{body}");
    }
    let (status, body) = server.call(Method::PATCH, "/api/workspace", &json!({"segment_host": "10.1.2.3:8080"})).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("segment_host")), "{body}");
    assert!(server.get("/api/rules").await.as_array().unwrap().is_empty(), "nothing was saved");
    let workspace = server.get("/api/workspace").await;
    assert!(workspace["digest_webhook_url"].is_null() && workspace["segment_host"].is_null(), "{workspace}");

    // Public names are accepted (they are checked again, resolved, when connecting).
    let rule = json!({"name": "R", "when": {"becomes_due": {}}, "then": [{"webhook": {"url": "https://hooks.example.com/x"}}]});
    assert_eq!(server.call(Method::POST, "/api/rules", &rule).await.0, StatusCode::CREATED);
    server.stop().await;
}

async fn internal_addresses_are_refused_when_connecting_even_behind_a_name() {
    let hook = Receiver::start().await;
    let server = strict_server().await;
    let port = hook.url.rsplit(':').next().unwrap();
    // A name that resolves to 127.0.0.1, as a rebinding DNS server would answer after the
    // rule was saved, and the literal address queued by an older kith.
    enqueue_webhook(&server, &format!("http://localhost:{port}/hook")).await;
    enqueue_webhook(&server, &hook.url).await;
    let report = server.run_jobs().await;
    assert_eq!(report.deliveries.sent, 0, "{report:?}");
    assert!(hook.received().is_empty(), "nothing reached the receiver on 127.0.0.1");
    for delivery in deliveries(&server).await {
        let error = delivery["last_error"].as_str().unwrap();
        assert!(error.contains("loopback") && error.contains("outbound_allow"), "{error}");
    }

    // Listing the range lets the same deliveries through.
    let allowed = TestServer::start_with(Options {
        outbound_allow: Some(vec!["127.0.0.0/8".parse().unwrap()]),
        ..Options::default()
    })
    .await;
    enqueue_webhook(&allowed, &format!("http://localhost:{port}/hook")).await;
    assert_eq!(allowed.run_jobs().await.deliveries.sent, 1);
    assert_eq!(hook.received().len(), 1);
    server.stop().await;
    allowed.stop().await;
}

async fn redirects_are_not_followed() {
    let second = Receiver::start().await;
    let target = format!("{}/internal", second.url);
    let first = answering(move || (AxumStatus::TEMPORARY_REDIRECT, [(header::LOCATION, target.clone())])).await;
    let server = TestServer::start().await;
    enqueue_webhook(&server, &format!("{first}/hook")).await;
    let report = server.run_jobs().await;
    assert_eq!(report.deliveries.failed, 1, "a redirect is an answer, not a success: {report:?}");
    assert!(second.received().is_empty(), "the body was not carried to the redirect's target");
    let error = deliveries(&server).await[0]["last_error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("307"), "{error}");
    server.stop().await;
}

async fn nothing_of_an_error_answer_is_shown() {
    let receiver = answering(|| (AxumStatus::INTERNAL_SERVER_ERROR, "root:x:0:0:SECRET-FROM-AN-INTERNAL-PORT")).await;
    let server = TestServer::start().await;
    enqueue_webhook(&server, &receiver).await;
    assert_eq!(server.run_jobs().await.deliveries.retried, 1);
    let delivery = &deliveries(&server).await[0];
    assert_eq!(delivery["last_error"], "500 Internal Server Error", "{delivery}");
    assert!(!delivery.to_string().contains("SECRET"), "{delivery}");
    server.stop().await;
}

/// The peak resident memory of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

async fn a_gzip_bomb_is_neither_unpacked_nor_read_whole() {
    // 200 MB of zeros, about 200 KB once compressed.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..200 {
        std::io::Write::write_all(&mut encoder, &zeros).unwrap();
    }
    let bomb = axum::body::Bytes::from(encoder.finish().unwrap());
    drop(zeros);
    let receiver = answering(move || {
        (
            AxumStatus::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_ENCODING, "gzip"), (header::CONTENT_TYPE, "text/plain")],
            bomb.clone(),
        )
    })
    .await;
    let server = TestServer::start().await;
    let before = peak_rss();
    for _ in 0..3 {
        enqueue_webhook(&server, &receiver).await;
    }
    let started = Instant::now();
    assert_eq!(server.run_jobs().await.deliveries.retried, 3);
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 100 << 20, "memory grew by {} MB", grown >> 20);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(deliveries(&server).await[0]["last_error"], "500 Internal Server Error");
    server.stop().await;
}

async fn a_huge_retry_after_is_only_honoured_within_the_retry_window() {
    let hook = Receiver::start().await;
    hook.answer(&[(503, Some("9223372036854775807"))]);
    let clock = Clock::manual("2024-07-01T09:00:00Z".parse().unwrap());
    let server = TestServer::start_with_clock(clock.clone()).await;
    enqueue_webhook(&server, &hook.url).await;
    clock.advance(SignedDuration::from_secs(1));
    let report = server.run_jobs().await;
    assert_eq!(report.deliveries.retried, 1, "{report:?}");
    let pending = server.get("/api/deliveries?status=pending").await;
    let next: Timestamp = pending[0]["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(next <= clock.now() + SignedDuration::from_hours(4), "retried within the window, at {next}");
    server.stop().await;
}

/// Polls `/readyz` and `/metrics`.
async fn health(server: &TestServer) -> (StatusCode, Value, String) {
    let ready = server.client.get(format!("{}/readyz", server.url)).send().await.unwrap();
    let status = ready.status();
    let body = ready.json::<Value>().await.unwrap();
    let metrics = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    (status, body, metrics)
}

async fn the_scheduler_outlives_a_hostile_receiver() {
    let hostile = Receiver::start().await;
    hostile.answer(&[(503, Some("9223372036854775807"))]);
    let friendly = Receiver::start().await;
    let server = TestServer::start_with(Options { scheduled_jobs: true, ..Options::default() }).await;
    // Queued a while ago, as a delivery being retried is: its age and the Retry-After add up.
    enqueue_webhook_at(&server, &hostile.url, server.state.clock.now() - SignedDuration::from_secs(5)).await;
    wait_until("the hostile receiver is called", Duration::from_secs(10), async || !hostile.received().is_empty())
        .await;
    // The scheduler answered the hostile receiver; anything queued later still goes out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    enqueue_webhook(&server, &friendly.url).await;
    wait_until("the next delivery goes out", Duration::from_secs(10), async || !friendly.received().is_empty()).await;
    let (status, body, metrics) = health(&server).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(metrics.contains("kith_jobs_stalled 0") && metrics.contains("kith_jobs_restarts_total 0"), "{metrics}");
    server.stop().await;
}

async fn readyz_reports_a_scheduler_that_makes_no_progress() {
    // A receiver that accepts connections and never answers holds a delivery until its timeout.
    let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", tarpit.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = tarpit.accept().await {
            held.push(socket);
        }
    });
    let server = TestServer::start_with(Options {
        scheduled_jobs: true,
        jobs_stale_after: Some(Duration::from_secs(2)),
        ..Options::default()
    })
    .await;
    wait_until("ready", Duration::from_secs(5), async || health(&server).await.0 == StatusCode::OK).await;
    enqueue_webhook(&server, &url).await;
    wait_until("/readyz reports the stalled scheduler", Duration::from_secs(9), async || {
        let (status, body, metrics) = health(&server).await;
        status == StatusCode::SERVICE_UNAVAILABLE
            && body["status"] == "jobs stalled"
            && metrics.contains("kith_jobs_stalled 1")
    })
    .await;
    server.stop().await;
}

crate::backend_tests!(
    internal_targets_are_refused_when_saved,
    internal_addresses_are_refused_when_connecting_even_behind_a_name,
    redirects_are_not_followed,
    nothing_of_an_error_answer_is_shown,
    a_gzip_bomb_is_neither_unpacked_nor_read_whole,
    a_huge_retry_after_is_only_honoured_within_the_retry_window,
    the_scheduler_outlives_a_hostile_receiver,
    readyz_reports_a_scheduler_that_makes_no_progress,
);
