//! Identities: junk ids never link people, events of unknown users wait as pending and attach
//! later, alias links or records a conflict, and an explicit merge combines two contacts.

mod common;

use common::TestServer;
use jiff::{SignedDuration, Timestamp};
use kith_server::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn identify(user: &str, email: &str, time: &str) -> Value {
    json!({"type":"identify","userId": user,"traits":{"email": email},"timestamp": time})
}

fn ids(contact: &Value) -> Vec<String> {
    contact["identities"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap().to_owned()).collect()
}

async fn junk_ids_never_link_two_people() {
    let server = TestServer::start().await;
    for (email, junk) in
        [("a@example.com", "undefined"), ("b@example.com", "undefined"), ("c@example.com", "[object Object]")]
    {
        let event = json!({"type":"identify","userId": junk,"anonymousId":"null","traits":{"email": email},"timestamp":"2024-06-01T10:00:00Z"});
        server.ingest("/v1/identify", &event).await;
    }
    assert_eq!(server.emails().await.len(), 3);
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        assert!(ids(&server.contact(email).await).is_empty(), "{email} got no junk identity");
    }
    let (status, body) = server
        .send_json("/v1/track", &json!({"userId":"undefined","event":"X","timestamp":"2024-06-01T10:00:00Z"}))
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("no_user_anon_id")));
    assert!(body["message"].as_str().unwrap().contains("undefined"));
    server.stop().await;
}

async fn events_of_unknown_users_wait_then_attach_with_their_interactions() {
    let server = TestServer::start().await;
    server
        .ingest(
            "/v1/track",
            &json!({"anonymousId":"anon-9","event":"Viewed Pricing","timestamp":"2024-06-01T10:00:00Z"}),
        )
        .await;
    server
        .ingest("/v1/page", &json!({"anonymousId":"anon-9","properties":{"url":"https://acme.io/docs"},"timestamp":"2024-06-02T10:00:00Z"}))
        .await;
    server
        .ingest("/v1/group", &json!({"anonymousId":"anon-9","groupId":"acme","traits":{"name":"Acme"},"timestamp":"2024-06-02T11:00:00Z"}))
        .await;
    assert!(server.emails().await.is_empty(), "a track without an identify creates no contact");
    assert_eq!(server.get("/api/accounts/acme").await["member_count"], 0);

    server
        .ingest("/v1/identify", &json!({"anonymousId":"anon-9","userId":"u9","traits":{"email":"nine@example.com"},"timestamp":"2024-06-03T10:00:00Z"}))
        .await;
    let timeline = server.timeline("nine@example.com").await;
    let days: Vec<(&str, &str)> =
        timeline.iter().map(|i| (i["day"].as_str().unwrap(), i["description"].as_str().unwrap())).collect();
    assert_eq!(
        days,
        [
            ("2024-06-03", "Active in your product"),
            ("2024-06-02", "Visited https://acme.io/docs"),
            ("2024-06-01", "Viewed Pricing")
        ]
    );
    assert_eq!(server.get("/api/accounts/acme").await["member_count"], 1, "the pending group call joined her");
    let contact = server.contact("nine@example.com").await;
    let events = server.get(&format!("/api/contacts/{}/events", contact["id"])).await;
    assert_eq!(events["items"].as_array().unwrap().len(), 4);
    server.stop().await;
}

