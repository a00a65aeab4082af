//! Deletion really erases: a 404 afterwards is not proof, so these tests count the rows left in the
//! database itself. A Segment deletion lets the user come back with a clean slate; a suppression
//! keeps the email out whichever way it returns.

mod common;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Ada with everything a contact can have: two ids, activity on two days, a pending event
/// attached later, an account, an audience, a manual note, a rule firing and the webhook
/// delivery it queued, a skipped message and a bounce.
async fn ada_with_everything(server: &TestServer) -> i64 {
    // A message Ada never agreed to: it is skipped, and the skip is in her message log.
    let (status, topic) = server.call(Method::POST, "/api/topics", &json!({"name": "Tips", "opt_in": true})).await;
    assert_eq!(status, StatusCode::CREATED, "{topic}");
    let template = json!({"name": "Tip", "topic_id": topic["id"], "subject": "A tip for {{ contact.email }}",
                          "html": "<p>{{ contact.email }}</p>", "text": "{{ contact.email }}"});
    let (status, template) = server.call(Method::POST, "/api/templates", &template).await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let (status, body) = server
        .call(
            Method::POST,
            "/api/rules",
            &json!({"name": "Exports", "when": {"event": {"name": "Exported"}},
                    "then": [{"segment": {}}, {"webhook": {"url": "http://127.0.0.1:9/hook", "text": "{email} exported"}},
                             {"message": {"template": template["id"]}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Two days of activity, whatever the time of day the test runs at: two days ago and
    // yesterday (UTC, the workspace's zone), each from 10:00.
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).start_of_day().unwrap().timestamp();
    let at = |days_ago: i64, hour: i64| {
        (today - jiff::SignedDuration::from_hours(24 * days_ago) + jiff::SignedDuration::from_hours(hour)).to_string()
    };
    let events = [
        json!({"type": "track", "anonymousId": "anon-ada", "event": "Viewed Pricing", "timestamp": at(2, 10)}),
        json!({"type": "identify", "userId": "u-ada", "anonymousId": "anon-ada", "timestamp": at(2, 11),
            "traits": {"email": "ada@example.com", "name": "Ada"}}),
        json!({"type": "track", "userId": "u-ada", "event": "Exported", "timestamp": at(1, 10)}),
        json!({"type": "group", "userId": "u-ada", "groupId": "acme", "traits": {"name": "Acme"}, "timestamp": at(1, 10)}),
        json!({"type": "identify", "userId": "u-ada", "timestamp": at(1, 11),
            "traits": {"email": "ada@example.com", "vip": true},
            "context": {"personas": {"computation_class": "audience", "computation_key": "vip"}}}),
    ];
    for event in &events {
        server.ingest("/v1/events", event).await;
    }
    let (status, body) = server
        .call(Method::POST, "/api/contacts/ada@example.com/interactions", &json!({"kind": "note", "text": "Met Ada"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The firing is decided and its webhook queued (its delivery fails: nothing listens).
    server.run_jobs().await;
    let id = server.contact("ada@example.com").await["id"].as_i64().unwrap();
    // Her address bounced once (recorded in the store directly: no SMTP server takes part here).
    let bounced_at = jiff::Timestamp::now();
    server
        .state
        .store
        .record_bounce(server.workspace, id, "ada@example.com", "550 no such mailbox", bounced_at)
        .await
        .unwrap();
    id
}

/// The rows that still hold anything of contact `id` (ids `u-ada` and `anon-ada`, email
/// `ada@example.com`), table by table.
async fn rows_left(server: &TestServer, id: i64) -> Vec<(&'static str, i64)> {
    let mentions = "payload LIKE '%ada@example.com%' OR user_id IN ('u-ada', 'anon-ada') \
                    OR anonymous_id IN ('u-ada', 'anon-ada')";
    let mut left = Vec::new();
    for (table, condition) in [
        ("contacts", format!("id = {id} OR email = 'ada@example.com'")),
        ("events", format!("contact_id = {id} OR {mentions}")),
        ("interactions", format!("contact_id = {id}")),
        ("identities", format!("contact_id = {id} OR value IN ('u-ada', 'anon-ada')")),
        ("account_members", format!("contact_id = {id}")),
        ("audience_members", format!("contact_id = {id}")),
        ("audience_history", format!("contact_id = {id}")),
        ("rule_firings", format!("contact_id = {id}")),
        ("outbox", format!("contact_id = {id} OR payload LIKE '%ada@example.com%'")),
        ("message_log", format!("contact_id = {id}")),
        ("message_bounces", format!("contact_id = {id} OR email = 'ada@example.com'")),
    ] {
        left.push((table, server.count_rows(&format!("SELECT count(*) FROM {table} WHERE {condition}")).await));
    }
    left
}

/// The SQLite files that still hold `text` in their bytes, and how often, once the store has
/// had a few seconds to scrub them: freed pages and write-ahead files are where a deleted row
/// would otherwise linger for anyone who reads the disk. Empty on PostgreSQL.
async fn left_on_disk(server: &TestServer, text: &str) -> Vec<(&'static str, usize)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut left = Vec::new();
        for file in ["kith.db", "kith.db-wal", "kith.db.log", "kith.db.log-wal"] {
            let Some(path) = server.sqlite_file(file) else { return left };
            let bytes = std::fs::read(&path).unwrap_or_default();
            let found = bytes.windows(text.len()).filter(|window| *window == text.as_bytes()).count();
            if found > 0 {
                left.push((file, found));
            }
        }
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn emails(list: &Value) -> Vec<&str> {
    list["items"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap()).collect()
}

async fn deleting_a_contact_leaves_no_row_of_it() {
    let server = TestServer::start().await;
    let id = ada_with_everything(&server).await;
    server
        .ingest("/v1/identify", &json!({"userId": "u-bob", "traits": {"email": "bob@example.com"}, "timestamp": now()}))
        .await;
    server.ingest("/v1/group", &json!({"userId": "u-bob", "groupId": "acme", "timestamp": now()})).await;
    assert_eq!(server.timeline("ada@example.com").await.len(), 4, "two days of activity, a note and the nudge");
    for (table, count) in rows_left(&server, id).await {
        assert!(count > 0, "the check itself finds Ada in {table}");
    }

    let (status, _) = server.call(Method::DELETE, "/api/contacts/ada@example.com", &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.emails().await, ["bob@example.com"]);
    for (table, count) in rows_left(&server, id).await {
        assert_eq!(count, 0, "{table} still holds {count} rows of the deleted contact");
    }
    assert_eq!(left_on_disk(&server, "ada@example.com").await, Vec::<(&str, usize)>::new());
    assert_eq!(server.get("/api/accounts/acme").await["member_count"], 1, "Bob is still in Acme");
    assert_eq!(server.get("/api/audiences/vip").await["member_count"], 0);
    server.stop().await;
}

/// The id of an erased contact, or of a deleted journey, is never given to a new one: a link
/// or a stored id must not come to name someone else.
async fn an_erased_contacts_id_is_never_given_again() {
    let server = TestServer::start().await;
    let identify = |user: &'static str| {
        let server = &server;
        async move {
            let body = json!({"userId": user, "traits": {"email": format!("{user}@example.com")}, "timestamp": now()});
            server.ingest("/v1/identify", &body).await;
            server.contact(&format!("{user}@example.com")).await["id"].as_i64().unwrap()
        }
    };
    identify("ann").await;
    let newest = identify("bob").await;
    let (status, _) = server.call(Method::DELETE, "/api/contacts/bob@example.com", &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let next = identify("cy").await;
    assert!(next > newest, "cy got {next}, the erased bob had {newest}");

    let journey = json!({"name": "J", "when": {"event": {"name": "A"}}, "steps": [{"exit": {}}]});
    let created = |_: ()| {
        let (server, journey) = (&server, &journey);
        async move { server.call(Method::POST, "/api/journeys", journey).await.1["id"].as_i64().unwrap() }
    };
    let first = created(()).await;
    let (status, _) = server.call(Method::DELETE, &format!("/api/journeys/{first}"), &Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Deleting one that does not exist moves nothing.
    let (status, _) = server.call(Method::DELETE, "/api/journeys/9000000000000000000", &Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let second = created(()).await;
    assert_eq!(second, first + 1, "a new id, the next one");
    server.stop().await;
}

async fn after_a_segment_deletion_the_returning_user_starts_afresh() {
    let server = TestServer::start().await;
    let id = ada_with_everything(&server).await;
    server
        .ingest(
            "/v1/events",
            &json!({"type": "delete", "userId": "u-ada", "messageId": "delete-ada", "timestamp": now()}),
        )
        .await;
    assert!(server.emails().await.is_empty());
    for (table, count) in rows_left(&server, id).await {
        assert_eq!(count, 0, "{table} still holds {count} rows of the deleted user");
    }
    assert_eq!(left_on_disk(&server, "ada@example.com").await, Vec::<(&str, usize)>::new());

    // Not suppressed: the same userId comes back, and only what follows is hers.
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "u-ada", "traits": {"email": "ada@example.com"}, "messageId": "back", "timestamp": now()}),
        )
        .await;
    let contact = server.contact("ada@example.com").await;
    assert_eq!(contact["traits"], json!({"email": "ada@example.com"}), "no trait of the erased contact");
    assert!(contact["audiences"].as_array().unwrap().is_empty());
    let events = server.get(&format!("/api/contacts/{}/events", contact["id"])).await;
    let events = events["items"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["message_id"], "back");
    let timeline = server.timeline("ada@example.com").await;
    assert_eq!(timeline.len(), 1, "{timeline:?}");
    assert_eq!(timeline[0]["hits"], 1);
    let rule = &server.get("/api/rules").await[0];
    let detail = server.get(&format!("/api/rules/{}", rule["id"])).await;
    assert!(
        detail["firings"].as_array().unwrap().iter().all(|f| f["contact_id"] != contact["id"]),
        "the returning user inherits no firing: {detail}"
    );
    server.stop().await;
}

async fn a_suppressed_email_stays_out_under_another_user_id_and_in_a_track() {
    let server = TestServer::start().await;
    let id = ada_with_everything(&server).await;
    let (status, _) = server.call(Method::DELETE, "/api/contacts/ada@example.com?suppress=true", &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Another userId, the email written differently: still her.
    let answer = server
        .ingest(
            "/v1/identify",
            &json!({"userId": "u-ada-2", "traits": {"email": " Ada@Example.COM "}, "timestamp": now()}),
        )
        .await;
    assert_eq!(answer["success"], true, "acknowledged");
    // A track naming her only by email, under a userId nobody has.
    server
        .ingest(
            "/v1/track",
            &json!({"userId": "u-ada-3", "event": "Exported", "context": {"traits": {"email": "ada@example.com"}}, "timestamp": now()}),
        )
        .await;
    assert!(server.emails().await.is_empty());
    assert!(emails(&server.get("/api/contacts?search=ada").await).is_empty());
    for (table, count) in rows_left(&server, id).await {
        assert_eq!(count, 0, "{table} holds {count} rows of the suppressed email");
    }
    let stored = server.count_rows("SELECT count(*) FROM events WHERE user_id IN ('u-ada-2', 'u-ada-3')").await;
    assert_eq!(stored, 0, "events for a suppressed email are kept out, pending included");

    // The track's userId later identifies as someone else: nothing of Ada comes with it.
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "u-ada-3", "traits": {"email": "cy@example.com"}, "timestamp": now()}),
        )
        .await;
    let timeline = server.timeline("cy@example.com").await;
    assert!(timeline.iter().all(|i| i["description"] != "Exported"), "{timeline:?}");
    server.stop().await;
}

/// A deletion takes effect where it stands in the stream: one for a userId nobody holds yet
/// erases nobody, even when the same batch later gives that id to a contact (the planner
/// plans a batch's deletions after its other events).
async fn a_deletion_of_an_unknown_user_spares_who_takes_the_id_later_in_the_batch() {
    let server = TestServer::start().await;
    let batch = json!({"batch": [
        {"type": "delete", "userId": "u-old", "timestamp": now()},
        {"type": "identify", "userId": "u-new", "traits": {"email": "ada@example.com"}, "timestamp": now()},
        {"type": "alias", "previousId": "u-old", "userId": "u-new", "timestamp": now()},
        {"type": "track", "userId": "u-old", "event": "Opened", "timestamp": now()},
    ]});
    server.ingest("/v1/batch", &batch).await;
    let ada = server.contact("ada@example.com").await;
    let ids: Vec<&str> = ada["identities"].as_array().unwrap().iter().filter_map(|i| i["value"].as_str()).collect();
    assert!(ids.contains(&"u-old"), "the alias still links u-old to Ada: {ada}");

    // A deletion after the alias erases her, with everything before it in its batch.
    let batch = json!({"batch": [
        {"type": "track", "userId": "u-new", "event": "Opened", "timestamp": now()},
        {"type": "delete", "userId": "u-old", "timestamp": now()},
    ]});
    server.ingest("/v1/batch", &batch).await;
    assert!(server.emails().await.is_empty());
    server.stop().await;
}

crate::backend_tests!(
    an_erased_contacts_id_is_never_given_again,
    a_deletion_of_an_unknown_user_spares_who_takes_the_id_later_in_the_batch,
    deleting_a_contact_leaves_no_row_of_it,
    after_a_segment_deletion_the_returning_user_starts_afresh,
    a_suppressed_email_stays_out_under_another_user_id_and_in_a_track,
);
