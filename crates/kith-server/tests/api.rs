//! The read API: contacts (search, sort, cursor pagination), one contact by id or email,
//! timelines, workspace settings, the dry run, the OpenAPI document and health endpoints.

mod common;

use common::TestServer;
use jiff::{SignedDuration, Timestamp};
use kith_server::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn identify(email: &str, name: &str, time: &str) -> Value {
    json!({"type":"identify","traits":{"email": email, "name": name},"timestamp": time})
}

async fn contacts_are_searchable_sortable_and_paginated() {
    let server = TestServer::start().await;
    let mut batch = Vec::new();
    for i in 0..25 {
        batch.push(identify(
            &format!("user{i:02}@example.com"),
            &format!("User {i:02}"),
            &format!("2024-06-{:02}T10:00:00Z", i + 1),
        ));
    }
    batch.push(identify("grace@navy.mil", "Grace Hopper", "2024-05-01T10:00:00Z"));
    server.ingest("/v1/batch", &json!({"batch": batch})).await;

    let page = server.get("/api/contacts?limit=10").await;
    let first: Vec<&str> = page["items"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap()).collect();
    assert_eq!(first[0], "user24@example.com", "last seen first");
    assert_eq!(first.len(), 10);
    let mut seen: Vec<String> = first.iter().map(|e| e.to_string()).collect();
    let mut cursor = page["next_cursor"].as_str().map(str::to_owned);
    while let Some(next) = cursor {
        let page = server.get(&format!("/api/contacts?limit=10&cursor={next}")).await;
        seen.extend(page["items"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap().to_owned()));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), 26, "every contact exactly once");
    assert_eq!(seen.last().unwrap(), "grace@navy.mil");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 26);

    let found = server.get("/api/contacts?search=hopper").await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    assert_eq!(found["items"][0]["email"], "grace@navy.mil");
    let found = server.get("/api/contacts?search=NAVY.mil").await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    let found = server.get("/api/contacts?search=user1").await;
    assert_eq!(found["items"].as_array().unwrap().len(), 10);

    let (status, body) = server.api("/api/contacts?cursor=garbage").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_cursor")));
    let (status, body) = server.api("/api/contacts?sort=shoe_size").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_sort")));
    server.stop().await;
}

async fn a_contact_by_id_or_email_with_profile_and_identities() {
    let server = TestServer::start().await;
    server.send("/v1/identify", common::fixture("segment/identify.json")).await;
    let by_email = server.contact("Ada@Example.COM").await;
    assert_eq!(by_email["email"], "ada@example.com");
    assert_eq!(by_email["name"], "Ada Lovelace");
    assert_eq!(by_email["profile"]["company"], "Analytical Engines");
    assert_eq!(by_email["traits"]["plan"], "pro");
    let by_id = server.get(&format!("/api/contacts/{}", by_email["id"])).await;
    assert_eq!(by_id["email"], "ada@example.com");
    let kinds: Vec<(&str, &str)> = by_id["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["kind"].as_str().unwrap(), i["value"].as_str().unwrap()))
        .collect();
    assert!(kinds.contains(&("user_id", "97980cfea0067")), "{kinds:?}");
    assert!(kinds.contains(&("anonymous_id", "507f191e810c19729de860ea")), "{kinds:?}");
    let (status, body) = server.api("/api/contacts/nobody@example.com").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, _) = server.api("/api/contacts/999999/timeline").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

async fn timelines_page_newest_first() {
    let server = TestServer::start().await;
    let mut batch = vec![identify("ada@example.com", "Ada", "2024-01-01T10:00:00Z")];
    for day in 2..=28 {
        batch.push(json!({"type":"identify","traits":{"email":"ada@example.com"},"event": format!("Day {day}"),
            "timestamp": format!("2024-02-{day:02}T10:00:00Z")}));
    }
    server.ingest("/v1/batch", &json!({"batch": batch})).await;
    let first = server.get("/api/contacts/ada@example.com/timeline?limit=20").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 20);
    assert_eq!(first["items"][0]["description"], "Day 28");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = server.get(&format!("/api/contacts/ada@example.com/timeline?limit=20&cursor={cursor}")).await;
    let items = second["items"].as_array().unwrap();
    assert_eq!(items.len(), 8);
    assert_eq!(items.last().unwrap()["day"], "2024-01-01");
    assert!(second["next_cursor"].is_null());
    server.stop().await;
}