async fn pending_events_expire_after_the_workspace_retention() {
    let clock = Clock::manual("2024-06-01T12:00:00Z".parse::<Timestamp>().unwrap());
    let server = TestServer::start_with_clock(clock.clone()).await;
    server.call(Method::PATCH, "/api/workspace", &json!({"pending_days": 7})).await;
    server.ingest("/v1/track", &json!({"userId":"ghost","event":"Old","timestamp":"2024-06-01T10:00:00Z"})).await;
    clock.advance(SignedDuration::from_hours(24 * 3));
    server.ingest("/v1/track", &json!({"userId":"ghost","event":"Recent","timestamp":"2024-06-04T10:00:00Z"})).await;
    clock.advance(SignedDuration::from_hours(24 * 5));
    let expired = kith_server::jobs::expire_pending(&server.state).await.unwrap();
    assert_eq!(expired, 1, "only the event received more than 7 days ago");
    server.ingest("/v1/identify", &identify("ghost", "ghost@example.com", "2024-06-09T10:00:00Z")).await;
    let descriptions: Vec<String> = server
        .timeline("ghost@example.com")
        .await
        .iter()
        .map(|i| i["description"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(descriptions, ["Active in your product", "Recent"]);
    server.stop().await;
}

async fn alias_links_the_previous_id_or_waits_for_its_user() {
    let server = TestServer::start().await;
    // The alias arrives before anything is known of u1: it waits.
    server.ingest("/v1/alias", &json!({"previousId":"anon-1","userId":"u1","timestamp":"2024-06-01T09:00:00Z"})).await;
    server
        .ingest("/v1/track", &json!({"anonymousId":"anon-1","event":"Browsed","timestamp":"2024-06-01T09:30:00Z"}))
        .await;
    server.ingest("/v1/identify", &identify("u1", "one@example.com", "2024-06-02T10:00:00Z")).await;
    let contact = server.contact("one@example.com").await;
    assert!(ids(&contact).contains(&"anon-1".to_owned()), "{:?}", ids(&contact));
    let descriptions: Vec<String> = server
        .timeline("one@example.com")
        .await
        .iter()
        .map(|i| i["description"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(descriptions, ["Active in your product", "Browsed"], "the anonymous browsing followed the alias");
    server.stop().await;
}

async fn an_alias_between_two_known_people_is_recorded_and_merged_by_hand() {
    let server = TestServer::start().await;
    server.ingest("/v1/identify", &identify("u-work", "ada@work.example", "2024-06-01T10:00:00Z")).await;
    server.ingest("/v1/track", &json!({"userId":"u-work","event":"Exported","timestamp":"2024-06-03T10:00:00Z"})).await;
    server
        .ingest("/v1/identify", &json!({"type":"identify","userId":"u-home","traits":{"email":"ada@home.example","name":"Ada","plan":"free"},"timestamp":"2024-06-01T18:00:00Z"}))
        .await;
    server
        .ingest("/v1/track", &json!({"userId":"u-home","event":"Logged In","timestamp":"2024-06-02T10:00:00Z"}))
        .await;
    let answer = server
        .ingest("/v1/alias", &json!({"previousId":"u-home","userId":"u-work","timestamp":"2024-06-04T10:00:00Z"}))
        .await;
    assert_eq!(answer["success"], true);
    assert_eq!(server.emails().await.len(), 2, "nothing merged automatically");
    let conflicts = server.get("/api/alias-conflicts").await;
    let conflict = &conflicts[0];
    assert_eq!(conflict["previous_id"], "u-home");
    assert_eq!(conflict["user_id"], "u-work");
    assert!(conflict["resolved_at"].is_null());
    let work = server.contact("ada@work.example").await;
    let home = server.contact("ada@home.example").await;
    assert_eq!(conflict["contact_id"], work["id"]);
    assert_eq!(conflict["other_contact_id"], home["id"]);

    let (status, merged) = server
        .call(Method::POST, &format!("/api/contacts/{}/merge", work["id"]), &json!({"contact": "ada@home.example"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{merged}");
    assert_eq!(server.emails().await, ["ada@work.example"]);
    let merged_ids = ids(&merged);
    for id in ["u-work", "u-home", "ada@home.example"] {
        assert!(merged_ids.contains(&id.to_owned()), "{id} in {merged_ids:?}");
    }
    assert_eq!(merged["traits"]["name"], "Ada", "traits fill the gaps");
    assert_eq!(merged["traits"]["email"], "ada@work.example", "the surviving contact's traits win");
    let timeline = server.timeline("ada@work.example").await;
    let days: Vec<(&str, i64)> =
        timeline.iter().map(|i| (i["day"].as_str().unwrap(), i["hits"].as_i64().unwrap())).collect();
    assert_eq!(days, [("2024-06-03", 1), ("2024-06-02", 1), ("2024-06-01", 2)], "still one activity per day");
    assert_eq!(timeline[2]["description"], "Active in your product");
    assert!(server.get("/api/alias-conflicts").await[0]["resolved_at"].is_string());

    // The merged-away email and ids now reach the surviving contact.
    server
        .ingest("/v1/identify", &json!({"type":"identify","traits":{"email":"ada@home.example","plan":"pro"},"timestamp":"2024-06-05T10:00:00Z"}))
        .await;
    server.ingest("/v1/track", &json!({"userId":"u-home","event":"Upgraded","timestamp":"2024-06-06T10:00:00Z"})).await;
    assert_eq!(server.emails().await, ["ada@work.example"]);
    let contact = server.contact("ada@work.example").await;
    assert_eq!(contact["traits"]["plan"], "pro");
    assert_eq!(server.timeline("ada@work.example").await[0]["description"], "Upgraded");

    let (status, body) = server
        .call(Method::POST, &format!("/api/contacts/{}/merge", work["id"]), &json!({"contact": work["id"]}))
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    server.stop().await;
}

async fn closeness_keys_do_not_depend_on_the_order_events_arrive_in() {
    let forward = TestServer::start().await;
    let backward = TestServer::start().await;
    let mut events = vec![identify("u1", "ada@example.com", "2024-05-01T10:00:00Z")];
    for day in 2..=28 {
        events.push(json!({"type":"track","userId":"u1","event":"Used","timestamp": format!("2024-05-{day:02}T{:02}:00:00Z", day % 24),
            "messageId": format!("m{day}")}));
        events.push(json!({"type":"page","userId":"u1","properties":{"url":"https://x.io"},"timestamp": format!("2024-05-{day:02}T23:00:00Z"),
            "messageId": format!("p{day}")}));
    }
    for event in &events {
        forward.ingest("/v1/events", event).await;
    }
    backward.ingest("/v1/events", &events[0]).await;
    for event in events[1..].iter().rev() {
        backward.ingest("/v1/events", event).await;
    }
    let a = forward.contact("ada@example.com").await;
    let b = backward.contact("ada@example.com").await;
    let (ka, kb) = (a["closeness"]["key"].as_f64().unwrap(), b["closeness"]["key"].as_f64().unwrap());
    assert!((ka - kb).abs() < 1e-9, "{ka} vs {kb}");
    assert_eq!(a["warm_until"], b["warm_until"]);
    let summary = |timeline: Vec<Value>| -> Vec<(String, String, i64)> {
        timeline
            .iter()
            .map(|i| {
                let text = |field: &str| i[field].as_str().unwrap().to_owned();
                (text("day"), text("description"), i["hits"].as_i64().unwrap())
            })
            .collect()
    };
    let timeline = summary(forward.timeline("ada@example.com").await);
    assert_eq!(timeline.len(), 28);
    assert_eq!(timeline, summary(backward.timeline("ada@example.com").await));
    forward.stop().await;
    backward.stop().await;
}

async fn after_a_merge_each_day_keeps_the_earliest_event_of_either_contact() {
    let server = TestServer::start().await;
    server.ingest("/v1/identify", &identify("u-work", "ada@work.example", "2024-06-01T10:00:00Z")).await;
    server.ingest("/v1/identify", &identify("u-home", "ada@home.example", "2024-06-01T12:00:00Z")).await;
    // June 3rd: the merged-away contact was active first; June 4th: the surviving one.
    for (user, event, time) in [
        ("u-work", "Exported", "2024-06-03T15:00:00Z"),
        ("u-home", "Logged In", "2024-06-03T09:00:00Z"),
        ("u-work", "Shared", "2024-06-04T07:00:00Z"),
        ("u-home", "Invited", "2024-06-04T18:00:00Z"),
    ] {
        server.ingest("/v1/track", &json!({"userId": user, "event": event, "timestamp": time})).await;
    }
    let (status, body) = server
        .call(Method::POST, "/api/contacts/ada@work.example/merge", &json!({"contact": "ada@home.example"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let days: Vec<(String, String, String, i64)> = server
        .timeline("ada@work.example")
        .await
        .iter()
        .map(|i| {
            let text = |field: &str| i[field].as_str().unwrap().to_owned();
            (text("day"), text("description"), text("occurred_at"), i["hits"].as_i64().unwrap())
        })
        .collect();
    let day = |day: &str, description: &str, at: &str, hits: i64| {
        (day.to_owned(), description.to_owned(), at.to_owned(), hits)
    };
    assert_eq!(
        days,
        [
            day("2024-06-04", "Shared", "2024-06-04T07:00:00Z", 2),
            day("2024-06-03", "Logged In", "2024-06-03T09:00:00Z", 2),
            day("2024-06-01", "Active in your product", "2024-06-01T10:00:00Z", 2),
        ]
    );
    server.stop().await;
}

crate::backend_tests!(
    junk_ids_never_link_two_people,
    events_of_unknown_users_wait_then_attach_with_their_interactions,
    pending_events_expire_after_the_workspace_retention,
    alias_links_the_previous_id_or_waits_for_its_user,
    an_alias_between_two_known_people_is_recorded_and_merged_by_hand,
    closeness_keys_do_not_depend_on_the_order_events_arrive_in,
    after_a_merge_each_day_keeps_the_earliest_event_of_either_contact,
);
