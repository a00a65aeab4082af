//! Account health over HTTP: a known set of events, a model set through the API, and the score
//! and each factor's contribution worked out by hand; the daily record; lists filtered and
//! sorted by band and score; and the refusals of a bad model or rating.

mod common;

use common::browser::Browser;
use common::TestServer;
use jiff::Timestamp;
use kith_server::service::users::create_user;
use kith_server::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const NOW: &str = "2024-06-30T12:00:00Z";

async fn send(server: &TestServer, body: Value) {
    let path = format!("/v1/{}", body["type"].as_str().unwrap());
    server.ingest(&path, &body).await;
}

async fn track(server: &TestServer, user: &str, kind: &str, name: &str, at: &str) {
    let mut body = json!({"type": kind, "userId": user, "timestamp": at});
    body[if kind == "track" { "event" } else { "name" }] = json!(name);
    send(server, body).await;
}

/// Four members of Acme (enterprise) and one of Globex, with product events placed around the
/// windows of the model below.
async fn seed(server: &TestServer) {
    for (user, group) in [("a", "acme"), ("b", "acme"), ("c", "acme"), ("d", "acme"), ("e", "globex")] {
        let email = format!("{user}@example.com");
        send(server, json!({"type": "identify", "userId": user, "traits": {"email": email}, "timestamp": "2024-06-01T09:00:00Z"}))
            .await;
        let traits =
            if group == "acme" { json!({"name": "Acme", "plan": "enterprise"}) } else { json!({"plan": "free"}) };
        send(server, json!({"type": "group", "userId": user, "groupId": group, "traits": traits, "timestamp": "2024-06-01T09:05:00Z"}))
            .await;
    }
    // The last 7 days are [06-23 12:00, 06-30 12:00); the 7 before, [06-16 12:00, 06-23 12:00).
    track(server, "a", "track", "Report Exported", "2024-06-29T10:00:00Z").await;
    track(server, "a", "track", "Report Exported", "2024-06-25T10:00:00Z").await;
    track(server, "a", "page", "Pricing", "2024-06-28T10:00:00Z").await;
    track(server, "b", "track", "Clicked", "2024-06-27T10:00:00Z").await;
    track(server, "c", "track", "Report Exported", "2024-06-20T10:00:00Z").await;
    track(server, "c", "track", "Clicked", "2024-06-18T10:00:00Z").await;
    track(server, "d", "page", "Home", "2024-06-10T10:00:00Z").await;
    // After `now`'s window ends: counted nowhere.
    track(server, "e", "track", "Report Exported", "2024-05-01T10:00:00Z").await;
}

fn model() -> Value {
    json!({"factors": [
        {"weight": 2, "factor": {"closeness": {}}},
        {"weight": 1, "factor": {"active_members": {"days": 7}}},
        {"weight": 1, "factor": {"trend": {"days": 7}}},
        {"weight": 1, "factor": {"event_count": {"event": "Report Exported", "days": 30, "target": 4}}},
        {"weight": 1, "factor": {"trait": {"key": "plan", "equals": "enterprise"}}},
        {"weight": 2, "factor": {"csm_rating": {}}}
    ]})
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn band_of(score: f64) -> &'static str {
    if score < 40.0 {
        "at_risk"
    } else if score < 70.0 {
        "needs_attention"
    } else {
        "healthy"
    }
}

/// The members' mean closeness score as the account page lists them.
fn mean_member_score(detail: &Value) -> f64 {
    let scores: Vec<f64> =
        detail["members"].as_array().unwrap().iter().map(|m| m["closeness"]["score"].as_f64().unwrap()).collect();
    scores.iter().sum::<f64>() / scores.len() as f64
}

