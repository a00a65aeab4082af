//! Customer success over HTTP: rules on account health that alert an account's owner once per
//! change, owners of accounts and contacts, follow-up tasks, the Today list and each owner's
//! digest.

mod common;

use common::outbound::{Receiver, SmtpSink};
use common::{Options, TestServer};
use jiff::{SignedDuration, Timestamp};
use kith_server::jobs::delivery::SmtpConfig;
use kith_server::service::users::create_user;
use kith_server::Clock;
use kith_store::OwnerSubject;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const NOW: &str = "2024-06-30T12:00:00Z";

async fn send(server: &TestServer, body: Value) {
    let path = format!("/v1/{}", body["type"].as_str().unwrap());
    server.ingest(&path, &body).await;
}

/// A server with an SMTP sink, on a clock the test moves.
async fn server_with_mail(clock: &Clock) -> (TestServer, SmtpSink) {
    let smtp = SmtpSink::start().await;
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        smtp: Some(SmtpConfig { url: smtp.url.clone(), from: "kith <kith@example.com>".into() }),
        ..Options::default()
    })
    .await;
    (server, smtp)
}

/// A member in each of `groups`, and a model of the CSM's rating alone: rated 5 is 100, 3 is 50
/// and 1 is 0.
async fn seed_accounts(server: &TestServer, groups: &[&str]) {
    for group in groups {
        let user = format!("{group}-member");
        let at = "2024-06-01T09:00:00Z";
        let email = format!("{user}@example.com");
        send(server, json!({"type": "identify", "userId": user, "traits": {"email": email}, "timestamp": at})).await;
        send(
            server,
            json!({"type": "group", "userId": user, "groupId": group, "traits": {"name": group}, "timestamp": at}),
        )
        .await;
    }
    let model = json!({"factors": [{"weight": 1, "factor": {"csm_rating": {}}}]});
    let (status, body) = server.call(Method::PUT, "/api/health-model", &model).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn rate(server: &TestServer, group: &str, rating: i64) {
    let (status, body) =
        server.call(Method::PUT, &format!("/api/accounts/{group}/rating"), &json!({"rating": rating})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn create_rule(server: &TestServer, rule: Value) -> i64 {
    let (status, body) = server.call(Method::POST, "/api/rules", &rule).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().unwrap()
}

/// The mails sent to `to`.
fn mails_to(smtp: &SmtpSink, to: &str) -> Vec<String> {
    smtp.mails().into_iter().filter(|mail| mail.to.iter().any(|t| t.contains(to))).map(|mail| mail.data).collect()
}

async fn a_band_change_alerts_the_owner_once() {
    let clock = Clock::manual(NOW.parse::<Timestamp>().unwrap());
    let (server, smtp) = server_with_mail(&clock).await;
    let hooks = Receiver::start().await;
    seed_accounts(&server, &["acme"]).await;
    let owner =
        create_user(server.state.store.as_ref(), server.workspace, "owner@example.com", "correct horse battery")
            .await
            .unwrap();
    let acme = server.state.store.account(server.workspace, "acme").await.unwrap().unwrap().id;
    server.state.store.set_owner(server.workspace, OwnerSubject::Account, acme, Some(owner.id)).await.unwrap();
    let rule = create_rule(
        &server,
        json!({"name": "Account at risk", "when": {"health_band_changed": {"to": "at_risk"}},
               "then": [{"email_owner": {"subject": "{name} needs you"}},
                        {"webhook": {"url": format!("{}/alerts", hooks.url)}}]}),
    )
    .await;
    rate(&server, "acme", 5).await;
    server.run_jobs().await;
    assert!(smtp.mails().is_empty() && hooks.received().is_empty(), "the first sight of an account is no change");

    // Rated 1: at risk. However often the score is computed again, one alert.
    rate(&server, "acme", 1).await;
    for _ in 0..3 {
        server.run_jobs().await;
        clock.advance(SignedDuration::from_mins(30));
    }
    let mails = mails_to(&smtp, "owner@example.com");
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains("Subject: acme needs you"), "{}", mails[0]);
    assert!(mails[0].contains("became at risk (was healthy)"), "{}", mails[0]);
    let received = hooks.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].json["account"]["group_id"], "acme");
    assert_eq!(received[0].json["health"], json!({"score": 0, "band": "at_risk"}));
    assert_eq!(received[0].json["owner"], "owner@example.com");
    let detail = server.get(&format!("/api/rules/{rule}")).await;
    assert_eq!(detail["account_firings"].as_array().unwrap().len(), 1, "{detail}");
    assert_eq!(detail["account_firings"][0]["account_id"], acme);

    // Back to healthy (not a change this rule wants), then at risk again: a second alert.
    rate(&server, "acme", 5).await;
    server.run_jobs().await;
    assert_eq!(mails_to(&smtp, "owner@example.com").len(), 1);
    rate(&server, "acme", 1).await;
    server.run_jobs().await;
    server.run_jobs().await;
    assert_eq!(mails_to(&smtp, "owner@example.com").len(), 2);
    assert_eq!(hooks.received().len(), 2);
    server.stop().await;
}

