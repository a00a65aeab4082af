//! Workspaces are walled off from each other: one workspace's keys and users, naming another
//! workspace's contact, account, audience, rule, cadence rule, key or delivery, get a 404 from
//! every `/api` route and every web form, and ingest with one workspace's write key never reaches
//! another's contacts — however the ids and emails coincide. Each attempt is followed by a full
//! read-back of the other workspace through its own key, which must not have changed in any way.

mod common;

use common::browser::Browser;
use common::outbound::Receiver;
use common::TestServer;
use jiff::Timestamp;
use kith_server::auth::generate_key;
use kith_server::service::users::create_user;
use kith_server::Clock;
use kith_store::KeyKind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const T0: &str = "2024-07-01T09:00:00Z";
const PASSWORD: &str = "correct horse battery";

/// One workspace's keys on the shared server.
struct Tenant {
    write_key: String,
    secret_key: String,
}

/// What workspace B holds, by the ids its own API reports.
struct Holdings {
    bea: i64,
    bo: i64,
    waiting_rule: i64,
    failing_rule: i64,
    delivery: i64,
    cadence_rule: i64,
    keys: Vec<i64>,
}

impl Tenant {
    async fn request(
        &self,
        server: &TestServer,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = server.client.request(method, format!("{}{path}", server.url)).bearer_auth(&self.secret_key);
        if let Some(body) = body {
            request = request.json(body);
        }
        common::read(request.send().await.expect("request")).await
    }