async fn health_is_the_hand_computed_sum_of_its_factors() {
    let server = TestServer::start_with_clock(Clock::manual(NOW.parse::<Timestamp>().unwrap())).await;
    seed(&server).await;
    let (status, stored) = server.call(Method::PUT, "/api/health-model", &model()).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["bands"], json!({"at_risk_below": 40.0, "healthy_from": 70.0}), "default bands");
    assert_eq!(server.get("/api/health-model").await, stored);

    // Unrated: the rating is left out, so the weights are 2+1+1+1+1 = 6.
    let acme = server.get("/api/accounts/acme").await;
    assert_eq!(acme["rating"], Value::Null);
    let mean = mean_member_score(&acme);
    let factors = acme["health"]["factors"].as_array().unwrap();
    let expected = [
        (mean / 100.0, 100.0 * 2.0 / 6.0, "mean closeness"),
        (0.5, 100.0 / 6.0, "2 of 4 members"),
        (1.0, 100.0 / 6.0, "4 events against 2"),
        (0.75, 100.0 / 6.0, "3 of 4 wanted"),
        (1.0, 100.0 / 6.0, "plan is enterprise"),
    ];
    let mut sum = 0.0;
    for (factor, (value, share, detail)) in factors.iter().zip(expected) {
        assert!((factor["value"].as_f64().unwrap() - value).abs() < 0.001, "{factor}");
        assert_eq!(factor["max_points"].as_f64().unwrap(), round1(share), "{factor}");
        assert!((factor["points"].as_f64().unwrap() - round1(share * value)).abs() < 0.051, "{factor}");
        assert!(factor["detail"].as_str().unwrap().starts_with(detail), "{factor}");
        sum += share * value;
    }
    assert_eq!(factors[5]["value"], Value::Null);
    assert_eq!(factors[5]["points"], 0.0);
    assert_eq!(factors[5]["detail"], "not rated: left out");
    assert_eq!(acme["health"]["score"].as_f64().unwrap(), sum.round(), "{acme}");
    assert_eq!(acme["health"]["band"], band_of(sum.round()));

    // Rated 4 of 5: weights 8; closeness 25 points at most, the others 12.5, the rating 25.
    let (status, body) = server.call(Method::PUT, "/api/accounts/acme/rating", &json!({"rating": 4})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let acme = server.get("/api/accounts/acme").await;
    assert_eq!(acme["rating"], 4);
    let points: Vec<f64> =
        acme["health"]["factors"].as_array().unwrap().iter().map(|f| f["points"].as_f64().unwrap()).collect();
    assert_eq!(points[1..], [6.3, 12.5, 9.4, 12.5, 18.8], "0.5·12.5, 1·12.5, 0.75·12.5, 1·12.5, 0.75·25");
    let score = (25.0 * mean / 100.0 + 6.25 + 12.5 + 9.375 + 12.5 + 18.75).round();
    assert_eq!(acme["health"]["score"].as_f64().unwrap(), score, "{acme}");
    assert_eq!(acme["health"]["band"], band_of(score));

    // Globex: one member, no product event in either window, trait plan = free, unrated.
    let globex = server.get("/api/accounts/globex").await;
    let globex_score = (100.0 * 2.0 / 6.0 * mean_member_score(&globex) / 100.0).round();
    assert_eq!(globex["health"]["score"].as_f64().unwrap(), globex_score, "{globex}");
    assert_eq!(globex["health"]["band"], "at_risk");

    // Lists: by band, and by score either way.
    let list = server.get("/api/accounts?band=at_risk").await;
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|a| a["group_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["globex"]);
    let ids = |list: Value| -> Vec<String> {
        list.as_array().unwrap().iter().map(|a| a["group_id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(server.get("/api/accounts?sort=health").await), ["acme", "globex"]);
    assert_eq!(ids(server.get("/api/accounts?sort=health_asc").await), ["globex", "acme"]);
    assert_eq!(server.get("/api/accounts").await[0]["health"]["score"].as_f64().unwrap(), score);

    // The daily pass records one row per account and day; running it again replaces it.
    let report = server.run_jobs().await;
    assert_eq!(report.account_health, 2);
    server.run_jobs().await;
    let history = &server.get("/api/accounts/acme").await["health_history"];
    assert_eq!(history, &json!([{"date": "2024-06-30", "score": score as i64, "band": band_of(score)}]));
    assert_eq!(server.count_rows("SELECT count(*) FROM account_health_history").await, 2);

    // The web app shows the same: the score, band and breakdown, and the list by band.
    create_user(server.state.store.as_ref(), server.workspace, "csm@example.com", "correct horse battery")
        .await
        .unwrap();
    let mut browser = Browser::new(&server);
    browser.sign_in("csm@example.com", "correct horse battery").await;
    let page = browser.get("/accounts/acme").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&format!("<strong class=\"health-score\">{score}</strong>")), "{}", page.body);
    for text in ["Members active in the last 7 days", "2 of 4 members", "6.3 / 12.5", "18.8 / 25", "rated 4 of 5"] {
        assert!(page.body.contains(text), "{text}");
    }
    let page = browser.get("/accounts?band=at_risk").await;
    assert!(page.body.contains("globex") && !page.body.contains("/accounts/acme"), "{}", page.body);
    assert_eq!(browser.get("/accounts?band=doomed").await.status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

async fn bad_models_and_ratings_are_refused() {
    let server = TestServer::start().await;
    let at = "2024-06-01T09:00:00Z";
    send(&server, json!({"type": "identify", "userId": "a", "traits": {"email": "a@example.com"}, "timestamp": at}))
        .await;
    send(&server, json!({"type": "group", "userId": "a", "groupId": "acme", "timestamp": at})).await;
    let default = server.get("/api/health-model").await;
    assert!(!default["factors"].as_array().unwrap().is_empty(), "a default model until one is set");

    let cases = [
        (json!({"factors": [{"weight": 0, "factor": {"closeness": {}}}]}), "factors[0].weight"),
        (json!({"factors": [{"weight": 1, "factor": {"trend": {"days": 900}}}]}), "factors[0].factor.days"),
        (json!({"factors": []}), "factors"),
        (
            json!({"factors": [{"weight": 1, "factor": {"closeness": {}}}], "bands": {"at_risk_below": 90, "healthy_from": 10}}),
            "bands",
        ),
        (json!({"factors": [{"weight": 1, "factor": {"mood": {}}}]}), "body"),
        (json!({"factor": []}), "body"),
    ];
    for (body, field) in cases {
        let (status, answer) = server.call(Method::PUT, "/api/health-model", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["code"], "invalid_health_model", "{answer}");
        assert_eq!(answer["field"], field, "{answer}");
        assert!(!answer["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(server.get("/api/health-model").await, default, "nothing was stored");

    let (status, answer) = server.call(Method::PUT, "/api/accounts/acme/rating", &json!({"rating": 7})).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_rating")));
    let (status, _) = server.call(Method::PUT, "/api/accounts/nobody/rating", &json!({"rating": 3})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = server.call(Method::PUT, "/api/accounts/acme/rating", &json!({"rating": null})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = server.api("/api/accounts?band=doomed").await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_band")));
    let (status, answer) = server.api("/api/accounts?sort=vibes").await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_sort")));
    server.stop().await;
}

/// The at-risk list: Globex by its band; Acme, healthy, once its score fell 25 points from the
/// one recorded two days before; Initech, steady at 100, never.
async fn at_risk_by_band_or_by_a_fall() {
    let clock = Clock::manual(NOW.parse::<Timestamp>().unwrap());
    let server = TestServer::start_with_clock(clock.clone()).await;
    for (user, group, plan) in [("a", "acme", "enterprise"), ("g", "globex", "free"), ("i", "initech", "enterprise")] {
        let email = format!("{user}@example.com");
        let at = "2024-06-01T09:00:00Z";
        send(&server, json!({"type": "identify", "userId": user, "traits": {"email": email}, "timestamp": at})).await;
        send(
            &server,
            json!({"type": "group", "userId": user, "groupId": group, "traits": {"plan": plan}, "timestamp": at}),
        )
        .await;
    }
    let model = json!({"factors": [
        {"weight": 1, "factor": {"csm_rating": {}}},
        {"weight": 1, "factor": {"trait": {"key": "plan", "equals": "enterprise"}}}
    ]});
    let (status, body) = server.call(Method::PUT, "/api/health-model", &model).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for group in ["acme", "initech"] {
        server.call(Method::PUT, &format!("/api/accounts/{group}/rating"), &json!({"rating": 5})).await;
    }
    server.run_jobs().await;
    let listed = |list: Value| -> Vec<(String, String)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|a| (a["group_id"].as_str().unwrap().to_owned(), a["reason"].as_str().unwrap().to_owned()))
            .collect()
    };
    let pair = |group: &str, reason: &str| (group.to_owned(), reason.to_owned());
    assert_eq!(listed(server.get("/api/accounts/at-risk").await), [pair("globex", "band")]);

    // Two days later Acme's rating is 3 of 5: (0.5 + 1) / 2 = 75, healthy, but 25 below 100.
    clock.advance(jiff::SignedDuration::from_hours(48));
    server.call(Method::PUT, "/api/accounts/acme/rating", &json!({"rating": 3})).await;
    let list = server.get("/api/accounts/at-risk").await;
    assert_eq!(listed(list.clone()), [pair("globex", "band"), pair("acme", "dropped")]);
    assert_eq!(list[1]["health"]["score"], 75);
    assert_eq!(list[1]["health"]["band"], "healthy");
    assert_eq!((list[1]["dropped_from"].as_i64(), list[1]["dropped_since"].as_str()), (Some(100), Some("2024-06-30")));

    // The web app lists the same, saying what Acme fell from.
    create_user(server.state.store.as_ref(), server.workspace, "csm@example.com", "correct horse battery")
        .await
        .unwrap();
    let mut browser = Browser::new(&server);
    browser.sign_in("csm@example.com", "correct horse battery").await;
    let page = browser.get("/accounts?falling=1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("/accounts/acme") && page.body.contains("/accounts/globex"), "{}", page.body);
    assert!(!page.body.contains("/accounts/initech") && page.body.contains("fell from 100 since"), "{}", page.body);

    // A fall must be 30 points now; then a week after the 100 was recorded, it is forgotten.
    let mut strict = model.clone();
    strict["at_risk"] = json!({"drop_points": 30, "drop_days": 7});
    server.call(Method::PUT, "/api/health-model", &strict).await;
    assert_eq!(listed(server.get("/api/accounts/at-risk").await), [pair("globex", "band")]);
    server.call(Method::PUT, "/api/health-model", &model).await;
    clock.advance(jiff::SignedDuration::from_hours(6 * 24));
    assert_eq!(listed(server.get("/api/accounts/at-risk").await), [pair("globex", "band")]);
    server.stop().await;
}

backend_tests!(
    health_is_the_hand_computed_sum_of_its_factors,
    bad_models_and_ratings_are_refused,
    at_risk_by_band_or_by_a_fall
);
