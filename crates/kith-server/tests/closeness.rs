//! Closeness through the API: scores and buckets as the formula says, sorting and filtering by
//! closeness, losing touch, cadences and due dates, manual interactions, half-life changes,
//! deletion and suppression.

mod common;

use common::TestServer;
use jiff::{SignedDuration, Timestamp};
use kith_server::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const NOW: &str = "2024-07-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// The documented score: activity counts from the start of its (UTC) day with weight 1,
/// manual interactions from their time with their weight.
fn expected_score(interactions: &[(f64, &str)], half_life: f64) -> u8 {
    let tau = half_life / std::f64::consts::LN_2;
    let now_days = now().as_millisecond() as f64 / 86_400_000.0;
    let raw: f64 = interactions
        .iter()
        .map(|(days_ago, kind)| {
            let (t, weight) = match *kind {
                "activity" => ((now_days - days_ago).floor(), 1.0),
                "note" => (now_days - days_ago, 1.0),
                "email" => (now_days - days_ago, 2.0),
                _ => (now_days - days_ago, 3.0),
            };
            weight * (-(now_days - t) / tau).exp()
        })
        .sum();
    (100.0 * (1.0 - (-raw / 3.0).exp())).round() as u8
}

fn at(days_ago: f64) -> String {
    (now() - SignedDuration::from_secs_f64(days_ago * 86_400.0)).to_string()
}

fn identify(email: &str, days_ago: f64) -> Value {
    json!({"type":"identify","userId": email,"traits":{"email": email},"timestamp": at(days_ago)})
}

fn track(email: &str, days_ago: f64) -> Value {
    json!({"type":"track","userId": email,"event":"Used","timestamp": at(days_ago)})
}

async fn server() -> TestServer {
    TestServer::start_with_clock(Clock::manual(now())).await
}

fn emails(list: &Value) -> Vec<&str> {
    list["items"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap()).collect()
}

async fn scores_follow_the_formula_and_sort_closest_first() {
    let server = server().await;
    let mut batch = Vec::new();
    // daily: active every day of the last 20; weekly: once a week for 10 weeks; old: 200 days ago.
    batch.push(identify("daily@example.com", 0.1));
    for d in 1..20 {
        batch.push(track("daily@example.com", f64::from(d)));
    }
    batch.push(identify("weekly@example.com", 0.2));
    for w in 1..10 {
        batch.push(track("weekly@example.com", f64::from(w * 7)));
    }
    batch.push(identify("old@example.com", 200.0));
    // A burst: 50 events on one day count once.
    batch.push(identify("burst@example.com", 3.0));
    for i in 0..50 {
        batch.push(track("burst@example.com", 3.0 - f64::from(i) / 1000.0));
    }
    server.ingest("/v1/batch", &json!({"batch": batch})).await;

    let daily: Vec<(f64, &str)> = (0..20).map(|d| (if d == 0 { 0.1 } else { f64::from(d) }, "activity")).collect();
    let weekly: Vec<(f64, &str)> = (0..10).map(|w| (if w == 0 { 0.2 } else { f64::from(w * 7) }, "activity")).collect();
    for (email, interactions) in [
        ("daily@example.com", daily.clone()),
        ("weekly@example.com", weekly),
        ("old@example.com", vec![(200.0, "activity")]),
        ("burst@example.com", vec![(3.0, "activity")]),
    ] {
        let contact = server.contact(email).await;
        assert_eq!(contact["closeness"]["score"], expected_score(&interactions, 30.0), "{email}");
    }
    assert_eq!(server.timeline("burst@example.com").await[0]["hits"], 51);

    let sorted = server.get("/api/contacts?sort=closeness").await;
    assert_eq!(emails(&sorted), ["daily@example.com", "weekly@example.com", "burst@example.com", "old@example.com"]);
    let ascending = server.get("/api/contacts?sort=closeness_asc").await;
    assert_eq!(emails(&ascending)[0], "old@example.com");
    let page = server.get("/api/contacts?sort=closeness&limit=2").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = server.get(&format!("/api/contacts?sort=closeness&limit=2&cursor={cursor}")).await;
    assert_eq!(emails(&rest), ["burst@example.com", "old@example.com"]);

    // Buckets are exact score ranges.
    for bucket in ["close", "warm", "cooling", "cold"] {
        let list = server.get(&format!("/api/contacts?bucket={bucket}")).await;
        for contact in list["items"].as_array().unwrap() {
            assert_eq!(contact["closeness"]["bucket"], bucket, "{contact}");
        }
    }
    let mut total = 0;
    for bucket in ["close", "warm", "cooling", "cold"] {
        total += server.get(&format!("/api/contacts?bucket={bucket}")).await["items"].as_array().unwrap().len();
    }
    assert_eq!(total, 4, "every contact is in exactly one bucket");
    let (status, body) = server.api("/api/contacts?bucket=lukewarm").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_bucket")));

    // A new half-life recomputes every key.
    let (status, _) = server.call(Method::PATCH, "/api/workspace", &json!({"half_life_days": 7})).await;
    assert_eq!(status, StatusCode::OK);
    let contact = server.contact("daily@example.com").await;
    assert_eq!(contact["closeness"]["score"], expected_score(&daily, 7.0));

    // Time passing lowers scores without any write.
    server.state.clock.advance(SignedDuration::from_hours(24 * 30));
    let later = server.contact("daily@example.com").await;
    assert!(later["closeness"]["score"].as_u64() < contact["closeness"]["score"].as_u64());
    server.stop().await;
}

