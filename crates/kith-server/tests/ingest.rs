//! How requests reach kith: every route, the three key forms, any Content-Type, gzip, CORS,
//! the signing secret, telemetry, and the batch answer.

mod common;

use common::{gzip, TestServer};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn identify(email: &str) -> Value {
    json!({"type":"identify","userId": email, "traits":{"email": email},"timestamp":"2024-06-01T10:00:00Z"})
}

async fn keys_in_basic_bearer_and_body_all_work() {
    let server = TestServer::start().await;
    let url = format!("{}/v1/identify", server.url);
    let response = server
        .client
        .post(&url)
        .header("authorization", server.basic())
        .body(identify("basic@example.com").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = server
        .client
        .post(&url)
        .bearer_auth(&server.write_key)
        .body(identify("bearer@example.com").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut in_body = identify("body@example.com");
    in_body["writeKey"] = json!(server.write_key);
    let response = server.client.post(&url).body(in_body.to_string()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut emails = server.emails().await;
    emails.sort();
    assert_eq!(emails, ["basic@example.com", "bearer@example.com", "body@example.com"]);
    let contact = server.contact("body@example.com").await;
    let payload = server.get(&format!("/api/contacts/{}/events", contact["id"])).await;
    assert!(!payload.to_string().contains(&server.write_key), "the write key is never stored");
    server.stop().await;
}

async fn the_body_is_json_whatever_the_content_type_and_gzip_is_detected() {
    let server = TestServer::start().await;
    let cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("text/plain", None, identify("plain@example.com").to_string().into_bytes()),
        (
            "application/x-www-form-urlencoded",
            Some("gzip"),
            gzip(identify("form-gzip@example.com").to_string().as_bytes()),
        ),
        ("application/json", None, gzip(identify("magic@example.com").to_string().as_bytes())),
        ("application/octet-stream", None, identify("octet@example.com").to_string().into_bytes()),
    ];
    for (content_type, encoding, body) in cases {
        let mut request = server
            .client
            .post(format!("{}/v1/identify", server.url))
            .header("authorization", server.basic())
            .header("content-type", content_type)
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        let (status, answer) = common::read(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{content_type}: {answer}");
    }
    assert_eq!(server.emails().await.len(), 4);
    server.stop().await;
}

async fn every_route_takes_its_type_from_the_path() {
    let server = TestServer::start().await;
    server
        .ingest("/v1/i", &json!({"userId":"u1","traits":{"email":"r@example.com"},"timestamp":"2024-06-01T10:00:00Z"}))
        .await;
    for (path, body) in [
        ("/v1/track", json!({"userId":"u1","event":"Signed Up","timestamp":"2024-06-02T10:00:00Z"})),
        ("/v1/t", json!({"userId":"u1","event":"Logged In","timestamp":"2024-06-03T10:00:00Z"})),
        (
            "/v1/page",
            json!({"userId":"u1","name":"Home","properties":{"url":"https://acme.io/"},"timestamp":"2024-06-04T10:00:00Z"}),
        ),
        ("/v1/p", json!({"userId":"u1","properties":{"url":"https://acme.io/p"},"timestamp":"2024-06-05T10:00:00Z"})),
        ("/v1/screen", json!({"userId":"u1","name":"Dashboard","timestamp":"2024-06-06T10:00:00Z"})),
        ("/v1/s", json!({"userId":"u1","name":"Settings","timestamp":"2024-06-07T10:00:00Z"})),
        ("/v1/group", json!({"userId":"u1","groupId":"g1","traits":{"name":"G"},"timestamp":"2024-06-08T10:00:00Z"})),
        ("/v1/g", json!({"userId":"u1","groupId":"g2","timestamp":"2024-06-08T10:00:00Z"})),
        ("/v1/alias", json!({"userId":"u1","previousId":"anon-1","timestamp":"2024-06-08T10:00:00Z"})),
        ("/v1/a", json!({"userId":"u1","previousId":"anon-2","timestamp":"2024-06-08T10:00:00Z"})),
        ("/v1/identify", json!({"userId":"u1","traits":{"plan":"pro"},"timestamp":"2024-06-09T10:00:00Z"})),
    ] {
        server.ingest(path, &body).await;
    }
    let descriptions: Vec<String> =
        server.timeline("r@example.com").await.iter().map(|i| i["description"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        descriptions,
        [
            "Active in your product",
            "Viewed Settings",
            "Viewed Dashboard",
            "Visited https://acme.io/p",
            "Visited https://acme.io/",
            "Logged In",
            "Signed Up",
            "Active in your product"
        ]
    );
    let contact = server.contact("r@example.com").await;
    assert_eq!(contact["traits"]["plan"], "pro", "an identify without email updates the known user");
    let ids: Vec<&str> =
        contact["identities"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
    assert!(ids.contains(&"anon-1") && ids.contains(&"anon-2") && ids.contains(&"u1"), "{ids:?}");
    assert_eq!(contact["accounts"].as_array().unwrap().len(), 2);
    server.stop().await;
}

async fn batches_and_arrays_keep_valid_items_and_list_the_rest() {
    let server = TestServer::start().await;
    let batch = json!({"batch": [
        identify("one@example.com"),
        {"type":"identify","traits":{"email":"not-an-email"},"timestamp":"2024-06-01T10:00:00Z"},
        identify("two@example.com"),
        {"type":"track","userId":"one@example.com","timestamp":"2024-06-01T10:00:00Z"},
        "not an object",
    ]});
    let (status, body) = server.send_json("/v1/batch", &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["accepted"], 2);
    let rejected: Vec<(u64, &str)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(rejected, [(1, "invalid_email"), (3, "missing_event"), (4, "invalid_json")]);

    let array = json!([identify("three@example.com"), identify("four@example.com")]);
    let (status, body) = server.send_json("/v1/events", &array).await;
    assert_eq!((status, body["accepted"].as_u64()), (StatusCode::OK, Some(2)));

    let all_bad = json!({"batch": [{"type":"identify","timestamp":"2024-06-01T10:00:00Z"}]});
    let (status, body) = server.send_json("/v1/b", &all_bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "missing_email");
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["rejected"][0]["index"], 0);
    assert_eq!(server.emails().await.len(), 4);
    server.stop().await;
}

async fn the_integrations_object_can_keep_kith_out() {
    let server = TestServer::start().await;
    let mut off = identify("off@example.com");
    off["integrations"] = json!({"Kith": false});
    let mut all_off = identify("alloff@example.com");
    all_off["integrations"] = json!({"All": false});
    let mut all_off_kith_on = identify("on@example.com");
    all_off_kith_on["integrations"] = json!({"All": false, "Kith": true});
    for body in [&off, &all_off, &all_off_kith_on] {
        server.ingest("/v1/identify", body).await;
    }
    assert_eq!(server.emails().await, ["on@example.com"]);
    server.stop().await;
}

async fn browsers_get_a_cacheable_preflight_and_telemetry_is_acknowledged() {
    let server = TestServer::start().await;
    let response = server
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/v1/t", server.url))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://app.example.com");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    assert!(headers.contains_key("access-control-max-age"));

    let response = server
        .client
        .post(format!("{}/v1/m", server.url))
        .header("content-type", "text/plain")
        .body(common::fixture("sdk/browser-segment/metrics-v1-m.json"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert!(server.emails().await.is_empty());
    server.stop().await;
}

fn sign(secret: &str, bytes: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(bytes);
    hex::encode(mac.finalize().into_bytes())
}

async fn a_signing_secret_requires_a_matching_signature() {
    let server = TestServer::start().await;
    let (status, _) = server.call(reqwest::Method::PATCH, "/api/workspace", &json!({"signing_secret": "whsec"})).await;
    assert_eq!(status, StatusCode::OK);
    let body = identify("signed@example.com").to_string();
    let post = |signature: Option<String>, body: String| {
        let mut request =
            server.client.post(format!("{}/v1/events", server.url)).header("authorization", server.basic()).body(body);
        if let Some(signature) = signature {
            request = request.header("x-signature", signature);
        }
        request.send()
    };
    let (status, answer) = common::read(post(None, body.clone()).await.unwrap()).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_signature")));
    let (status, _) = common::read(post(Some(sign("wrong", body.as_bytes())), body.clone()).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = common::read(post(Some(sign("whsec", body.as_bytes())), body.clone()).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    // Segment batching signs only the first element of the array, as it stands in the body.
    let first = identify("first@example.com").to_string();
    let array = format!("[{first}, {}]", identify("second@example.com"));
    let (status, answer) = common::read(post(Some(sign("whsec", first.as_bytes())), array).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(server.emails().await.len(), 3);
    server.stop().await;
}

/// Segment signs only an array's first event: a workspace may refuse array bodies so that
/// nothing can be appended to a captured request.
async fn a_signed_workspace_can_refuse_array_bodies() {
    let server = TestServer::start().await;
    let change = json!({"signing_secret": "whsec", "refuse_array_bodies": true});
    let (status, workspace) = server.call(reqwest::Method::PATCH, "/api/workspace", &change).await;
    assert_eq!(status, StatusCode::OK, "{workspace}");
    assert_eq!(workspace["refuse_array_bodies"], true);
    assert_eq!(server.get("/api/workspace").await["refuse_array_bodies"], true);
    let post = |body: String, signed: &[u8]| {
        server
            .client
            .post(format!("{}/v1/events", server.url))
            .header("authorization", server.basic())
            .header("x-signature", sign("whsec", signed))
            .body(body)
            .send()
    };

    let first = identify("first@example.com").to_string();
    let appended = format!("[{first}, {}]", identify("appended@example.com"));
    let (status, answer) = common::read(post(appended.clone(), first.as_bytes()).await.unwrap()).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_signature")), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("array"), "{answer}");
    assert!(server.emails().await.is_empty(), "nothing of a refused array is stored");

    // One event, or a batch object, is signed whole and still accepted.
    let (status, _) = common::read(post(first.clone(), first.as_bytes()).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let batch = json!({"batch": [identify("batched@example.com")]}).to_string();
    let (status, answer) = common::read(post(batch.clone(), batch.as_bytes()).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Turned off, arrays are checked against their first event again.
    let (status, _) =
        server.call(reqwest::Method::PATCH, "/api/workspace", &json!({"refuse_array_bodies": false})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = common::read(post(appended, first.as_bytes()).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(server.emails().await.len(), 3);
    server.stop().await;
}

crate::backend_tests!(
    keys_in_basic_bearer_and_body_all_work,
    a_signed_workspace_can_refuse_array_bodies,
    the_body_is_json_whatever_the_content_type_and_gzip_is_detected,
    every_route_takes_its_type_from_the_path,
    batches_and_arrays_keep_valid_items_and_list_the_rest,
    the_integrations_object_can_keep_kith_out,
    browsers_get_a_cacheable_preflight_and_telemetry_is_acknowledged,
    a_signing_secret_requires_a_matching_signature,
);
