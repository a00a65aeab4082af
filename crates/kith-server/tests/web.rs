//! The web app over real HTTP: sign-in and sign-out, sessions required, CSRF refusals, forms
//! that explain bad input, and users who see only their own workspace.

mod common;

use common::browser::Browser;
use common::TestServer;
use kith_server::service::users::create_user;
use reqwest::StatusCode;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

async fn server_with_user() -> TestServer {
    let server = TestServer::start().await;
    create_user(server.state.store.as_ref(), server.workspace, "Founder@Example.com", PASSWORD).await.unwrap();
    server
}

async fn add_ada(server: &TestServer) -> i64 {
    server
        .ingest(
            "/v1/identify",
            &json!({"userId":"u1","traits":{"email":"ada@example.com","name":"Ada Lovelace"},
                    "timestamp":"2024-06-03T16:00:00Z","page":{"url":"https://acme.io/pricing"}}),
        )
        .await;
    server.contact("ada@example.com").await["id"].as_i64().unwrap()
}

async fn every_page_but_sign_in_needs_a_session() {
    let server = server_with_user().await;
    let mut browser = Browser::new(&server);
    for path in [
        "/contacts",
        "/contacts/1",
        "/accounts",
        "/audiences",
        "/losing-touch",
        "/due",
        "/debugger",
        "/nudges",
        "/settings",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), Some(format!("/login?next={path}").as_str()), "{path}");
    }
    let page = browser.get("/debugger/stream").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "the live feed too");
    assert_eq!(browser.get("/").await.location(), Some("/login"));
    let page = browser.post("/settings/keys", &[("kind", "secret")]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "forms too");
    assert!(server.state.store.keys(server.workspace).await.unwrap().len() == 2, "no key was created");

    let login = browser.get("/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("Sign in"));
    let css = browser.client.get(format!("{}/static/app.css", server.url)).send().await.unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    assert!(css.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    server.stop().await;
}

async fn signing_in_and_out() {
    let server = server_with_user().await;
    let mut browser = Browser::new(&server);

    let form = browser.get("/login?next=/settings").await;
    let csrf = form.csrf();
    let wrong = browser
        .post("/login", &[("_csrf", &csrf), ("email", "founder@example.com"), ("password", "not it at all")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("match"), "a clear message: {}", wrong.body);
    let unknown = browser
        .post("/login", &[("_csrf", &wrong.csrf()), ("email", "nobody@example.com"), ("password", PASSWORD)])
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED, "the same answer for an unknown email");

    let page = browser
        .post(
            "/login",
            &[
                ("_csrf", &unknown.csrf()),
                ("email", " FOUNDER@example.com "),
                ("password", PASSWORD),
                ("next", "/settings"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/settings"), "back where the visitor was going");
    assert!(browser.cookies.contains_key("kith_session"));

    let contacts = browser.get("/contacts").await;
    assert_eq!(contacts.status, StatusCode::OK);
    assert!(contacts.body.contains("No contacts yet") && contacts.body.contains("/v1/identify"));
    assert_eq!(browser.get("/login").await.location(), Some("/contacts"), "already signed in");

    let session = browser.cookies["kith_session"].clone();
    let out = browser.post("/logout", &[("_csrf", &contacts.csrf())]).await;
    assert_eq!(out.location(), Some("/login"));
    assert!(!browser.cookies.contains_key("kith_session"), "the cookie is cleared");
    browser.cookies.insert("kith_session".into(), session);
    let page = browser.get("/contacts").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "the session is over on the server too");
    server.stop().await;
}

async fn the_sign_in_form_needs_its_own_token() {
    let server = server_with_user().await;
    let mut browser = Browser::new(&server);
    let page =
        browser.post("/login", &[("_csrf", "forged"), ("email", "founder@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "no login-CSRF: a form from another site is refused");
    assert!(!browser.cookies.contains_key("kith_session"));
    let next = browser.get("/login?next=//evil.example").await;
    let page = browser
        .post(
            "/login",
            &[
                ("_csrf", &next.csrf()),
                ("email", "founder@example.com"),
                ("password", PASSWORD),
                ("next", "//evil.example"),
            ],
        )
        .await;
    assert_eq!(page.location(), Some("/contacts"), "never redirected to another site");
    server.stop().await;
}

async fn forms_without_the_session_token_are_refused() {
    let server = server_with_user().await;
    let id = add_ada(&server).await;
    let mut browser = Browser::new(&server);
    browser.sign_in("founder@example.com", PASSWORD).await;
    let path = format!("/contacts/{id}/interactions");

    let missing = browser.post(&path, &[("kind", "note"), ("text", "forged")]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let wrong =
        browser.post(&path, &[("_csrf", "00000000000000000000000000000000"), ("kind", "note"), ("text", "x")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(server.timeline("ada@example.com").await.iter().all(|i| i["kind"] == "activity"), "nothing was added");
    let revoke = browser.post("/settings/keys/1/revoke", &[]).await;
    assert_eq!(revoke.status, StatusCode::FORBIDDEN);
    assert!(server.state.store.keys(server.workspace).await.unwrap().iter().all(|k| k.revoked_at.is_none()));

    let page = browser.get(&format!("/contacts/{id}")).await;
    assert!(page.body.contains("https://acme.io/pricing") && page.body.contains("Mon 3 Jun 2024"));
    let added =
        browser.post(&path, &[("_csrf", &page.csrf()), ("kind", "note"), ("text", "Called about pricing")]).await;
    assert_eq!(added.status, StatusCode::SEE_OTHER);
    let timeline = server.timeline("ada@example.com").await;
    assert_eq!(timeline[0]["kind"], "note");
    assert_eq!(timeline[0]["description"], "Called about pricing");
    server.stop().await;
}

async fn bad_input_is_explained_not_failed() {
    let server = server_with_user().await;
    let id = add_ada(&server).await;
    let mut browser = Browser::new(&server);
    browser.sign_in("founder@example.com", PASSWORD).await;
    let csrf = browser.get("/contacts").await.csrf();

    let page = browser.post(&format!("/contacts/{id}/cadence"), &[("_csrf", &csrf), ("days", "soon")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("whole number of days") && page.body.contains("value=\"soon\""), "shown again");
    let page = browser
        .post(&format!("/contacts/{id}/interactions"), &[("_csrf", &csrf), ("kind", "note"), ("text", "  ")])
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("Say what happened"));
    let page = browser
        .post(
            &format!("/contacts/{id}/interactions"),
            &[("_csrf", &csrf), ("kind", "call"), ("text", "x"), ("when", "next tuesday")],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = browser.post("/settings/workspace", &[("_csrf", &csrf), ("time_zone", "Mars/Olympus")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("IANA time zone"));
    let page = browser.post("/settings/keys", &[("_csrf", &csrf), ("kind", "root")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_eq!(browser.get("/contacts/999999").await.status, StatusCode::NOT_FOUND);
    assert_eq!(browser.get("/contacts?cursor=garbage&bucket=lukewarm").await.status, StatusCode::OK);

    let page = browser.post(&format!("/contacts/{id}/cadence"), &[("_csrf", &csrf), ("days", "7")]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(server.contact("ada@example.com").await["cadence_days"], 7);
    server.stop().await;
}

async fn keys_created_in_the_app_are_shown_once_and_revoked_at_once() {
    let server = server_with_user().await;
    let mut browser = Browser::new(&server);
    browser.sign_in("founder@example.com", PASSWORD).await;
    let csrf = browser.get("/settings").await.csrf();
    let page = browser.post("/settings/keys", &[("_csrf", &csrf), ("kind", "write"), ("name", "Site")]).await;
    assert_eq!(page.status, StatusCode::OK);
    let start = page.body.find(r#"id="new-key">"#).unwrap() + r#"id="new-key">"#.len();
    let key: String = page.body[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    assert_eq!(key.len(), 40);
    assert!(!browser.get("/settings").await.body.contains(&key), "shown once");

    let event = json!({"userId":"u1","traits":{"email":"ada@example.com"},"timestamp":"2024-06-03T16:00:00Z"});
    let send = |key: String| {
        let client = server.client.clone();
        let url = format!("{}/v1/identify", server.url);
        let body = event.to_string();
        async move { client.post(url).header("authorization", common::basic(&key)).body(body).send().await.unwrap() }
    };
    assert_eq!(send(key.clone()).await.status(), StatusCode::OK);
    let id = server.state.store.keys(server.workspace).await.unwrap().iter().find(|k| k.name == "Site").unwrap().id;
    let page = browser.post(&format!("/settings/keys/{id}/revoke"), &[("_csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(send(key).await.status(), StatusCode::UNAUTHORIZED, "refused at once");
    server.stop().await;
}

async fn a_user_sees_only_their_workspace() {
    let server = server_with_user().await;
    let ada = add_ada(&server).await;
    let store = server.state.store.clone();
    let other = store.create_workspace("Other").await.unwrap();
    create_user(store.as_ref(), other.id, "rival@example.com", PASSWORD).await.unwrap();

    let mut rival = Browser::new(&server);
    rival.sign_in("rival@example.com", PASSWORD).await;
    let list = rival.get("/contacts").await;
    assert!(!list.body.contains(&format!("href=\"/contacts/{ada}\"")));
    assert!(list.body.contains("No contacts yet"));
    assert_eq!(rival.get(&format!("/contacts/{ada}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(rival.get("/contacts/ada@example.com").await.status, StatusCode::NOT_FOUND);
    let deleted = rival.post(&format!("/contacts/{ada}/delete"), &[("_csrf", &list.csrf())]).await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);
    let revoke = rival.post("/settings/keys/1/revoke", &[("_csrf", &list.csrf())]).await;
    assert_eq!(revoke.status, StatusCode::NOT_FOUND, "another workspace's key");
    let settings = rival.get("/settings").await;
    assert!(settings.body.contains("Other") && !settings.body.contains(&server.write_key[..12]));

    let mut founder = Browser::new(&server);
    founder.sign_in("founder@example.com", PASSWORD).await;
    let list = founder.get("/contacts").await.body;
    assert!(list.contains(&format!("href=\"/contacts/{ada}\"")), "still there for its owner");
    server.stop().await;
}

async fn users_are_listed_and_removed_from_the_settings_page() {
    let server = server_with_user().await;
    let store = server.state.store.clone();
    create_user(store.as_ref(), server.workspace, "colleague@example.com", PASSWORD).await.unwrap();
    let other = store.create_workspace("Other").await.unwrap();
    let rival = create_user(store.as_ref(), other.id, "rival@example.com", PASSWORD).await.unwrap();
    let mut colleague = Browser::new(&server);
    colleague.sign_in("colleague@example.com", PASSWORD).await;

    let mut founder = Browser::new(&server);
    founder.sign_in("founder@example.com", PASSWORD).await;
    let settings = founder.get("/settings").await;
    assert!(settings.body.contains("colleague@example.com") && !settings.body.contains("rival@example.com"));
    let csrf = settings.csrf();
    let me = store.user_by_email("founder@example.com").await.unwrap().unwrap();
    let refused = founder.post(&format!("/settings/users/{}/remove", me.id), &[("_csrf", &csrf)]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "nobody removes themselves");
    assert!(refused.body.contains("cannot remove yourself"));
    let other_workspace = founder.post(&format!("/settings/users/{}/remove", rival.id), &[("_csrf", &csrf)]).await;
    assert_eq!(other_workspace.status, StatusCode::NOT_FOUND, "another workspace's user");
    assert!(store.user_by_email("rival@example.com").await.unwrap().is_some());

    let them = store.user_by_email("colleague@example.com").await.unwrap().unwrap();
    let removed = founder.post(&format!("/settings/users/{}/remove", them.id), &[("_csrf", &csrf)]).await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert!(store.user_by_email("colleague@example.com").await.unwrap().is_none());
    let signed_out = colleague.get("/contacts").await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER, "their session ended with them");
    assert!(!founder.get("/settings").await.body.contains("colleague@example.com"));
    server.stop().await;
}

async fn an_expired_session_signs_nobody_in() {
    let server = server_with_user().await;
    let store = server.state.store.clone();
    let user = store.user_by_email("founder@example.com").await.unwrap().expect("the user, by normalised email");
    let now = server.state.clock.now();
    let live = "a".repeat(64);
    let expired = "b".repeat(64);
    store
        .create_session(user.id, kith_store::key_hash(&live), now + jiff::SignedDuration::from_hours(1))
        .await
        .unwrap();
    store
        .create_session(user.id, kith_store::key_hash(&expired), now - jiff::SignedDuration::from_secs(1))
        .await
        .unwrap();
    assert!(store.session(kith_store::key_hash(&expired), now).await.unwrap().is_none());
    assert_eq!(store.session(kith_store::key_hash(&live), now).await.unwrap().unwrap().user.id, user.id);

    let mut browser = Browser::new(&server);
    browser.cookies.insert("kith_session".into(), expired);
    assert_eq!(browser.get("/contacts").await.status, StatusCode::SEE_OTHER);
    browser.cookies.insert("kith_session".into(), live);
    assert_eq!(browser.get("/contacts").await.status, StatusCode::OK);
    server.stop().await;
}

async fn nudge_rules_digest_and_segment_are_managed_in_the_app() {
    let server = server_with_user().await;
    let mut browser = Browser::new(&server);
    browser.sign_in("founder@example.com", PASSWORD).await;
    let page = browser.get("/nudges").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"href="/nudges/rules/new""#), "the builder is a click away");
    let page = browser.get("/nudges/rules/new").await;
    assert!(page.body.contains("Enterprise signup without a teammate"), "the JSON example is offered");
    let csrf = page.csrf();

    let bad = r#"{"name": "x", "when": {"becomes_due": {}}, "then": [{"webhook": {"url": "gopher://x"}}]}"#;
    let page = browser.post("/nudges/rules", &[("_csrf", &csrf), ("rule", bad)]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("http://"), "the reason is shown");
    assert!(page.body.contains("gopher://x"), "and the text is kept");

    // Internal addresses are refused when saved, with the way to allow them.
    let internal =
        r#"{"name": "x", "when": {"becomes_due": {}}, "then": [{"webhook": {"url": "http://169.254.169.254/"}}]}"#;
    let page = browser.post("/nudges/rules", &[("_csrf", &csrf), ("rule", internal)]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("link-local") && page.body.contains("outbound_allow"), "{}", page.body);
    let form = [("_csrf", csrf.as_str()), ("digest_time", "09:00"), ("digest_webhook_url", "http://10.0.0.1/d")];
    let page = browser.post("/nudges/digest", &[&form[..], &[("digest_email", "")]].concat()).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("outbound_allow"), "{}", page.body);
    let page = browser
        .post("/nudges/segment", &[("_csrf", &csrf), ("segment_host", "[fd00::1]"), ("segment_write_key", "wk")])
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(server.get("/api/rules").await.as_array().unwrap().is_empty());
    assert!(server.get("/api/workspace").await["segment_host"].is_null());

    let rule = r#"{"name": "Due nudge", "when": {"becomes_due": {}}, "then": [{"webhook": {"url": "https://hooks.example/x"}}]}"#;
    let page = browser.post("/nudges/rules", &[("_csrf", &csrf), ("rule", rule)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let rules = server.get("/api/rules").await;
    let id = rules[0]["id"].as_i64().unwrap();
    assert_eq!(rules[0]["enabled"], true);
    let page = browser.get("/nudges").await;
    assert!(page.body.contains("When a contact becomes due a touch: post to https://hooks.example."), "{}", page.body);

    browser.post(&format!("/nudges/rules/{id}/toggle"), &[("_csrf", &csrf)]).await;
    assert_eq!(server.get("/api/rules").await[0]["enabled"], false);

    let page = browser
        .post(
            "/nudges/digest",
            &[("_csrf", &csrf), ("digest_time", "9am"), ("digest_webhook_url", ""), ("digest_email", "")],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = browser
        .post(
            "/nudges/digest",
            &[
                ("_csrf", &csrf),
                ("digest_time", "09:00"),
                ("digest_webhook_url", "https://hooks.example/d"),
                ("digest_email", ""),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let page = browser
        .post("/nudges/segment", &[("_csrf", &csrf), ("segment_host", "api.segment.io"), ("segment_write_key", "wk")])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let workspace = server.get("/api/workspace").await;
    assert_eq!(workspace["digest_time"], "09:00");
    assert_eq!(workspace["digest_webhook_url"], "https://hooks.example/d");
    assert_eq!(workspace["segment_host"], "api.segment.io");
    assert_eq!(workspace["segment_write_key_set"], true);
    // An empty key field keeps the key that is set.
    browser
        .post("/nudges/segment", &[("_csrf", &csrf), ("segment_host", "api.segment.io"), ("segment_write_key", "")])
        .await;
    assert_eq!(server.get("/api/workspace").await["segment_write_key_set"], true);

    let page = browser.post(&format!("/nudges/rules/{id}/delete"), &[("_csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(server.get("/api/rules").await.as_array().unwrap().is_empty());
    assert_eq!(browser.post("/nudges/rules/999/delete", &[("_csrf", &csrf)]).await.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

async fn array_bodies_are_refused_or_accepted_from_the_settings_page() {
    let server = server_with_user().await;
    let mut browser = Browser::new(&server);
    browser.sign_in("founder@example.com", PASSWORD).await;
    let page = browser.get("/settings").await;
    assert!(page.body.contains("signs only its first event"), "the limitation is explained");
    let page = browser.post("/settings/array-bodies", &[("_csrf", &page.csrf()), ("refuse", "1")]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Accept array bodies"));
    assert_eq!(server.get("/api/workspace").await["refuse_array_bodies"], true);
    let page = browser.post("/settings/array-bodies", &[("_csrf", &page.csrf()), ("refuse", "0")]).await;
    assert!(page.body.contains("Refuse array bodies"));
    assert_eq!(server.get("/api/workspace").await["refuse_array_bodies"], false);
    server.stop().await;
}

crate::backend_tests!(
    every_page_but_sign_in_needs_a_session,
    array_bodies_are_refused_or_accepted_from_the_settings_page,
    signing_in_and_out,
    the_sign_in_form_needs_its_own_token,
    forms_without_the_session_token_are_refused,
    bad_input_is_explained_not_failed,
    keys_created_in_the_app_are_shown_once_and_revoked_at_once,
    a_user_sees_only_their_workspace,
    users_are_listed_and_removed_from_the_settings_page,
    an_expired_session_signs_nobody_in,
    nudge_rules_digest_and_segment_are_managed_in_the_app,
);