async fn workspace_settings_are_read_and_changed() {
    let server = TestServer::start().await;
    let workspace = server.get("/api/workspace").await;
    assert_eq!(workspace["time_zone"], "UTC");
    assert_eq!(workspace["half_life_days"], 30.0);
    let (status, body) =
        server.call(Method::PATCH, "/api/workspace", &json!({"name": "Acme", "time_zone": "Europe/Paris"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Acme");
    assert_eq!(body["time_zone"], "Europe/Paris");
    let (status, body) = server.call(Method::PATCH, "/api/workspace", &json!({"time_zone": "Mars/Olympus"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_time_zone")));
    let (status, body) = server.call(Method::PATCH, "/api/workspace", &json!({"timezone": "UTC"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")));
    assert_eq!(server.get("/api/workspace").await["time_zone"], "Europe/Paris");
    server.stop().await;
}

async fn validate_is_a_dry_run() {
    let server = TestServer::start().await;
    let answer = server
        .call(
            Method::POST,
            "/api/validate",
            &json!({"batch": [
                {"type":"identify","traits":{"email":" New@Example.com"},"page":{"url":"https://x.io"},"timestamp":"2024-06-01T10:00:00Z","messageId":"v1"},
                {"type":"identify","traits":{"email":"a@b"},"timestamp":"2024-06-01T10:00:00Z"},
                {"type":"track","userId":"stranger","event":"Clicked","timestamp":"2024-06-01T10:00:00Z"}
            ]}),
        )
        .await
        .1;
    let events = answer["events"].as_array().unwrap();
    assert_eq!(events[0]["valid"], true);
    assert_eq!(events[0]["email"], "new@example.com");
    assert_eq!(events[0]["description"], "https://x.io");
    assert_eq!(events[0]["creates_contact"], true);
    assert_eq!(events[0]["activity"], "added");
    assert_eq!(events[0]["day"], "2024-06-01");
    assert_eq!(events[1]["valid"], false);
    assert_eq!(events[1]["code"], "invalid_email");
    assert_eq!(events[2]["pending"], true);
    assert!(server.emails().await.is_empty(), "validate stores nothing");

    server
        .ingest("/v1/identify", &json!({"type":"identify","traits":{"email":"new@example.com"},"timestamp":"2024-06-01T09:00:00Z","messageId":"v1"}))
        .await;
    let answer = server
        .call(
            Method::POST,
            "/api/validate",
            &json!({"type":"identify","traits":{"email":"new@example.com"},"timestamp":"2024-06-01T11:00:00Z","messageId":"v2"}),
        )
        .await
        .1;
    assert_eq!(answer["events"][0]["activity"], "merged");
    assert_eq!(answer["events"][0]["creates_contact"], false);
    assert!(answer["events"][0]["contact_id"].is_i64());
    let replay = server
        .call(Method::POST, "/api/validate", &json!({"type":"identify","traits":{"email":"new@example.com"},"timestamp":"2024-06-01T09:00:00Z","messageId":"v1"}))
        .await
        .1;
    assert_eq!(replay["events"][0]["duplicate"], true);
    server.stop().await;
}

async fn contacts_export_as_csv_across_pages() {
    let server = TestServer::start().await;
    let batch: Vec<Value> = (0..1500)
        .map(|i| identify(&format!("user{i:04}@example.com"), &format!("User {i}"), "2024-06-01T10:00:00Z"))
        .collect();
    for chunk in batch.chunks(500) {
        server.ingest("/v1/batch", &json!({"batch": chunk})).await;
    }
    let response = server
        .client
        .get(format!("{}/api/contacts/export.csv", server.url))
        .bearer_auth(&server.secret_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = response.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1501, "a header and every contact, across two pages");
    assert_eq!(lines[0].split(',').next(), Some("id"));
    assert_eq!(lines.iter().filter(|l| l.starts_with("id,")).count(), 1, "one header");
    let response = server.client.get(format!("{}/api/contacts/export.csv", server.url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

async fn health_metrics_and_the_openapi_document() {
    let server = TestServer::start().await;
    for path in ["/healthz", "/readyz"] {
        let response = server.client.get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let spec: Value =
        server.client.get(format!("{}/api/openapi.json", server.url)).send().await.unwrap().json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in
        ["/api/contacts", "/api/contacts/{id}", "/api/contacts/{id}/timeline", "/api/workspace", "/api/validate"]
    {
        assert!(spec["paths"][path].is_object(), "{path} is documented");
    }
    server.ingest("/v1/identify", &identify("m@example.com", "M", "2024-06-01T10:00:00Z")).await;
    server.send("/v1/identify", "{").await;
    let metrics = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kith_events_stored_total 1"), "{metrics}");
    assert!(metrics.contains("kith_rejections_total{code=\"invalid_json\"} 1"), "{metrics}");
    assert!(metrics.contains("kith_commits_total 1"), "{metrics}");
    // The scrape waited for the projection: nothing acknowledged is left to apply.
    assert!(metrics.contains("kith_event_log_appended 1\n"), "{metrics}");
    assert!(metrics.contains("kith_event_log_applied 1\n"), "{metrics}");
    assert!(metrics.contains("kith_projection_lag_events 0\n"), "{metrics}");
    server.stop().await;
}

/// The store stamps what it writes with the server's clock, not the machine's: a test that
/// moves the clock sees keys and rules stamped at the moved time.
async fn every_time_the_store_stamps_comes_from_the_server_clock() {
    let t0: Timestamp = "2031-03-04T05:06:07Z".parse().unwrap();
    let clock = Clock::manual(t0);
    let server = TestServer::start_with_clock(clock.clone()).await;
    let (status, key) = server.call(Method::POST, "/api/keys", &json!({"kind": "write", "name": "later"})).await;
    assert!(status.is_success(), "{key}");
    assert_eq!(key["created_at"], "2031-03-04T05:06:07Z", "{key}");

    clock.advance(SignedDuration::from_hours(24));
    let rule =
        json!({"name": "Due", "when": {"becomes_due": {}}, "then": [{"webhook": {"url": "https://hooks.example/x"}}]});
    let (status, rule) = server.call(Method::POST, "/api/rules", &rule).await;
    assert!(status.is_success(), "{rule}");
    assert_eq!(rule["created_at"], "2031-03-05T05:06:07Z", "{rule}");

    let id = key["id"].as_i64().unwrap();
    let (status, _) = server.call(Method::DELETE, &format!("/api/keys/{id}"), &Value::Null).await;
    assert!(status.is_success());
    let keys = server.get("/api/keys").await;
    let revoked = keys.as_array().unwrap().iter().find(|k| k["id"] == id).expect("the revoked key is listed");
    assert_eq!(revoked["revoked_at"], "2031-03-05T05:06:07Z", "{revoked}");
    server.stop().await;
}

crate::backend_tests!(
    every_time_the_store_stamps_comes_from_the_server_clock,
    contacts_are_searchable_sortable_and_paginated,
    a_contact_by_id_or_email_with_profile_and_identities,
    timelines_page_newest_first,
    workspace_settings_are_read_and_changed,
    validate_is_a_dry_run,
    contacts_export_as_csv_across_pages,
    health_metrics_and_the_openapi_document,
);