async fn manual_interactions_weigh_in_and_appear_on_the_timeline() {
    let server = server().await;
    server.ingest("/v1/identify", &identify("ada@example.com", 40.0)).await;
    let before = server.contact("ada@example.com").await;
    let path = "/api/contacts/ada@example.com/interactions";
    let (status, note) =
        server.call(Method::POST, path, &json!({"kind":"call","text":"Talked pricing","occurred_at": at(1.0)})).await;
    assert_eq!(status, StatusCode::CREATED, "{note}");
    assert_eq!(note["kind"], "call");
    let (status, _) = server.call(Method::POST, path, &json!({"kind":"meeting","text":"Onsite"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let after = server.contact("ada@example.com").await;
    assert_eq!(
        after["closeness"]["score"],
        expected_score(&[(40.0, "activity"), (1.0, "call"), (0.0, "meeting")], 30.0)
    );
    assert!(after["closeness"]["score"].as_u64() > before["closeness"]["score"].as_u64());
    let timeline = server.timeline("ada@example.com").await;
    let kinds: Vec<&str> = timeline.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["meeting", "call", "activity"]);
    assert_eq!(timeline[1]["description"], "Talked pricing");
    assert_eq!(after["last_interaction_at"], NOW);

    for bad in [
        json!({"kind":"activity","text":"x"}),
        json!({"kind":"call","text":"  "}),
        json!({"kind":"call","text":"x","occurred_at":"soon"}),
    ] {
        let (status, body) = server.call(Method::POST, path, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["code"].is_string());
    }
    let (status, _) = server
        .call(Method::POST, "/api/contacts/nobody@example.com/interactions", &json!({"kind":"note","text":"x"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

async fn losing_touch_lists_who_was_warm_within_90_days_and_is_not_any_more() {
    let server = server().await;
    let mut batch = Vec::new();
    // slipping: active every day 85–90 days ago (close then), silent since (cooling now).
    batch.push(identify("slipping@example.com", 90.0));
    for d in 85..90 {
        batch.push(track("slipping@example.com", f64::from(d)));
    }
    // returning: the same busy stretch, then a single visit 30 days ago that did not keep it
    // warm: the last warm moment is still within the window.
    batch.push(identify("returning@example.com", 89.5));
    for d in 85..90 {
        batch.push(track("returning@example.com", f64::from(d) - 0.5));
    }
    batch.push(track("returning@example.com", 30.0));
    // close: active every day now.
    batch.push(identify("close@example.com", 0.5));
    for d in 1..15 {
        batch.push(track("close@example.com", f64::from(d)));
    }
    // long-gone: very active a year ago.
    batch.push(identify("gone@example.com", 380.0));
    for d in 365..380 {
        batch.push(track("gone@example.com", f64::from(d)));
    }
    // never-warm: one visit 10 days ago.
    batch.push(identify("once@example.com", 10.0));
    server.ingest("/v1/batch", &json!({"batch": batch})).await;
    let losing = server.get("/api/contacts/losing-touch").await;
    assert_eq!(emails(&losing), ["returning@example.com", "slipping@example.com"], "closest first");
    let slipping = &losing["items"][0];
    assert!(["cooling", "cold"].contains(&slipping["closeness"]["bucket"].as_str().unwrap()));
    assert!(
        ["warm", "close"].contains(&server.contact("close@example.com").await["closeness"]["bucket"].as_str().unwrap())
    );
    assert!(server.contact("once@example.com").await["warm_until"].is_null(), "one visit never made it warm");
    // Someone who is warm again is no longer losing touch.
    for d in 0..6 {
        server.ingest("/v1/track", &track("slipping@example.com", f64::from(d) + 0.1)).await;
    }
    let losing = server.get("/api/contacts/losing-touch").await;
    assert_eq!(emails(&losing), ["returning@example.com"]);
    server.stop().await;
}

async fn cadences_make_contacts_due_and_any_interaction_resets_the_timer() {
    let server = server().await;
    let batch = json!({"batch": [identify("ada@example.com", 10.0), identify("bob@example.com", 2.0), identify("cy@example.com", 30.0)]});
    server.ingest("/v1/batch", &batch).await;
    let (status, contact) =
        server.call(Method::PUT, "/api/contacts/ada@example.com/cadence", &json!({"days": 7})).await;
    assert_eq!(status, StatusCode::OK, "{contact}");
    assert_eq!(contact["cadence_days"], 7);
    assert_eq!(contact["is_due"], true);
    assert_eq!(contact["next_due_at"], at(3.0).replace(".0Z", "Z"));
    server.call(Method::PUT, "/api/contacts/bob@example.com/cadence", &json!({"days": 7})).await;
    let due = server.get("/api/contacts/due").await;
    assert_eq!(emails(&due), ["ada@example.com"]);

    // Product activity resets the timer.
    server.ingest("/v1/track", &track("ada@example.com", 0.5)).await;
    assert!(emails(&server.get("/api/contacts/due").await).is_empty());
    // So does a manual interaction, after the clock moves on.
    server.state.clock.advance(SignedDuration::from_hours(24 * 8));
    assert_eq!(
        emails(&server.get("/api/contacts/due").await),
        ["bob@example.com", "ada@example.com"],
        "most overdue first"
    );
    server
        .call(Method::POST, "/api/contacts/bob@example.com/interactions", &json!({"kind":"email","text":"Checked in"}))
        .await;
    assert_eq!(emails(&server.get("/api/contacts/due").await), ["ada@example.com"]);

    // A rule gives every member of an audience a cadence; the contact's own cadence wins.
    server
        .ingest(
            "/v1/events",
            &json!({"type":"identify","userId":"cy@example.com","traits":{"email":"cy@example.com","vip":true},
                "context":{"personas":{"computation_class":"audience","computation_key":"vip"}},"timestamp": at(30.0)}),
        )
        .await;
    let (status, rule) =
        server.call(Method::PUT, "/api/cadence-rules", &json!({"target":"audience","key":"vip","days":14})).await;
    assert_eq!(status, StatusCode::OK, "{rule}");
    let cy = server.contact("cy@example.com").await;
    assert_eq!(cy["effective_cadence_days"], 14);
    assert_eq!(cy["cadence_days"], Value::Null);
    assert!(emails(&server.get("/api/contacts/due").await).contains(&"cy@example.com"));
    let filtered = server.get("/api/contacts?due=true&audience=vip").await;
    assert_eq!(emails(&filtered), ["cy@example.com"]);
    let (status, _) = server.call(Method::DELETE, &format!("/api/cadence-rules/{}", rule["id"]), &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.contact("cy@example.com").await["effective_cadence_days"], Value::Null);

    let (status, body) = server.call(Method::PUT, "/api/contacts/ada@example.com/cadence", &json!({"days": 0})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_cadence")));
    let (status, contact) =
        server.call(Method::PUT, "/api/contacts/ada@example.com/cadence", &json!({"days": null})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(contact["next_due_at"], Value::Null);
    server.stop().await;
}

async fn account_rules_give_members_a_cadence() {
    let server = server().await;
    server.ingest("/v1/identify", &identify("ada@example.com", 20.0)).await;
    server
        .ingest(
            "/v1/group",
            &json!({"userId":"ada@example.com","groupId":"acme","traits":{"name":"Acme"},"timestamp": at(20.0)}),
        )
        .await;
    server.call(Method::PUT, "/api/cadence-rules", &json!({"target":"account","key":"acme","days":10})).await;
    assert_eq!(server.contact("ada@example.com").await["effective_cadence_days"], 10);
    assert_eq!(emails(&server.get("/api/contacts/due").await), ["ada@example.com"]);
    // A member who joins later inherits it too.
    server.ingest("/v1/identify", &identify("bob@example.com", 1.0)).await;
    server.ingest("/v1/group", &json!({"userId":"bob@example.com","groupId":"acme","timestamp": at(1.0)})).await;
    assert_eq!(server.contact("bob@example.com").await["effective_cadence_days"], 10);
    let account = server.get("/api/accounts/acme").await;
    assert_eq!(account["member_count"], 2);
    assert_eq!(account["members"][0]["email"], "bob@example.com", "closest first");
    assert!(account["mean_score"].as_f64().unwrap() > 0.0);
    assert_eq!(account["closeness"]["score"], account["members"][0]["closeness"]["score"]);
    server.stop().await;
}

async fn deleting_a_contact_erases_everything_and_can_suppress_its_email() {
    let server = server().await;
    server.ingest("/v1/identify", &identify("ada@example.com", 2.0)).await;
    server.ingest("/v1/track", &track("ada@example.com", 1.0)).await;
    server.ingest("/v1/group", &json!({"userId":"ada@example.com","groupId":"acme","timestamp": at(1.0)})).await;
    let id = server.contact("ada@example.com").await["id"].clone();
    let (status, _) = server.call(Method::DELETE, "/api/contacts/ada@example.com?suppress=true", &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.api("/api/contacts/ada@example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.api(&format!("/api/contacts/{id}/events")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(server.get("/api/accounts/acme").await["member_count"], 0);

    // Suppressed: future identifies are acknowledged and kept out.
    let answer = server.ingest("/v1/identify", &identify("ada@example.com", 0.5)).await;
    assert_eq!(answer["success"], true);
    assert!(server.emails().await.is_empty());
    // Its old user id no longer reaches anyone: a track is pending, not attached.
    server.ingest("/v1/track", &track("ada@example.com", 0.2)).await;
    assert!(server.emails().await.is_empty());
    server.stop().await;
}

async fn a_segment_deletion_request_erases_the_user() {
    let server = server().await;
    server.ingest("/v1/identify", &identify("del@example.com", 2.0)).await;
    server.ingest("/v1/identify", &identify("keep@example.com", 2.0)).await;
    server
        .ingest(
            "/v1/events",
            &json!({"type":"delete","userId":"del@example.com","timestamp": at(0.1),"messageId":"del-1"}),
        )
        .await;
    assert_eq!(server.emails().await, ["keep@example.com"]);
    // Not suppressed: the user may come back.
    server.ingest("/v1/identify", &identify("del@example.com", 0.05)).await;
    assert_eq!(server.emails().await.len(), 2);
    server.stop().await;
}

/// The closeness formula computed here, independently of kith's code: `key = ln Σ w·exp(t/τ)` and
/// `score = round(100·(1 − exp(−raw/3)))` with `raw = exp(key − now/τ)`, t in days since
/// 1970-01-01. Product activity counts once per calendar day of the workspace's zone, at the start
/// of that date (`(date, "activity")`); manual interactions at their time.
struct Formula<'a> {
    zone: &'a str,
    half_life: f64,
    weights: [(&'a str, f64); 5],
}

impl Formula<'_> {
    fn weight(&self, kind: &str) -> f64 {
        self.weights.iter().find(|(k, _)| *k == kind).unwrap().1
    }

    fn key(&self, activity: &[&str], manual: &[(&str, &str)]) -> f64 {
        let tau = self.half_life / std::f64::consts::LN_2;
        let epoch = jiff::civil::date(1970, 1, 1);
        let mut days: Vec<f64> = activity
            .iter()
            .map(|time| {
                let date = time.parse::<Timestamp>().unwrap().in_tz(self.zone).unwrap().date();
                f64::from(date.since(epoch).unwrap().get_days())
            })
            .collect();
        days.sort_by(f64::total_cmp);
        days.dedup();
        let activity = days.iter().map(|t| (self.weight("activity"), *t));
        let manual = manual.iter().map(|(kind, time)| {
            (self.weight(kind), time.parse::<Timestamp>().unwrap().as_millisecond() as f64 / 86_400_000.0)
        });
        let terms: Vec<(f64, f64)> = activity.chain(manual).collect();
        // exp(t/τ) overflows for t in days since 1970: factor out the largest exponent.
        let largest = terms.iter().map(|(_, t)| t / tau).fold(f64::MIN, f64::max);
        largest + terms.iter().map(|(w, t)| w * (t / tau - largest).exp()).sum::<f64>().ln()
    }

    fn score(&self, key: f64) -> u64 {
        let tau = self.half_life / std::f64::consts::LN_2;
        let now = now().as_millisecond() as f64 / 86_400_000.0;
        let raw = (key - now / tau).exp();
        (100.0 * (1.0 - (-raw / 3.0).exp())).round() as u64
    }
}

async fn closeness_in_any_zone_with_any_weights_is_the_formula_of_the_spec() {
    // Times chosen around midnight in Los Angeles (UTC−7) and Tokyo (UTC+9), so that the
    // zone decides which events share a day.
    let activity = [
        "2024-06-20T03:00:00Z",
        "2024-06-25T06:30:00Z",
        "2024-06-25T07:30:00Z",
        "2024-06-25T14:30:00Z",
        "2024-06-25T15:30:00Z",
        "2024-06-30T23:00:00Z",
    ];
    let manual =
        [("note", "2024-06-28T10:00:00Z"), ("email", "2024-06-29T15:00:00Z"), ("call", "2024-06-30T20:00:00Z")];
    for zone in ["America/Los_Angeles", "Asia/Tokyo", "UTC"] {
        let server = server().await;
        server.set_time_zone(zone).await;
        let mut batch = vec![
            json!({"type":"identify","userId":"u1","traits":{"email":"ada@example.com"},"timestamp": activity[0]}),
        ];
        for time in &activity[1..] {
            batch.push(json!({"type":"track","userId":"u1","event":"Used","timestamp": time}));
        }
        server.ingest("/v1/batch", &json!({ "batch": batch })).await;
        let mut formula = Formula {
            zone,
            half_life: 30.0,
            weights: [("activity", 1.0), ("note", 1.0), ("email", 2.0), ("call", 3.0), ("meeting", 3.0)],
        };
        let check = |formula: &Formula, manual: &[(&str, &str)], closeness: &Value, when: &str| {
            let expected = formula.key(&activity, manual);
            let key = closeness["key"].as_f64().unwrap();
            assert!((key - expected).abs() < 1e-9, "{zone}, {when}: key {key}, the formula says {expected}");
            assert_eq!(closeness["score"], formula.score(expected), "{zone}, {when}");
        };
        check(&formula, &[], &server.contact("ada@example.com").await["closeness"], "product activity");
        for (kind, time) in manual {
            let (status, body) = server
                .call(
                    Method::POST,
                    "/api/contacts/ada@example.com/interactions",
                    &json!({"kind": kind, "text": kind, "occurred_at": time}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        check(&formula, &manual, &server.contact("ada@example.com").await["closeness"], "default weights");

        // New weights and a new half-life apply to what is already stored.
        let weights = json!({"activity": 2, "note": 3, "email": 5, "call": 1});
        let (status, body) = server.call(Method::PATCH, "/api/workspace", &json!({"weights": weights})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        formula.weights = [("activity", 2.0), ("note", 3.0), ("email", 5.0), ("call", 1.0), ("meeting", 3.0)];
        check(&formula, &manual, &server.contact("ada@example.com").await["closeness"], "new weights");
        let (status, body) = server.call(Method::PATCH, "/api/workspace", &json!({"half_life_days": 10})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        formula.half_life = 10.0;
        check(&formula, &manual, &server.contact("ada@example.com").await["closeness"], "new weights and half-life");
        server.stop().await;
    }
}

async fn an_account_shows_its_closest_member_and_the_mean_of_its_members() {
    let server = server().await;
    // Members from close to cold; none at zero, so that each one counts in the mean.
    let members: [(&str, &[f64]); 4] = [
        ("ada@example.com", &[0.5, 1.0, 2.0, 3.0, 4.0, 5.0]),
        ("bob@example.com", &[6.0, 20.0]),
        ("cy@example.com", &[45.0]),
        ("dee@example.com", &[100.0, 101.0, 102.0]),
    ];
    let mut batch = Vec::new();
    for (email, days) in members {
        batch.push(identify(email, days[days.len() - 1]));
        for day in &days[..days.len() - 1] {
            batch.push(track(email, *day));
        }
        batch.push(json!({"type":"group","userId": email,"groupId":"acme","timestamp": at(days[0])}));
    }
    server.ingest("/v1/batch", &json!({ "batch": batch })).await;
    let mut scores = Vec::new();
    for (email, days) in members {
        let interactions: Vec<(f64, &str)> = days.iter().map(|d| (*d, "activity")).collect();
        let score = server.contact(email).await["closeness"]["score"].as_u64().unwrap();
        assert_eq!(score, u64::from(expected_score(&interactions, 30.0)), "{email}");
        scores.push(score as f64);
    }
    let account = server.get("/api/accounts/acme").await;
    assert_eq!(account["member_count"], 4);
    let mean = (scores.iter().sum::<f64>() / 4.0 * 10.0).round() / 10.0;
    assert_eq!(account["mean_score"].as_f64().unwrap(), mean, "the mean of {scores:?}");
    assert_eq!(account["closeness"]["score"].as_f64().unwrap(), scores[0], "the closest member's");
    server.stop().await;
}

crate::backend_tests!(
    scores_follow_the_formula_and_sort_closest_first,
    manual_interactions_weigh_in_and_appear_on_the_timeline,
    losing_touch_lists_who_was_warm_within_90_days_and_is_not_any_more,
    cadences_make_contacts_due_and_any_interaction_resets_the_timer,
    account_rules_give_members_a_cadence,
    deleting_a_contact_erases_everything_and_can_suppress_its_email,
    a_segment_deletion_request_erases_the_user,
    closeness_in_any_zone_with_any_weights_is_the_formula_of_the_spec,
    an_account_shows_its_closest_member_and_the_mean_of_its_members,
);
