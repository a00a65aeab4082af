//! Regions: a US node and an EU node, each on its own database, refuse each other's keys with
//! `421 wrong_region` and the address of the key's region, before reading the body and without
//! storing anything; their own keys, and keys made before regions, work as before.

mod common;

use std::collections::BTreeMap;

use common::{basic, read, Options, TestServer};
use kith_server::auth::generate_key;
use kith_server::region::Regions;
use kith_store::KeyKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

const US: &str = "https://us.kith.example.com";
const EU: &str = "https://eu.kith.example.com";

async fn node(region: &str) -> TestServer {
    let endpoints: BTreeMap<String, String> =
        [("us", US), ("eu", EU)].into_iter().map(|(name, url)| (name.to_owned(), url.to_owned())).collect();
    let regions = Regions::new(Some(region.to_owned()), endpoints).expect("regions");
    TestServer::start_with(Options { regions, ..Options::default() }).await
}

fn identify(email: &str) -> Value {
    json!({"type": "identify", "userId": email, "traits": {"email": email}, "timestamp": "2024-06-03T16:00:00Z"})
}

/// The refusal's status and body, checked to name `endpoint`.
fn assert_misdirected(status: StatusCode, body: &Value, endpoint: &str) {
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{body}");
    assert_eq!(body["code"], "wrong_region", "{body}");
    assert_eq!(body["endpoint"], endpoint, "{body}");
    assert!(body["message"].as_str().unwrap().contains(endpoint), "{body}");
}

async fn rows(server: &TestServer) -> i64 {
    server.count_rows("SELECT (SELECT count(*) FROM contacts) + (SELECT count(*) FROM events)").await
}

async fn nodes_refuse_each_others_keys() {
    let us = node("us").await;
    let eu = node("eu").await;
    assert!(us.write_key.starts_with("kith_wk_us_") && us.secret_key.starts_with("kith_sk_us_"));
    assert!(eu.write_key.starts_with("kith_wk_eu_") && eu.secret_key.starts_with("kith_sk_eu_"));
    assert_eq!(us.get("/api/workspace").await["region"], "us");
    assert_eq!(eu.get("/api/workspace").await["region"], "eu");

    // Each node takes its own region's events.
    us.ingest("/v1/identify", &identify("ada@example.com")).await;
    eu.ingest("/v1/identify", &identify("marie@example.eu")).await;
    let (us_rows, eu_rows) = (rows(&us).await, rows(&eu).await);

    // A US key sent to the EU node, in a header: refused before the body is read (this one is
    // not even JSON, which would otherwise be a 400).
    for path in ["/v1/identify", "/v1/batch"] {
        let response = eu
            .client
            .post(format!("{}{path}", eu.url))
            .header("authorization", basic(&us.write_key))
            .body("this is not JSON")
            .send()
            .await
            .unwrap();
        let (status, body) = read(response).await;
        assert_misdirected(status, &body, US);
    }
    // A real event under an EU key, sent to the US node: refused, nothing stored.
    let response = us
        .client
        .post(format!("{}/v1/identify", us.url))
        .header("authorization", basic(&eu.write_key))
        .json(&identify("leak@example.eu"))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_misdirected(status, &body, EU);
    // The key in the body (`writeKey`) is refused as well.
    let mut with_key = identify("leak2@example.eu");
    with_key["writeKey"] = json!(eu.write_key);
    let response = us.client.post(format!("{}/v1/identify", us.url)).json(&with_key).send().await.unwrap();
    let (status, body) = read(response).await;
    assert_misdirected(status, &body, EU);

    // The read API: a secret key of the other region.
    let response = eu.client.get(format!("{}/api/contacts", eu.url)).bearer_auth(&us.secret_key).send().await.unwrap();
    let (status, body) = read(response).await;
    assert_misdirected(status, &body, US);
    let response = us
        .client
        .patch(format!("{}/api/workspace", us.url))
        .bearer_auth(&eu.secret_key)
        .json(&json!({"name": "taken over"}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_misdirected(status, &body, EU);

    // Nothing of the refused requests reached either database.
    assert_eq!(rows(&us).await, us_rows);
    assert_eq!(rows(&eu).await, eu_rows);
    assert_eq!(us.emails().await, ["ada@example.com"]);
    assert_eq!(eu.emails().await, ["marie@example.eu"]);
    assert_eq!(us.get("/api/workspace").await["name"], "Test");

    // The refusals are counted, by code.
    let metrics = us.client.get(format!("{}/metrics", us.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kith_rejections_total{code=\"wrong_region\"} 3"), "{metrics}");
    let metrics = eu.client.get(format!("{}/metrics", eu.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kith_rejections_total{code=\"wrong_region\"} 3"), "{metrics}");

    us.stop().await;
    eu.stop().await;
}

async fn new_keys_carry_the_region_and_old_keys_keep_working() {
    let eu = node("eu").await;
    let (status, created) =
        eu.call(reqwest::Method::POST, "/api/keys", &json!({"kind": "write", "name": "site"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("kith_wk_eu_"), "{key}");
    let response = eu
        .client
        .post(format!("{}/v1/identify", eu.url))
        .header("authorization", basic(key))
        .json(&identify("new@example.eu"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // A key made before the node had a region names none: it belongs to this node's region.
    let old = generate_key(KeyKind::Write);
    eu.state.store.create_key(eu.workspace, KeyKind::Write, "old", &old).await.unwrap();
    let response = eu
        .client
        .post(format!("{}/v1/identify", eu.url))
        .header("authorization", basic(&old))
        .json(&identify("old@example.eu"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut emails = eu.emails().await;
    emails.sort();
    assert_eq!(emails, ["new@example.eu", "old@example.eu"]);

    // A region nobody configured an address for is still refused, without an endpoint.
    let response = eu
        .client
        .get(format!("{}/api/contacts", eu.url))
        .bearer_auth("kith_sk_ap_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(body["code"], "wrong_region");
    assert!(body.get("endpoint").is_none(), "{body}");
    eu.stop().await;
}

async fn a_node_without_a_region_checks_none() {
    let server = TestServer::start().await;
    assert!(kith_server::region::key_region(&server.write_key).is_none());
    assert_eq!(server.get("/api/workspace").await["region"], Value::Null);
    // A key naming a region is only an unknown key here.
    let response = server
        .client
        .get(format!("{}/api/contacts", server.url))
        .bearer_auth("kith_sk_eu_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

backend_tests!(
    nodes_refuse_each_others_keys,
    new_keys_carry_the_region_and_old_keys_keep_working,
    a_node_without_a_region_checks_none
);
