//! Junk ids: every value the contract lists, in any letter case, is ignored as a `userId` or
//! `anonymousId` — never linked to a contact, so later events carrying it reach nobody. The list
//! below is copied from the contract, not from the implementation, so that dropping a value from
//! the code's own list fails here.

mod common;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The contract, as written: "Junk ids are ignored, never linked: empty, `null`, `undefined`,
/// `none`, `nil`, `0`, `-1`, `[object Object]`, `NaN`, `anonymous`, `guest`, `distinct_id`, `id`,
/// `not_authenticated`, `email`, `true`, `false` (case-insensitive)."
const CONTRACT_JUNK_IDS: [&str; 17] = [
    "",
    "null",
    "undefined",
    "none",
    "nil",
    "0",
    "-1",
    "[object Object]",
    "NaN",
    "anonymous",
    "guest",
    "distinct_id",
    "id",
    "not_authenticated",
    "email",
    "true",
    "false",
];

const T: &str = "2024-06-01T10:00:00Z";

/// Each junk id as written, upper-cased, lower-cased and in alternating case, without
/// repeats; `0` and `-1` also as JSON numbers, which SDKs send too.
fn variants() -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    for id in CONTRACT_JUNK_IDS {
        let alternating: String = id
            .chars()
            .enumerate()
            .map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect();
        for variant in [id.to_owned(), id.to_uppercase(), id.to_lowercase(), alternating] {
            if !all.contains(&Value::String(variant.clone())) {
                all.push(Value::String(variant));
            }
        }
    }
    all.push(json!(0));
    all.push(json!(-1));
    all
}

fn ids(contact: &Value) -> Vec<Value> {
    contact["identities"].as_array().unwrap().iter().map(|i| i["value"].clone()).collect()
}

async fn event_count(server: &TestServer, email: &str) -> usize {
    server.get(&format!("/api/contacts/{email}/events")).await["items"].as_array().unwrap().len()
}

/// The steps that a junk id must fail: identify with `user_id` as `userId` and with
/// `anonymous_id` as `anonymousId`, then track with each. Returns the two contacts' emails.
async fn identify_then_track(server: &TestServer, n: usize, user_id: &Value, anonymous_id: &Value) -> (String, String) {
    let (by_user, by_anonymous) = (format!("user{n}@junk.example"), format!("anon{n}@junk.example"));
    server.ingest("/v1/identify", &json!({"userId": user_id, "traits": {"email": by_user}, "timestamp": T})).await;
    server
        .ingest(
            "/v1/identify",
            &json!({"anonymousId": anonymous_id, "traits": {"email": by_anonymous}, "timestamp": T}),
        )
        .await;
    // Alongside a real id the event is accepted; it must reach nobody through the junk one.
    server
        .ingest(
            "/v1/track",
            &json!({"userId": user_id, "anonymousId": format!("real-anon-{n}"), "event": "Probe", "timestamp": T}),
        )
        .await;
    server
        .ingest(
            "/v1/track",
            &json!({"userId": format!("real-user-{n}"), "anonymousId": anonymous_id, "event": "Probe", "timestamp": T}),
        )
        .await;
    (by_user, by_anonymous)
}

async fn no_junk_id_of_the_contract_ever_links_a_contact() {
    let server = TestServer::start().await;

    // A real id, through the same steps, is linked and reached: the probe can tell the two apart.
    let (user, anonymous) = identify_then_track(&server, 0, &json!("u-real"), &json!("a-real")).await;
    assert_eq!(ids(&server.contact(&user).await), [json!("u-real")]);
    assert_eq!(event_count(&server, &user).await, 2, "the track reached the real userId's contact");
    assert_eq!(ids(&server.contact(&anonymous).await), [json!("a-real")], "and the anonymousId's");
    assert_eq!(event_count(&server, &anonymous).await, 2);

    let variants = variants();
    assert!(variants.len() > 2 * CONTRACT_JUNK_IDS.len(), "case variants are tested too");
    for (i, id) in variants.iter().enumerate() {
        let n = i + 1;
        let (user, anonymous) = identify_then_track(&server, n, id, id).await;
        for email in [&user, &anonymous] {
            let contact = server.contact(email).await;
            assert_eq!(ids(&contact), Vec::<Value>::new(), "{id} was linked to {email}");
            assert_eq!(event_count(&server, email).await, 1, "an event carrying {id} reached {email}");
        }
        // On its own, a junk id names nobody: refused, with the reason.
        let (status, body) =
            server.send_json("/v1/track", &json!({"userId": id, "event": "Probe", "timestamp": T})).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("no_user_anon_id")), "{id}: {body}");
        let (status, body) =
            server.send_json("/v1/page", &json!({"anonymousId": id, "name": "Home", "timestamp": T})).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("no_user_anon_id")), "{id}: {body}");
    }
    assert_eq!(server.emails().await.len(), 2 * (variants.len() + 1), "one contact per email, none merged");
    server.stop().await;
}

crate::backend_tests!(no_junk_id_of_the_contract_ever_links_a_contact);
