//! The web app against hostile use, over real HTTP: sign-in throttling and the bound on
//! password hashing, redirects that never leave the site, CSV cells that never run as
//! formulas, the live debugger's per-workspace feeds and stream cap, `Secure` cookies behind
//! https, idle sessions, and password changes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::browser::{Browser, Page};
use common::{Options, TestServer};
use kith_server::service::users::create_user;
use kith_server::web::throttle::MAX_HASHES;
use kith_server::web::WebConfig;
use kith_server::Clock;
use kith_store::KeyKind;
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;

const EMAIL: &str = "founder@example.com";
const PASSWORD: &str = "correct horse battery";

async fn server_with(web: WebConfig, clock: Option<Clock>) -> TestServer {
    let server = TestServer::start_with(Options { web, clock, ..Options::default() }).await;
    create_user(server.state.store.as_ref(), server.workspace, EMAIL, PASSWORD).await.unwrap();
    server
}

async fn server_with_user() -> TestServer {
    server_with(WebConfig::default(), None).await
}

async fn wait(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds) + Duration::from_millis(100)).await;
}

async fn sign_in_is_throttled_per_account_with_growing_waits() {
    let server = server_with_user().await;
    let mut browser = Browser::new(&server);
    for attempt in 1..=5 {
        let page = browser.try_sign_in(EMAIL, "not the password").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let page = browser.try_sign_in(EMAIL, "not the password").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    let first = page.retry_after().expect("Retry-After");
    assert!(page.body.contains("Too many failed sign-ins"), "{}", page.body);
    let page = browser.try_sign_in(EMAIL, PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "not even the right password while locked");

    wait(first).await;
    assert_eq!(browser.try_sign_in(EMAIL, "still not it").await.status, StatusCode::UNAUTHORIZED);
    let page = browser.try_sign_in(EMAIL, PASSWORD).await;
    let second = page.retry_after().expect("locked again");
    assert!(second > first, "the wait grows: {first} s, then {second} s");

    let mut other = Browser::new(&server);
    let elsewhere = other.try_sign_in("someone@example.com", "wrong password").await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED, "another account is not locked");

    wait(second).await;
    browser.sign_in(EMAIL, PASSWORD).await;
    server.stop().await;
}