    async fn get(&self, server: &TestServer, path: &str) -> Value {
        let (status, body) = self.request(server, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    async fn ingest(&self, server: &TestServer, path: &str, body: &Value) {
        let response = server
            .client
            .post(format!("{}{path}", server.url))
            .header("authorization", common::basic(&self.write_key))
            .json(body)
            .send()
            .await
            .expect("request");
        let (status, answer) = common::read(response).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    }

    /// Everything the workspace's own API shows, path by path.
    async fn snapshot(&self, server: &TestServer, held: &Holdings) -> Vec<(String, Value)> {
        let mut paths: Vec<String> = [
            "/api/contacts?limit=1000",
            "/api/contacts/losing-touch",
            "/api/contacts/due",
            "/api/accounts",
            "/api/accounts/b-corp",
            "/api/audiences",
            "/api/audiences/b_vips",
            "/api/rules",
            "/api/deliveries",
            "/api/keys",
            "/api/cadence-rules",
            "/api/workspace",
            "/api/alias-conflicts",
        ]
        .map(String::from)
        .to_vec();
        for contact in [held.bea, held.bo] {
            for tail in ["", "/timeline", "/events"] {
                paths.push(format!("/api/contacts/{contact}{tail}"));
            }
        }
        for rule in [held.waiting_rule, held.failing_rule] {
            paths.push(format!("/api/rules/{rule}"));
        }
        let mut snapshot = Vec::new();
        for path in paths {
            let body = self.get(server, &path).await;
            snapshot.push((path, body));
        }
        snapshot
    }
}

/// Asserts that every path reads back as it did, naming the first one that changed.
fn assert_unchanged(before: &[(String, Value)], after: &[(String, Value)], when: &str) {
    for ((path, old), (_, new)) in before.iter().zip(after) {
        assert_eq!(new, old, "{path} in workspace B changed {when}");
    }
}

/// Workspace B on the test server, with a key pair of its own.
async fn second_workspace(server: &TestServer) -> (i64, Tenant) {
    let store = &server.state.store;
    let workspace = store.create_workspace("Bravo").await.unwrap();
    let tenant = Tenant { write_key: generate_key(KeyKind::Write), secret_key: generate_key(KeyKind::Secret) };
    store.create_key(workspace.id, KeyKind::Write, "b write", &tenant.write_key).await.unwrap();
    store.create_key(workspace.id, KeyKind::Secret, "b secret", &tenant.secret_key).await.unwrap();
    (workspace.id, tenant)
}

/// Fills workspace B: two contacts, an account, an audience, a rule with a waiting firing, a
/// failed delivery and a cadence rule.
async fn fill(server: &TestServer, b: &Tenant, receiver: &Receiver) -> Holdings {
    let create_rule = |spec: Value| async move {
        let (status, body) = b.request(server, Method::POST, "/api/rules", Some(&spec)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().unwrap()
    };
    let waiting_rule = create_rule(json!({
        "name": "Signup without a teammate",
        "when": {"event": {"name": "Signed Up"}},
        "unless": {"event": "Invited Teammate", "within_hours": 48},
        "then": [{"webhook": {"url": format!("{}/waiting", receiver.url)}}]
    }))
    .await;
    let failing_rule = create_rule(json!({
        "name": "Paid",
        "when": {"event": {"name": "Paid"}},
        "then": [{"webhook": {"url": format!("{}/paid", receiver.url)}}]
    }))
    .await;

    for (user, email, name) in [("b-user", "bea@b.example", "Bea"), ("b-other", "bo@b.example", "Bo")] {
        b.ingest(
            server,
            "/v1/identify",
            &json!({"userId": user, "traits": {"email": email, "name": name}, "timestamp": T0}),
        )
        .await;
    }
    b.ingest(
        server,
        "/v1/group",
        &json!({"userId": "b-user", "groupId": "b-corp", "traits": {"name": "B Corp"}, "timestamp": T0}),
    )
    .await;
    b.ingest(
        server,
        "/v1/identify",
        &json!({"userId": "b-user", "traits": {"b_vips": true, "email": "bea@b.example"}, "timestamp": T0,
                "context": {"personas": {"computation_class": "audience", "computation_key": "b_vips",
                                         "computation_id": "aud_b", "space_id": "spa_b"}}}),
    )
    .await;
    b.ingest(server, "/v1/track", &json!({"userId": "b-user", "event": "Signed Up", "timestamp": T0})).await;
    receiver.answer(&[(404, None)]);
    b.ingest(server, "/v1/track", &json!({"userId": "b-other", "event": "Paid", "timestamp": T0})).await;
    server.run_jobs().await;

    let (status, body) = b
        .request(
            server,
            Method::PUT,
            "/api/cadence-rules",
            Some(&json!({"target": "account", "key": "b-corp", "days": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cadence_rule = body["id"].as_i64().unwrap();

    let bea = b.get(server, "/api/contacts/bea@b.example").await["id"].as_i64().unwrap();
    let bo = b.get(server, "/api/contacts/bo@b.example").await["id"].as_i64().unwrap();
    let rule = b.get(server, &format!("/api/rules/{waiting_rule}")).await;
    let states: Vec<&str> = rule["firings"].as_array().unwrap().iter().map(|f| f["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["waiting"], "the rule waits for its 48 hours: {rule}");
    let failed = b.get(server, "/api/deliveries?status=failed").await;
    assert_eq!(failed.as_array().unwrap().len(), 1, "the receiver's 404 failed the delivery: {failed}");
    let delivery = failed[0]["id"].as_i64().unwrap();
    let keys = b.get(server, "/api/keys").await.as_array().unwrap().iter().map(|k| k["id"].as_i64().unwrap()).collect();
    Holdings { bea, bo, waiting_rule, failing_rule, delivery, cadence_rule, keys }
}

/// A server with workspace A (the test server's own, with a user and a contact) and workspace
/// B, filled.
async fn two_workspaces() -> (TestServer, Tenant, Tenant, Holdings, Receiver) {
    let receiver = Receiver::start().await;
    let server = TestServer::start_with_clock(Clock::manual(T0.parse::<Timestamp>().unwrap())).await;
    create_user(server.state.store.as_ref(), server.workspace, "founder@a.example", PASSWORD).await.unwrap();
    let a = Tenant { write_key: server.write_key.clone(), secret_key: server.secret_key.clone() };
    a.ingest(
        &server,
        "/v1/identify",
        &json!({"userId": "a-user", "traits": {"email": "ann@a.example"}, "timestamp": T0}),
    )
    .await;
    let (_, b) = second_workspace(&server).await;
    let held = fill(&server, &b, &receiver).await;
    (server, a, b, held, receiver)
}

async fn another_workspaces_ids_are_not_found_on_the_api() {
    let (server, a, b, held, _receiver) = two_workspaces().await;
    let before = b.snapshot(&server, &held).await;
    let ann = a.get(&server, "/api/contacts/ann@a.example").await["id"].as_i64().unwrap();
    let rule = json!({"name": "Taken over", "enabled": false, "when": {"event": {"name": "Paid"}},
                      "then": [{"webhook": {"url": "https://hooks.example/x"}}]});
    let (bea, bo) = (held.bea, held.bo);

    let mut attempts: Vec<(Method, String, Option<Value>)> = Vec::new();
    for contact in [bea.to_string(), "bea@b.example".to_owned()] {
        for tail in ["", "/timeline", "/events"] {
            attempts.push((Method::GET, format!("/api/contacts/{contact}{tail}"), None));
        }
        attempts.push((
            Method::POST,
            format!("/api/contacts/{contact}/interactions"),
            Some(json!({"kind": "note", "text": "written from A"})),
        ));
        attempts.push((Method::PUT, format!("/api/contacts/{contact}/cadence"), Some(json!({"days": 3}))));
        attempts.push((Method::POST, format!("/api/contacts/{contact}/merge"), Some(json!({"contact": bo}))));
        attempts.push((Method::POST, format!("/api/contacts/{ann}/merge"), Some(json!({"contact": contact}))));
        attempts.push((Method::DELETE, format!("/api/contacts/{contact}?suppress=true"), None));
    }
    attempts.push((Method::GET, "/api/accounts/b-corp".into(), None));
    attempts.push((Method::GET, "/api/audiences/b_vips".into(), None));
    for id in [held.waiting_rule, held.failing_rule] {
        attempts.push((Method::GET, format!("/api/rules/{id}"), None));
        attempts.push((Method::PUT, format!("/api/rules/{id}"), Some(rule.clone())));
        attempts.push((Method::DELETE, format!("/api/rules/{id}"), None));
    }
    attempts.push((Method::POST, format!("/api/deliveries/{}/retry", held.delivery), None));
    attempts.push((Method::DELETE, format!("/api/cadence-rules/{}", held.cadence_rule), None));
    for key in &held.keys {
        attempts.push((Method::DELETE, format!("/api/keys/{key}"), None));
    }

    for (method, path, body) in attempts {
        let (status, answer) = a.request(&server, method.clone(), &path, body.as_ref()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path} from workspace A: {answer}");
        assert_eq!(answer["code"], "not_found", "{method} {path}: {answer}");
    }

    // Lists and filters in A name nothing of B's.
    let contacts = a.get(&server, "/api/contacts?limit=1000").await;
    let emails: Vec<&str> =
        contacts["items"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["ann@a.example"]);
    for path in ["/api/contacts?account=b-corp", "/api/contacts?audience=b_vips", "/api/contacts?search=bea"] {
        assert_eq!(a.get(&server, path).await["items"], json!([]), "{path}");
    }
    for path in ["/api/accounts", "/api/audiences", "/api/rules", "/api/deliveries", "/api/cadence-rules"] {
        assert_eq!(a.get(&server, path).await, json!([]), "{path}");
    }
    let a_keys = a.get(&server, "/api/keys").await;
    assert!(a_keys.as_array().unwrap().iter().all(|k| !held.keys.contains(&k["id"].as_i64().unwrap())), "{a_keys}");
    let csv = server
        .client
        .get(format!("{}/api/contacts/export.csv", server.url))
        .bearer_auth(&a.secret_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.contains("ann@a.example") && !csv.contains("b.example"), "{csv}");

    // A cadence rule keyed by B's groupId is A's own and changes nothing in B.
    let (status, body) = a
        .request(
            &server,
            Method::PUT,
            "/api/cadence-rules",
            Some(&json!({"target": "account", "key": "b-corp", "days": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_unchanged(&before, &b.snapshot(&server, &held).await, "after workspace A's calls");
    server.run_jobs().await;
    assert_unchanged(&before, &b.snapshot(&server, &held).await, "once the jobs have run");
    server.stop().await;
}

async fn ingest_with_one_workspaces_key_never_reaches_another() {
    let (server, a, b, held, _receiver) = two_workspaces().await;
    let before = b.snapshot(&server, &held).await;

    // B's userIds, email, groupId and audience, sent with A's write key; the deletion first,
    // while no contact of A holds that userId.
    for (path, body) in [
        ("/v1/batch", json!({"batch": [{"type": "delete", "userId": "b-other", "timestamp": T0}]})),
        (
            "/v1/identify",
            json!({"userId": "b-user", "traits": {"email": "bea@b.example", "name": "Impostor"}, "timestamp": T0}),
        ),
        ("/v1/track", json!({"userId": "b-user", "event": "Invited Teammate", "timestamp": T0})),
        ("/v1/track", json!({"userId": "b-other", "event": "Paid", "timestamp": T0})),
        (
            "/v1/group",
            json!({"userId": "b-user", "groupId": "b-corp", "traits": {"name": "Hijacked"}, "timestamp": T0}),
        ),
        ("/v1/alias", json!({"previousId": "b-other", "userId": "b-user", "timestamp": T0})),
        (
            "/v1/identify",
            json!({"userId": "b-other", "traits": {"b_vips": false, "email": "bo@b.example"}, "timestamp": T0,
                   "context": {"personas": {"computation_class": "audience", "computation_key": "b_vips",
                                            "computation_id": "aud_b", "space_id": "spa_b"}}}),
        ),
    ] {
        a.ingest(&server, path, &body).await;
    }
    server.run_jobs().await;

    assert_unchanged(&before, &b.snapshot(&server, &held).await, "after workspace A's events");
    let bea_in_a = a.get(&server, "/api/contacts/bea@b.example").await;
    assert_ne!(bea_in_a["id"].as_i64(), Some(held.bea), "A's Bea is A's own contact");
    assert_eq!(bea_in_a["name"], "Impostor");
    assert_eq!(a.get(&server, "/api/accounts/b-corp").await["name"], "Hijacked");
    server.stop().await;
}

async fn another_workspaces_ids_are_not_found_in_the_web_app() {
    let (server, _a, b, held, _receiver) = two_workspaces().await;
    let before = b.snapshot(&server, &held).await;
    let mut browser = Browser::new(&server);
    browser.sign_in("founder@a.example", PASSWORD).await;
    let token = browser.get("/contacts").await.csrf();

    for path in [
        format!("/contacts/{}", held.bea),
        "/contacts/bea@b.example".to_owned(),
        "/accounts/b-corp".to_owned(),
        "/audiences/b_vips".to_owned(),
    ] {
        assert_eq!(browser.get(&path).await.status, StatusCode::NOT_FOUND, "GET {path}");
    }
    let mut forms: Vec<(String, Vec<(&str, &str)>)> = Vec::new();
    for contact in [held.bea.to_string(), "bea@b.example".to_owned()] {
        forms.push((format!("/contacts/{contact}/interactions"), vec![("kind", "note"), ("text", "written from A")]));
        forms.push((format!("/contacts/{contact}/cadence"), vec![("days", "3")]));
        forms.push((format!("/contacts/{contact}/delete"), vec![("suppress", "on")]));
    }
    for rule in [held.waiting_rule, held.failing_rule] {
        forms.push((format!("/nudges/rules/{rule}/toggle"), vec![]));
        forms.push((format!("/nudges/rules/{rule}/delete"), vec![]));
    }
    forms.push((format!("/nudges/deliveries/{}/retry", held.delivery), vec![]));
    for key in &held.keys {
        forms.push((format!("/settings/keys/{key}/revoke"), vec![]));
    }
    for (path, mut fields) in forms {
        fields.push(("_csrf", &token));
        let page = browser.post(&path, &fields).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "POST {path} from workspace A: {}", page.body);
    }

    let nudges = browser.get("/nudges").await.body;
    assert!(!nudges.contains("Signup without a teammate") && !nudges.contains("/paid"), "B's rules are not shown");
    assert_unchanged(&before, &b.snapshot(&server, &held).await, "after workspace A's forms");
    server.stop().await;
}

crate::backend_tests!(
    another_workspaces_ids_are_not_found_on_the_api,
    ingest_with_one_workspaces_key_never_reaches_another,
    another_workspaces_ids_are_not_found_in_the_web_app,
);