async fn a_fall_alerts_once_and_account_rules_are_checked() {
    let clock = Clock::manual(NOW.parse::<Timestamp>().unwrap());
    let (server, smtp) = server_with_mail(&clock).await;
    seed_accounts(&server, &["acme", "globex"]).await;
    create_rule(
        &server,
        json!({"name": "Falling", "when": {"health_dropped": {"points": 20, "within_days": 7}},
               "then": [{"email": {"to": "cs-team@example.com", "body": "{name} {event}"}}, {"email_owner": {}}]}),
    )
    .await;
    rate(&server, "acme", 5).await;
    rate(&server, "globex", 5).await;
    server.run_jobs().await;

    // A day later Acme falls to 75 (rated 4), 25 below the 100 recorded; Globex stays at 100.
    clock.advance(SignedDuration::from_hours(24));
    rate(&server, "acme", 4).await;
    for _ in 0..3 {
        server.run_jobs().await;
    }
    let mails = mails_to(&smtp, "cs-team@example.com");
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains("acme fell from 100 to 75"), "{}", mails[0]);
    // Falling further while already down is the same fall.
    clock.advance(SignedDuration::from_hours(24));
    rate(&server, "acme", 3).await;
    server.run_jobs().await;
    assert_eq!(mails_to(&smtp, "cs-team@example.com").len(), 1);
    assert_eq!(smtp.mails().len(), 1, "Acme has no owner: nobody else is mailed");

    // Rules on accounts cannot act on a contact, nor wait for one's event.
    for (then, unless) in [
        (json!([{"message": {"template": 1}}]), Value::Null),
        (json!([{"segment": {}}]), Value::Null),
        (json!([{"email_owner": {}}]), json!({"event": "Logged In", "within_hours": 2})),
    ] {
        let mut rule = json!({"name": "x", "when": {"health_band_changed": {}}, "then": then});
        if !unless.is_null() {
            rule["unless"] = unless;
        }
        let (status, body) = server.call(Method::POST, "/api/rules", &rule).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_rule")), "{body}");
    }
    let (status, body) = server
        .call(
            Method::POST,
            "/api/rules",
            &json!({"name": "x", "when": {"becomes_due": {}}, "then": [{"email_owner": {}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    server.stop().await;
}

/// GETs a read-API path as the user `me` (the `Kith-User` header).
async fn get_as(server: &TestServer, me: &str, path: &str) -> (StatusCode, Value) {
    let response = server
        .client
        .get(format!("{}{path}", server.url))
        .bearer_auth(&server.secret_key)
        .header("kith-user", me)
        .send()
        .await
        .expect("request");
    common::read(response).await
}

fn group_ids(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|a| a["group_id"].as_str().unwrap()).collect()
}

fn emails(list: &Value) -> Vec<&str> {
    list["items"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap()).collect()
}

async fn users(server: &TestServer) -> (i64, i64) {
    let store = server.state.store.as_ref();
    let alice = create_user(store, server.workspace, "alice@example.com", "correct horse battery").await.unwrap();
    let bob = create_user(store, server.workspace, "bob@example.com", "correct horse battery").await.unwrap();
    (alice.id, bob.id)
}

/// Contacts `{name}@example.com`, named `{name}`.
async fn seed_contacts(server: &TestServer, names: &[&str]) {
    for name in names {
        let at = "2024-06-01T09:00:00Z";
        let email = format!("{name}@example.com");
        send(
            server,
            json!({"type": "identify", "userId": name, "traits": {"email": email, "name": name}, "timestamp": at}),
        )
        .await;
    }
}

async fn put(server: &TestServer, path: &str, body: Value) -> Value {
    let (status, answer) = server.call(Method::PUT, path, &body).await;
    assert_eq!(status, StatusCode::OK, "PUT {path}: {answer}");
    answer
}

async fn owners_and_the_mine_filters() {
    let server = TestServer::start_with_clock(Clock::manual(NOW.parse::<Timestamp>().unwrap())).await;
    seed_accounts(&server, &["acme", "globex", "initech"]).await;
    seed_contacts(&server, &["ada", "bea", "cy"]).await;
    let (_, bob) = users(&server).await;

    let answer = put(&server, "/api/accounts/acme/owner", json!({"user": "Alice@Example.com"})).await;
    assert_eq!(answer["owner"]["email"], "alice@example.com");
    assert_eq!(put(&server, "/api/accounts/globex/owner", json!({"user": bob})).await["owner"]["id"], bob);
    put(&server, "/api/contacts/ada@example.com/owner", json!({"user": "alice@example.com"})).await;
    put(&server, "/api/contacts/bea@example.com/owner", json!({"user": "bob@example.com"})).await;
    assert_eq!(server.get("/api/accounts/acme").await["owner"]["email"], "alice@example.com");
    assert_eq!(server.get("/api/accounts/initech").await["owner"], Value::Null);
    assert_eq!(server.contact("bea@example.com").await["owner"]["email"], "bob@example.com");
    assert_eq!(server.contact("cy@example.com").await["owner"], Value::Null);

    let (status, mine) = get_as(&server, "alice@example.com", "/api/accounts?owner=me").await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(group_ids(&mine), ["acme"]);
    assert_eq!(group_ids(&get_as(&server, "bob@example.com", "/api/accounts?owner=me").await.1), ["globex"]);
    assert_eq!(group_ids(&server.get("/api/accounts?owner=none").await), ["initech"]);
    assert_eq!(group_ids(&server.get("/api/accounts?owner=bob@example.com").await), ["globex"]);
    let (_, mine) = get_as(&server, "alice@example.com", "/api/contacts?owner=me").await;
    assert_eq!(emails(&mine), ["ada@example.com"]);
    let unowned = server.get("/api/contacts?owner=none").await;
    assert!(!emails(&unowned).contains(&"ada@example.com") && !emails(&unowned).contains(&"bea@example.com"));
    assert!(emails(&unowned).contains(&"cy@example.com"));

    // Clearing, and what is refused.
    assert_eq!(put(&server, "/api/contacts/ada@example.com/owner", json!({"user": null})).await["owner"], Value::Null);
    assert_eq!(server.contact("ada@example.com").await["owner"], Value::Null);
    assert!(emails(&get_as(&server, "alice@example.com", "/api/contacts?owner=me").await.1).is_empty());
    let (status, body) = server.api("/api/accounts?owner=me").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("owner_me_needs_user")), "{body}");
    let (status, body) = get_as(&server, "nobody@example.com", "/api/contacts?owner=me").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_user")), "{body}");
    let (status, body) =
        server.call(Method::PUT, "/api/accounts/acme/owner", &json!({"user": "eve@example.com"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_user")), "{body}");
    let (status, _) = server.call(Method::PUT, "/api/accounts/nope/owner", &json!({"user": bob})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = server.call(Method::PUT, "/api/accounts/acme/owner", &json!({"user": [1]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A user of another workspace is nobody here.
    let store = server.state.store.as_ref();
    let (other, _, _) = kith_server::service::settings::create_workspace(store, None, "Other").await.unwrap();
    let stranger = create_user(store, other.id, "stranger@example.com", "correct horse battery").await.unwrap();
    let (status, body) = server.call(Method::PUT, "/api/accounts/acme/owner", &json!({"user": stranger.id})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_user")), "{body}");
    server.stop().await;
}

async fn create_task(server: &TestServer, body: Value) -> Value {
    let (status, answer) = server.call(Method::POST, "/api/tasks", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}: {answer}");
    answer
}

async fn tasks_are_created_changed_completed_and_kept_to_their_workspace() {
    let server = TestServer::start_with_clock(Clock::manual(NOW.parse::<Timestamp>().unwrap())).await;
    seed_accounts(&server, &["acme"]).await;
    seed_contacts(&server, &["ada"]).await;
    let (alice, bob) = users(&server).await;
    put(&server, "/api/contacts/ada@example.com/owner", json!({"user": bob})).await;

    // Without an assignee, a task goes to the owner of what it is on.
    let task =
        create_task(&server, json!({"note": "Call Ada", "due": "2024-06-29", "contact": "ada@example.com"})).await;
    assert_eq!(task["assignee"]["id"], bob);
    assert_eq!(task["contact"]["email"], "ada@example.com");
    assert_eq!(
        (task["due"].as_str(), task["overdue"].as_bool(), task["done"].as_bool()),
        (Some("2024-06-29"), Some(true), Some(false))
    );
    let id = task["id"].as_i64().unwrap();
    let renewal = create_task(
        &server,
        json!({"note": "Renewal", "due": "2024-07-02", "account": "acme", "assignee": "alice@example.com"}),
    )
    .await;
    assert_eq!(renewal["account"]["group_id"], "acme");
    assert_eq!(renewal["overdue"], false);

    assert_eq!(server.get(&format!("/api/tasks/{id}")).await["note"], "Call Ada");
    let listed = server.get("/api/tasks?account=acme").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["note"], "Renewal");
    let (_, mine) = get_as(&server, "alice@example.com", "/api/tasks?assignee=me").await;
    assert_eq!(mine.as_array().unwrap().iter().map(|t| t["note"].as_str().unwrap()).collect::<Vec<_>>(), ["Renewal"]);

    let changed = put(
        &server,
        &format!("/api/tasks/{id}"),
        json!({"note": "Call Ada about the renewal", "due": "2024-07-01", "contact": "ada@example.com", "assignee": alice}),
    )
    .await;
    assert_eq!(
        (changed["note"].as_str(), changed["due"].as_str()),
        (Some("Call Ada about the renewal"), Some("2024-07-01"))
    );
    assert_eq!(changed["assignee"]["email"], "alice@example.com");
    let (status, done) = server.call(Method::POST, &format!("/api/tasks/{id}/complete"), &json!({})).await;
    assert_eq!((status, done["done"].as_bool()), (StatusCode::OK, Some(true)), "{done}");
    assert_eq!(done["done_at"], "2024-06-30T12:00:00Z");
    assert_eq!(server.get("/api/tasks?open=true").await.as_array().unwrap().len(), 1);
    let (status, open) = server.call(Method::POST, &format!("/api/tasks/{id}/reopen"), &json!({})).await;
    assert_eq!((status, open["done"].as_bool()), (StatusCode::OK, Some(false)));

    // Refusals.
    for (body, field) in [
        (json!({"note": " ", "due": "2024-07-01", "account": "acme"}), "note"),
        (json!({"note": "x", "due": "next week", "account": "acme"}), "due"),
        (json!({"note": "x", "due": "2024-07-01"}), "contact"),
        (json!({"note": "x", "due": "2024-07-01", "account": "acme", "assignee": "eve@example.com"}), "assignee"),
    ] {
        let (status, answer) = server.call(Method::POST, "/api/tasks", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{answer}");
    }
    let (status, _) =
        server.call(Method::POST, "/api/tasks", &json!({"note": "x", "due": "2024-07-01", "account": "nope"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        server.call(Method::POST, "/api/tasks", &json!({"note": "x", "due": "2024-07-01", "mood": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Another workspace's key sees none of it.
    let store = server.state.store.as_ref();
    let (_, _, other_key) = kith_server::service::settings::create_workspace(store, None, "Other").await.unwrap();
    let as_other = |method: Method, path: String| {
        server.client.request(method, format!("{}{path}", server.url)).bearer_auth(&other_key).json(&json!({}))
    };
    for (method, path) in [
        (Method::GET, format!("/api/tasks/{id}")),
        (Method::POST, format!("/api/tasks/{id}/complete")),
        (Method::POST, format!("/api/tasks/{id}/reopen")),
        (Method::DELETE, format!("/api/tasks/{id}")),
    ] {
        let response = as_other(method.clone(), path.clone()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    let response = server
        .client
        .put(format!("{}/api/tasks/{id}", server.url))
        .bearer_auth(&other_key)
        .json(&json!({"note": "mine now", "due": "2024-07-01", "account": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let listed: Value = as_other(Method::GET, "/api/tasks".into()).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed, json!([]));
    assert_eq!(server.get(&format!("/api/tasks/{id}")).await["note"], "Call Ada about the renewal", "untouched");

    let (status, _) = server.call(Method::DELETE, &format!("/api/tasks/{id}"), &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.api(&format!("/api/tasks/{id}")).await.0, StatusCode::NOT_FOUND);

    // Erasing a contact erases its tasks.
    create_task(&server, json!({"note": "Write to Ada", "due": "2024-07-01", "contact": "ada@example.com"})).await;
    let (status, _) = server.call(Method::DELETE, "/api/contacts/ada@example.com", &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.count_rows("SELECT count(*) FROM tasks WHERE note = 'Write to Ada'").await, 0);
    assert_eq!(server.count_rows("SELECT count(*) FROM owners WHERE subject = 'contact'").await, 0);
    server.stop().await;
}

async fn today_lists_tasks_then_accounts_then_contacts() {
    let clock = Clock::manual(NOW.parse::<Timestamp>().unwrap());
    let server = TestServer::start_with_clock(clock).await;
    seed_accounts(&server, &["acme", "globex", "initech"]).await;
    seed_contacts(&server, &["ada", "bea", "cy"]).await;
    let (_, bob) = users(&server).await;
    for (group, rating) in [("acme", 1), ("globex", 2), ("initech", 1)] {
        rate(&server, group, rating).await;
    }
    put(&server, "/api/accounts/acme/owner", json!({"user": "alice@example.com"})).await;
    put(&server, "/api/accounts/globex/owner", json!({"user": "alice@example.com"})).await;
    put(&server, "/api/accounts/initech/owner", json!({"user": bob})).await;
    for name in ["ada", "bea", "cy"] {
        put(&server, &format!("/api/contacts/{name}@example.com/cadence"), json!({"days": 7})).await;
    }
    put(&server, "/api/contacts/ada@example.com/owner", json!({"user": "alice@example.com"})).await;
    put(&server, "/api/contacts/cy@example.com/owner", json!({"user": bob})).await;
    let alice_tasks = [
        ("Later", "2024-07-01"),
        ("Today's", "2024-06-30"),
        ("Oldest", "2024-06-20"),
        ("Done already", "2024-06-25"),
        ("Overdue", "2024-06-28"),
    ];
    for (note, due) in alice_tasks {
        create_task(&server, json!({"note": note, "due": due, "account": "acme", "assignee": "alice@example.com"}))
            .await;
    }
    let done = server.get("/api/tasks").await;
    let done_id =
        done.as_array().unwrap().iter().find(|t| t["note"] == "Done already").unwrap()["id"].as_i64().unwrap();
    server.call(Method::POST, &format!("/api/tasks/{done_id}/complete"), &json!({})).await;
    create_task(&server, json!({"note": "Bob's", "due": "2024-06-29", "account": "acme", "assignee": bob})).await;

    let (status, today) = get_as(&server, "alice@example.com", "/api/today").await;
    assert_eq!(status, StatusCode::OK, "{today}");
    let lines: Vec<(&str, &str)> =
        today.as_array().unwrap().iter().map(|l| (l["kind"].as_str().unwrap(), l["title"].as_str().unwrap())).collect();
    assert_eq!(
        lines,
        [
            ("task", "Oldest"),
            ("task", "Overdue"),
            ("task", "Today's"),
            ("account", "acme"),
            ("account", "globex"),
            ("contact", "ada"),
        ],
        "{today}"
    );
    assert_eq!(today[0]["why"], "overdue since 2024-06-20");
    assert_eq!(today[2]["why"], "due today");
    assert_eq!(today[3]["why"], "at risk (0)");
    assert_eq!(today[4]["why"], "at risk (25)");
    assert!(today[5]["why"].as_str().unwrap().starts_with("due a touch since"), "{today}");
    assert_eq!(
        server.get("/api/today?user=bob@example.com").await.as_array().unwrap().len(),
        3,
        "Bob's task, Initech, Cy"
    );
    let (status, body) = server.api("/api/today").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("owner_me_needs_user")));
    server.stop().await;
}

async fn each_owner_gets_a_digest_of_their_own() {
    let clock = Clock::manual("2024-07-01T06:30:00Z".parse::<Timestamp>().unwrap());
    let (server, smtp) = server_with_mail(&clock).await;
    let (status, body) = server
        .call(Method::PATCH, "/api/workspace", &json!({"digest_time": "08:00", "digest_email": "team@example.com"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    seed_accounts(&server, &["acme"]).await;
    seed_contacts(&server, &["ada", "bea", "cy"]).await;
    users(&server).await;
    for name in ["ada", "bea", "cy"] {
        put(&server, &format!("/api/contacts/{name}@example.com/cadence"), json!({"days": 7})).await;
    }
    put(&server, "/api/contacts/ada@example.com/owner", json!({"user": "alice@example.com"})).await;
    put(&server, "/api/contacts/bea@example.com/owner", json!({"user": "bob@example.com"})).await;
    rate(&server, "acme", 1).await;
    put(&server, "/api/accounts/acme/owner", json!({"user": "alice@example.com"})).await;
    create_task(
        &server,
        json!({"note": "Send the contract", "due": "2024-07-01", "account": "acme", "assignee": "alice@example.com"}),
    )
    .await;

    clock.advance(SignedDuration::from_hours(2));
    server.run_jobs().await;
    server.run_jobs().await;
    let alice = mails_to(&smtp, "alice@example.com");
    assert_eq!(alice.len(), 1, "once a day: {alice:?}");
    for text in ["Send the contract", "acme", "ada@example.com"] {
        assert!(alice[0].contains(text), "{text}: {}", alice[0]);
    }
    assert!(!alice[0].contains("bea@example.com") && !alice[0].contains("cy@example.com"), "{}", alice[0]);
    let bob = mails_to(&smtp, "bob@example.com");
    assert_eq!(bob.len(), 1);
    assert!(bob[0].contains("bea@example.com") && !bob[0].contains("ada@example.com"), "{}", bob[0]);
    let team = mails_to(&smtp, "team@example.com");
    assert_eq!(team.len(), 1);
    assert!(team[0].contains("cy@example.com"), "nobody owns Cy: {}", team[0]);
    assert!(!team[0].contains("ada@example.com") && !team[0].contains("bea@example.com"), "{}", team[0]);
    server.stop().await;
}

async fn the_web_app_assigns_owners_takes_follow_ups_and_draws_charts() {
    let clock = Clock::manual(NOW.parse::<Timestamp>().unwrap());
    let server = TestServer::start_with_clock(clock.clone()).await;
    seed_accounts(&server, &["acme", "globex"]).await;
    seed_contacts(&server, &["ada"]).await;
    send(
        &server,
        json!({"type": "track", "userId": "acme-member", "event": "Clicked", "timestamp": "2024-06-29T10:00:00Z"}),
    )
    .await;
    let (alice, _) = users(&server).await;
    rate(&server, "acme", 5).await;
    server.run_jobs().await;
    clock.advance(SignedDuration::from_hours(24));
    rate(&server, "acme", 1).await;
    server.run_jobs().await;

    let mut browser = common::browser::Browser::new(&server);
    browser.sign_in("alice@example.com", "correct horse battery").await;
    let page = browser.get("/accounts/acme").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Nobody owns it yet."), "{}", page.body);
    let csrf = page.csrf();

    // The charts: the health of each recorded day, members active per week, points by factor.
    for text in [
        r#"<title id="health-history-title">Health by day</title>"#,
        "2 days recorded, from 100 on",
        r#"<title id="weekly-active-title">Members active per week</title>"#,
        "1 of 1 members active in the last 7 days",
        r#"<title id="health-factors-title">Points by factor</title>"#,
        r#"role="img""#,
    ] {
        assert!(page.body.contains(text), "{text}: {}", page.body);
    }

    // Own it, add a follow-up due today, see it on Today, complete it.
    let answer = browser.post("/accounts/acme/owner", &[("_csrf", &csrf), ("user", &alice.to_string())]).await;
    assert_eq!((answer.status, answer.location()), (StatusCode::SEE_OTHER, Some("/accounts/acme#owner")));
    assert!(browser
        .get("/accounts/acme")
        .await
        .body
        .contains("Owned by <strong class=\"owner-name\">alice@example.com"));
    let answer = browser
        .post("/accounts/acme/tasks", &[("_csrf", &csrf), ("note", "Call about the renewal"), ("due", "2024-07-01")])
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let refused = browser.post("/accounts/acme/tasks", &[("_csrf", &csrf), ("note", "x"), ("due", "soon")]).await;
    let back = refused.location().unwrap().to_owned();
    assert!(back.starts_with("/accounts/acme?task_error="), "{back}");
    assert!(browser.get(&back).await.body.contains("role=\"alert\""), "the refusal is shown on the page");

    let today = browser.get("/today").await;
    assert_eq!(today.status, StatusCode::OK);
    let task_at = today.body.find("Call about the renewal").expect("the task is on Today");
    let account_at = today.body.find("at risk, health 0").expect("the account at risk is on Today");
    assert!(task_at < account_at, "tasks first");
    let task = server.get("/api/tasks").await[0]["id"].as_i64().unwrap();
    let done = browser.post(&format!("/tasks/{task}/complete"), &[("_csrf", &csrf), ("back", "/today")]).await;
    assert_eq!((done.status, done.location()), (StatusCode::SEE_OTHER, Some("/today")));
    assert!(!browser.get("/today").await.body.contains("Call about the renewal"), "done tasks leave Today");
    assert_eq!(server.get(&format!("/api/tasks/{task}")).await["done"], true);
    let elsewhere =
        browser.post(&format!("/tasks/{task}/reopen"), &[("_csrf", &csrf), ("back", "//evil.example")]).await;
    assert_eq!(elsewhere.location(), Some("/today"), "a form sends nobody off the site");

    // Rules on account health read as such on the nudges page.
    create_rule(
        &server,
        json!({"name": "At risk", "when": {"health_band_changed": {"to": "at_risk"}}, "then": [{"email_owner": {}}]}),
    )
    .await;
    let nudges = browser.get("/nudges").await;
    assert!(nudges.body.contains("health goes to at risk: email the account"), "{}", nudges.body);

    // Mine only.
    let mine = browser.get("/accounts?owner=me").await;
    assert!(mine.body.contains("/accounts/acme") && !mine.body.contains("/accounts/globex"), "{}", mine.body);
    assert!(browser.get("/accounts").await.body.contains("/accounts/globex"));
    assert_eq!(browser.get("/accounts?owner=someone").await.status, StatusCode::BAD_REQUEST);
    browser.post("/contacts/ada@example.com/owner", &[("_csrf", &csrf), ("user", &alice.to_string())]).await;
    let mine = browser.get("/contacts?owner=me").await;
    assert!(mine.body.contains("ada@example.com") && !mine.body.contains("acme-member@example.com"), "{}", mine.body);

    // The contact page: its owner, a follow-up form, and closeness by week, from nothing before
    // Ada's first day (1 June) to her score now.
    let contact = browser.get("/contacts/ada@example.com").await;
    let score = server.contact("ada@example.com").await["closeness"]["score"].as_i64().unwrap();
    assert!(score > 0);
    let summary = format!("from 0 twelve weeks ago to {score} now");
    assert!(contact.body.contains(&summary), "{summary}: {}", contact.body);
    for text in [
        "Owned by <strong class=\"owner-name\">alice@example.com",
        "Add a follow-up",
        "<title id=\"closeness-history-title\">Closeness by week</title>",
    ] {
        assert!(contact.body.contains(text), "{text}: {}", contact.body);
    }
    server.stop().await;
}

backend_tests!(
    the_web_app_assigns_owners_takes_follow_ups_and_draws_charts,
    a_band_change_alerts_the_owner_once,
    a_fall_alerts_once_and_account_rules_are_checked,
    owners_and_the_mine_filters,
    tasks_are_created_changed_completed_and_kept_to_their_workspace,
    today_lists_tasks_then_accounts_then_contacts,
    each_owner_gets_a_digest_of_their_own
);