async fn sign_in_is_throttled_per_client_address() {
    let server = server_with_user().await;
    let mut browser = Browser::new(&server);
    let mut statuses = Vec::new();
    for n in 0..21 {
        statuses.push(browser.try_sign_in(&format!("guess{n}@example.com"), "password1").await.status);
    }
    assert!(statuses[..20].iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{statuses:?}");
    assert_eq!(statuses[20], StatusCode::TOO_MANY_REQUESTS, "one address guessing many accounts is stopped");
    let page = browser.try_sign_in(EMAIL, PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);

    // Behind a proxy on this machine, each client is counted by the address it forwards.
    let form = browser.get("/login").await;
    let request = browser
        .client
        .post(format!("{}/login", server.url))
        .header("x-forwarded-for", "198.51.100.7")
        .form(&[("_csrf", form.csrf().as_str()), ("email", EMAIL), ("password", PASSWORD)]);
    assert_eq!(browser.send(request).await.status, StatusCode::SEE_OTHER);
    server.stop().await;
}

async fn password_hashing_is_bounded() {
    let server = server_with_user().await;
    let mut browser = Browser::new(&server);
    let token = browser.get("/login").await.csrf();
    let attempts = (0..24).map(|n| {
        let request = browser
            .client
            .post(format!("{}/login", server.url))
            .header(COOKIE, format!("kith_login={token}"))
            // Distinct accounts and addresses: no throttle, only the bound on hashing.
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .form(&[("_csrf", token.as_str()), ("email", &format!("user{n}@example.com")), ("password", "password1")]);
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    let peak = server.state.web.sign_in.peak_hashes();
    assert!((1..=MAX_HASHES).contains(&peak), "{peak} hashes ran at once");
    server.stop().await;
}

async fn next_never_leaves_the_site() {
    let server = server_with_user().await;
    let mut browser = Browser::new(&server);
    browser.sign_in(EMAIL, PASSWORD).await;
    // Each is read by a browser as `//evil.example` or `https://evil.example`: another site.
    for hostile in [
        "/%09/evil.example/x",
        "/%0A/evil.example",
        "/%0D%0A/evil.example",
        "%20//evil.example",
        "/%5Cevil.example",
        "/\\evil.example",
        "//evil.example",
        "%2F%2Fevil.example",
        "https://evil.example",
        "javascript:alert(1)",
    ] {
        let page = browser.get(&format!("/login?next={hostile}")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{hostile}");
        assert_eq!(page.location(), Some("/contacts"), "{hostile}");
    }
    let page = browser.get("/login?next=/settings%3Fx%3D1").await;
    assert_eq!(page.location(), Some("/settings?x=1"), "a path of this site is kept");

    let mut fresh = Browser::new(&server);
    let form = fresh.get("/login").await;
    let page = fresh
        .post(
            "/login",
            &[("_csrf", &form.csrf()), ("email", EMAIL), ("password", PASSWORD), ("next", "/\t/evil.example/x")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/contacts"), "the sign-in form's next too");
    server.stop().await;
}

async fn csv_export_cells_never_run_as_formulas() {
    let server = server_with_user().await;
    // Names are trimmed on the way in, so a leading tab or carriage return cannot arrive this
    // way; `neutralise` handles them all the same.
    let names = ["=HYPERLINK(\"https://evil.example\",\"open\")", "+1 555", "-2+3", "@SUM(A1)"];
    for (n, name) in names.iter().enumerate() {
        server
            .ingest(
                "/v1/identify",
                &json!({"userId": format!("u{n}"), "traits": {"email": format!("p{n}@example.com"), "name": name},
                        "timestamp": "2024-06-03T16:00:00Z"}),
            )
            .await;
    }
    server
        .ingest(
            "/v1/identify",
            &json!({"userId":"ada","traits":{"email":"ada@example.com","name":"Ada Lovelace"},
                    "timestamp":"2024-06-03T16:00:00Z"}),
        )
        .await;
    assert_eq!(server.emails().await.len(), names.len() + 1);
    let response = server
        .client
        .get(format!("{}/api/contacts/export.csv", server.url))
        .bearer_auth(&server.secret_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let exported: HashMap<String, String> =
        reader.records().map(|record| record.unwrap()).map(|r| (r[1].to_owned(), r[2].to_owned())).collect();
    for (n, name) in names.iter().enumerate() {
        assert_eq!(exported[&format!("p{n}@example.com")], format!("'{name}"), "{name:?}");
    }
    assert_eq!(exported["ada@example.com"], "Ada Lovelace", "ordinary names are untouched");
    server.stop().await;
}

/// A write key and a signed-in browser for a second workspace.
async fn second_workspace(server: &TestServer) -> (String, Browser) {
    let store = server.state.store.clone();
    let other = store.create_workspace("Other").await.unwrap();
    let key = kith_server::auth::generate_key(KeyKind::Write);
    store.create_key(other.id, KeyKind::Write, "w", &key).await.unwrap();
    create_user(store.as_ref(), other.id, "other@example.com", PASSWORD).await.unwrap();
    let mut browser = Browser::new(server);
    browser.sign_in("other@example.com", PASSWORD).await;
    (key, browser)
}

/// The `data-after` of the debugger page: the sequence number of its latest entry.
fn last_seq(page: &Page) -> u64 {
    let marker = "data-after=\"";
    let start = page.body.find(marker).expect("the debugger list") + marker.len();
    page.body[start..].split('"').next().unwrap().parse().unwrap()
}

async fn each_workspace_has_its_own_debugger_feed() {
    let server = server_with_user().await;
    let (other_key, mut other) = second_workspace(&server).await;
    let bad = json!({"userId":"u","traits":{"email":"not an email"}});
    let response = server
        .client
        .post(format!("{}/v1/identify", server.url))
        .header("authorization", common::basic(&other_key))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error() || response.status().is_success());
    // A busy workspace: more refusals than a feed keeps.
    let batch = json!({"batch": vec![json!({"type":"identify","userId":"u","traits":{"email":"not an email"}}); 301]});
    server.send_json("/v1/batch", &batch).await;

    let page = other.get("/debugger").await;
    assert_eq!(last_seq(&page), 1, "the other workspace's numbers do not show this one's volume");
    assert!(page.body.contains("not an email") || page.body.contains("invalid_email"), "its entry is still kept");
    let mut founder = Browser::new(&server);
    founder.sign_in(EMAIL, PASSWORD).await;
    assert_eq!(last_seq(&founder.get("/debugger").await), 301);
    server.stop().await;
}

/// With several nodes on PostgreSQL, the debugger open on a node that does not apply the log
/// still shows the events sent to that node, as accepted; the node applying the log shows
/// what each did.
#[tokio::test]
#[cfg_attr(not(kith_test_postgres), ignore = "needs PostgreSQL: set KITH_TEST_DATABASE_URL to run it")]
async fn the_debugger_on_a_node_not_applying_the_log_shows_what_it_accepted() {
    common::run_on(common::Backend::Postgres, "debugger_nodes", async {
        let server = TestServer::start().await;
        let other = server.another_node().await;
        let leads = |node: &TestServer| node.state.store.log_position().is_some_and(|p| p.leases > 0);
        let started = std::time::Instant::now();
        while !leads(&server) && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(leads(&server) && !leads(&other), "the first node applies the log");
        let _watching = [server.state.debugger.open_stream(1, 10), other.state.debugger.open_stream(1, 10)];

        let identify = json!({"userId": "u1", "traits": {"email": "ada@example.com"}, "messageId": "seen-on-other",
                              "timestamp": "2024-07-01T09:00:00Z"});
        let answer = other
            .client
            .post(format!("{}/v1/identify", other.url))
            .header("authorization", other.basic())
            .json(&identify)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let shown = other.state.debugger.recent(other.workspace);
        let entry = shown.iter().find(|e| e.message_id.as_deref() == Some("seen-on-other")).expect("shown on its node");
        assert_eq!((entry.status.as_str(), entry.email.as_deref()), ("accepted", Some("ada@example.com")));

        server.state.store.settle().await.unwrap();
        let applied = server.state.debugger.recent(server.workspace);
        let entry = applied.iter().find(|e| e.message_id.as_deref() == Some("seen-on-other")).expect("applied");
        assert_eq!((entry.status.as_str(), entry.contact_id.is_some()), ("added", true), "{entry:?}");
        other.stop().await;
        server.stop().await;
    })
    .await
}

async fn debugger_streams_are_capped_per_user() {
    let web = WebConfig { streams_per_user: 2, ..WebConfig::default() };
    let server = server_with(web, None).await;
    let mut browser = Browser::new(&server);
    browser.sign_in(EMAIL, PASSWORD).await;
    let cookie = format!("kith_session={}", browser.cookies["kith_session"]);
    let open = || browser.client.get(format!("{}/debugger/stream", server.url)).header(COOKIE, &cookie).send();
    let first = open().await.unwrap();
    let second = open().await.unwrap();
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    let third = open().await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    let (_, other) = second_workspace(&server).await;
    let other_cookie = format!("kith_session={}", other.cookies["kith_session"]);
    let others = browser.client.get(format!("{}/debugger/stream", server.url)).header(COOKIE, other_cookie);
    assert_eq!(others.send().await.unwrap().status(), StatusCode::OK, "the cap is per user");

    // A closed tab gives its place back.
    drop(first);
    let mut reopened = StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..50 {
        reopened = open().await.unwrap().status();
        if reopened == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reopened, StatusCode::OK);
    // Shutting down ends the streams still open at once, without waiting for a timer.
    tokio::time::timeout(Duration::from_secs(5), server.stop()).await.expect("streams end at shutdown");
}

fn session_cookie(page: &Page) -> String {
    page.headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .find(|value| value.starts_with("kith_session="))
        .expect("a session cookie")
}

async fn cookies_are_secure_when_kith_is_served_over_https() {
    let web = WebConfig { public_url: Some("https://kith.example.com".into()), ..WebConfig::default() };
    let server = server_with(web, None).await;
    let mut browser = Browser::new(&server);
    let page = browser.try_sign_in(EMAIL, PASSWORD).await;
    assert!(session_cookie(&page).contains("; Secure"), "{}", session_cookie(&page));
    let form = Browser::new(&server).get("/login").await;
    let login = form.headers.get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(login.contains("; Secure"), "{login}");
    server.stop().await;

    let server =
        server_with(WebConfig { public_url: Some("http://127.0.0.1".into()), ..WebConfig::default() }, None).await;
    let mut browser = Browser::new(&server);
    let page = browser.try_sign_in(EMAIL, PASSWORD).await;
    assert!(!session_cookie(&page).contains("Secure"), "plain http cannot carry a Secure cookie");
    let mut browser = Browser::new(&server);
    let form = browser.get("/login").await;
    let request = browser.client.post(format!("{}/login", server.url)).header("x-forwarded-proto", "https").form(&[
        ("_csrf", form.csrf().as_str()),
        ("email", EMAIL),
        ("password", PASSWORD),
    ]);
    let page = browser.send(request).await;
    assert!(session_cookie(&page).contains("; Secure"), "a proxy saying https still counts");
    server.stop().await;
}

async fn an_unused_session_ends_before_its_limit() {
    // A clock a year ahead of the system's: idle time is counted on kith's clock, not on the
    // time the store stamps.
    let clock = Clock::manual(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 400));
    let web = WebConfig { session_idle: jiff::SignedDuration::from_hours(1), ..WebConfig::default() };
    let server = server_with(web, Some(clock.clone())).await;
    let mut browser = Browser::new(&server);
    browser.sign_in(EMAIL, PASSWORD).await;
    for _ in 0..3 {
        clock.advance(jiff::SignedDuration::from_mins(50));
        assert_eq!(browser.get("/contacts").await.status, StatusCode::OK, "kept alive by use");
    }
    clock.advance(jiff::SignedDuration::from_mins(61));
    let page = browser.get("/contacts").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "an hour unused ends it");
    assert_eq!(page.location(), Some("/login?next=/contacts"));
    clock.advance(jiff::SignedDuration::from_mins(-61));
    assert_eq!(browser.get("/contacts").await.status, StatusCode::SEE_OTHER, "for good, not just by the clock");
    server.stop().await;
}

async fn a_password_is_changed_in_settings() {
    let server = server_with_user().await;
    let mut browser = Browser::new(&server);
    browser.sign_in(EMAIL, PASSWORD).await;
    let mut elsewhere = Browser::new(&server);
    elsewhere.sign_in(EMAIL, PASSWORD).await;
    let settings = browser.get("/settings").await;
    assert!(settings.body.contains("action=\"/settings/password\""), "the form is offered");
    let csrf = settings.csrf();

    let new = "a much better passphrase";
    let page = browser
        .post("/settings/password", &[("_csrf", &csrf), ("current_password", "wrong guess"), ("new_password", new)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("not changed"), "{}", page.body);
    let page = browser
        .post("/settings/password", &[("_csrf", &csrf), ("current_password", PASSWORD), ("new_password", "short")])
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("at least 8"));
    let page = browser.post("/settings/password", &[("current_password", PASSWORD), ("new_password", new)]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "CSRF applies");

    let page = browser
        .post("/settings/password", &[("_csrf", &csrf), ("current_password", PASSWORD), ("new_password", new)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let settings = browser.get(page.location().unwrap()).await;
    assert_eq!(settings.status, StatusCode::OK, "this browser stays signed in");
    assert!(settings.body.contains("Your password is changed"), "{}", settings.body);
    assert_eq!(elsewhere.get("/contacts").await.status, StatusCode::SEE_OTHER, "other sessions end");

    let mut fresh = Browser::new(&server);
    assert_eq!(fresh.try_sign_in(EMAIL, PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    fresh.sign_in(EMAIL, new).await;
    server.stop().await;
}

crate::backend_tests!(
    sign_in_is_throttled_per_account_with_growing_waits,
    sign_in_is_throttled_per_client_address,
    password_hashing_is_bounded,
    next_never_leaves_the_site,
    csv_export_cells_never_run_as_formulas,
    each_workspace_has_its_own_debugger_feed,
    debugger_streams_are_capped_per_user,
    cookies_are_secure_when_kith_is_served_over_https,
    an_unused_session_ends_before_its_limit,
    a_password_is_changed_in_settings,
);
