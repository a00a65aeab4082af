//! Nudges: rules on action and inaction, firing once per occurrence; durable outbound deliveries
//! with retries; outbound Segment track calls to a second kith; the daily digest; email over SMTP.
//! Time is driven by the test's clock and jobs run on demand.

mod common;

use common::outbound::{Receiver, SmtpSink};
use common::{Options, TestServer};
use jiff::{SignedDuration, Timestamp};
use kith_server::jobs::delivery::SmtpConfig;
use kith_server::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const T0: &str = "2024-07-01T09:00:00Z";

fn t0() -> Timestamp {
    T0.parse().unwrap()
}

fn at(offset_hours: f64) -> String {
    (t0() + SignedDuration::from_secs_f64(offset_hours * 3600.0)).to_string()
}

async fn server() -> TestServer {
    TestServer::start_with_clock(Clock::manual(t0())).await
}

async fn identify(server: &TestServer, email: &str, plan: &str, hours: f64) {
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": email, "traits": {"email": email, "name": email.split('@').next().unwrap(), "plan": plan},
                "timestamp": at(hours)}),
        )
        .await;
}

async fn track(server: &TestServer, email: &str, event: &str, properties: Value, hours: f64, message_id: &str) {
    server
        .ingest(
            "/v1/track",
            &json!({"userId": email, "event": event, "properties": properties, "timestamp": at(hours), "messageId": message_id}),
        )
        .await;
}

async fn create_rule(server: &TestServer, rule: Value) -> Value {
    let (status, body) = server.call(Method::POST, "/api/rules", &rule).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

fn advance(server: &TestServer, hours: f64) {
    server.state.clock.advance(SignedDuration::from_secs_f64(hours * 3600.0));
}

async fn slack_me_when_an_enterprise_user_signs_up_but_invites_nobody_within_two_days() {
    let slack = Receiver::start().await;
    let server = server().await;
    let rule = create_rule(
        &server,
        json!({
            "name": "Enterprise signup without a teammate",
            "when": {"event": {"name": "Signed Up", "where": {"plan": "enterprise"}}},
            "unless": {"event": "Invited Teammate", "within_hours": 48},
            "then": [{"webhook": {"url": format!("{}/slack", slack.url), "text": "{name} ({email}) signed up 2 days ago and invited nobody"}}]
        }),
    )
    .await;
    for (email, plan) in
        [("ada@example.com", "enterprise"), ("bob@example.com", "enterprise"), ("cy@example.com", "free")]
    {
        identify(&server, email, plan, 0.0).await;
        track(&server, email, "Signed Up", json!({"plan": plan}), 0.0, &format!("signup-{email}")).await;
    }
    advance(&server, 20.0);
    track(&server, "bob@example.com", "Invited Teammate", json!({}), 20.0, "invite-bob").await;

    assert_eq!(server.run_jobs().await.nudges.fired, 0, "nothing before the two days are up");
    assert!(slack.received().is_empty());

    advance(&server, 29.0);
    // Two runners at once (as two nodes would be): still one nudge.
    let (first, second) = tokio::join!(server.run_jobs(), server.run_jobs());
    let fired = first.nudges.fired + second.nudges.fired;
    let cancelled = first.nudges.cancelled + second.nudges.cancelled;
    assert_eq!((fired, cancelled), (1, 1), "{first:?} {second:?}");
    assert_eq!(first.deliveries.sent + second.deliveries.sent, 1);
    let received = slack.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/slack");
    assert_eq!(received[0].json["text"], "ada (ada@example.com) signed up 2 days ago and invited nobody");
    assert_eq!(received[0].json["contact"]["email"], "ada@example.com");

    // A replay of the trigger and more passes change nothing: once per occurrence.
    track(&server, "ada@example.com", "Signed Up", json!({"plan": "enterprise"}), 0.0, "signup-ada@example.com").await;
    advance(&server, 100.0);
    server.run_jobs().await;
    assert_eq!(slack.received().len(), 1);

    let timeline = server.timeline("ada@example.com").await;
    assert_eq!(timeline[0]["kind"], "nudge");
    assert!(timeline[0]["description"].as_str().unwrap().contains("Enterprise signup without a teammate"));
    let detail = server.get(&format!("/api/rules/{}", rule["id"])).await;
    let mut states: Vec<&str> =
        detail["firings"].as_array().unwrap().iter().map(|f| f["state"].as_str().unwrap()).collect();
    states.sort();
    assert_eq!(states, ["cancelled", "fired"]);
    let sent = server.get("/api/deliveries?status=sent").await;
    assert_eq!(sent.as_array().unwrap().len(), 1);
    server.stop().await;
}

async fn rules_are_managed_through_the_api_and_refuse_nonsense() {
    let server = server().await;
    let rule = create_rule(
        &server,
        json!({"name": "Due", "when": {"becomes_due": {}}, "then": [{"webhook": {"url": "https://hooks.example/x"}}]}),
    )
    .await;
    assert_eq!(rule["enabled"], true);
    let list = server.get("/api/rules").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let mut disabled = rule.clone();
    disabled["enabled"] = json!(false);
    for field in ["id", "created_at", "updated_at"] {
        disabled.as_object_mut().unwrap().remove(field);
    }
    let (status, body) = server.call(Method::PUT, &format!("/api/rules/{}", rule["id"]), &disabled).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], false);
    for bad in [
        json!({"name": "x", "when": {"teleported": {}}, "then": [{"webhook": {"url": "https://x"}}]}),
        json!({"name": "x", "when": {"becomes_due": {}}, "then": []}),
        json!({"name": "x", "when": {"becomes_due": {}}, "then": [{"webhook": {"url": "gopher://x"}}]}),
        json!({"name": "x", "when": {"becomes_due": {}}, "unless": {"event": "Y", "within_hours": 0}, "then": [{"segment": {}}]}),
        json!({"name": "x", "when": {"becomes_due": {}}, "then": [{"email": {"to": "nobody"}}]}),
    ] {
        let (status, body) = server.call(Method::POST, "/api/rules", &bad).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_rule")), "{bad}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    let (status, _) = server.call(Method::DELETE, &format!("/api/rules/{}", rule["id"]), &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.api(&format!("/api/rules/{}", rule["id"])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

async fn deliveries_retry_through_500_and_429_then_succeed_and_survive_a_restart() {
    let hook = Receiver::start().await;
    hook.answer(&[(500, None), (429, Some("600"))]);
    let clock = Clock::manual(t0());
    let server = TestServer::start_with_clock(clock.clone()).await;
    create_rule(
        &server,
        json!({"name": "Signups", "when": {"event": {"name": "Signed Up"}}, "then": [{"webhook": {"url": hook.url}}]}),
    )
    .await;
    identify(&server, "ada@example.com", "pro", 0.0).await;
    track(&server, "ada@example.com", "Signed Up", json!({}), 0.0, "s1").await;

    let report = server.run_jobs().await;
    assert_eq!((report.deliveries.sent, report.deliveries.retried), (0, 1), "500: retried later");
    let pending = server.get("/api/deliveries?status=pending").await;
    assert_eq!(pending[0]["attempts"], 1);
    assert!(pending[0]["last_error"].as_str().unwrap().starts_with("500"));

    // A restart loses nothing that was queued.
    let server = server.restart(Options { clock: Some(clock.clone()), ..Options::default() }).await;
    clock.advance(SignedDuration::from_secs(60));
    let report = server.run_jobs().await;
    assert_eq!(report.deliveries.retried, 1, "429: retried after its Retry-After");
    let pending = server.get("/api/deliveries?status=pending").await;
    let next: Timestamp = pending[0]["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(next >= clock.now() + SignedDuration::from_secs(600), "Retry-After: 600 honoured ({next})");

    clock.advance(SignedDuration::from_secs(5 * 60));
    assert_eq!(server.run_jobs().await.deliveries.attempted(), 0, "not before Retry-After");
    clock.advance(SignedDuration::from_secs(6 * 60));
    assert_eq!(server.run_jobs().await.deliveries.sent, 1);
    assert_eq!(hook.received().len(), 3);
    let sent = server.get("/api/deliveries?status=sent").await;
    assert_eq!(sent[0]["attempts"], 3);
    server.stop().await;
}

async fn deliveries_give_up_on_other_4xx_and_after_four_hours_and_can_be_retried() {
    let hook = Receiver::start().await;
    let server = server().await;
    create_rule(
        &server,
        json!({"name": "R", "when": {"event": {"name": "Pinged"}}, "then": [{"webhook": {"url": hook.url}}]}),
    )
    .await;
    identify(&server, "ada@example.com", "pro", 0.0).await;

    hook.answer(&[(404, None)]);
    track(&server, "ada@example.com", "Pinged", json!({}), 0.0, "p1").await;
    let report = server.run_jobs().await;
    assert_eq!(report.deliveries.failed, 1, "404 will not get better");
    let failed = server.get("/api/deliveries?status=failed").await;
    assert!(failed[0]["last_error"].as_str().unwrap().starts_with("404"));
    let (status, _) =
        server.call(Method::POST, &format!("/api/deliveries/{}/retry", failed[0]["id"]), &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(server.run_jobs().await.deliveries.sent, 1, "retried by hand, the receiver now answers 200");

    hook.answer(&vec![(503, None); 200]);
    track(&server, "ada@example.com", "Pinged", json!({}), 0.5, "p2").await;
    let mut given_up = false;
    for _ in 0..200 {
        advance(&server, 0.25);
        if server.run_jobs().await.deliveries.failed == 1 {
            given_up = true;
            break;
        }
    }
    assert!(given_up, "503 forever: given up");
    // The delivery is queued by the first pass, 15 minutes after t0, and retried while its
    // next attempt (at most 45 minutes away: 30 minutes of backoff stretched by jitter) falls
    // within four hours of that; passes run every 15 minutes. So it is given up between
    // 3 h 15 and 4 h after it was queued.
    let elapsed = server.state.clock.now().duration_since(t0());
    assert!(
        elapsed >= SignedDuration::from_mins(15 + 195) && elapsed <= SignedDuration::from_mins(15 + 240),
        "given up {elapsed:?} after being queued, not about four hours"
    );
    let failed = server.get("/api/deliveries?status=failed").await;
    assert!(failed[0]["attempts"].as_i64().unwrap() > 3);
    assert!(failed[0]["last_error"].as_str().unwrap().starts_with("503"));
    let (status, body) = server.api("/api/deliveries?status=lost").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_status")));
    server.stop().await;
}

async fn contact_went_cold_and_audiences_go_back_to_segment_on_a_second_kith() {
    // The second kith plays Segment: it receives kith's track calls on /v1/batch.
    let segment = TestServer::start().await;
    segment
        .ingest("/v1/identify", &json!({"userId":"ada","traits":{"email":"ada@example.com"},"timestamp": at(-24.0)}))
        .await;
    let server = server().await;
    let (status, body) = server
        .call(
            Method::PATCH,
            "/api/workspace",
            &json!({"segment_host": segment.url, "segment_write_key": segment.write_key}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["segment_write_key_set"], true);

    let mut batch =
        vec![json!({"type":"identify","userId":"ada","traits":{"email":"ada@example.com"},"timestamp": at(0.0)})];
    for day in 1..15 {
        batch.push(json!({"type":"track","userId":"ada","event":"Used","timestamp": at(-24.0 * f64::from(day))}));
    }
    batch.push(
        json!({"type":"identify","userId":"ada","traits":{"email":"ada@example.com","vip":true},"timestamp": at(0.0),
        "context":{"personas":{"computation_class":"audience","computation_key":"vip","computation_id":"aud_1"}}}),
    );
    server.ingest("/v1/batch", &json!({"batch": batch})).await;
    assert_eq!(server.contact("ada@example.com").await["closeness"]["bucket"], "close");
    let report = server.run_jobs().await;
    assert_eq!(report.nudges.bucket_changes, 1);
    assert_eq!(report.deliveries.sent, 2, "{report:?}");

    advance(&server, 24.0 * 200.0);
    let report = server.run_jobs().await;
    assert_eq!(report.nudges.bucket_changes, 1, "close straight to cold after 200 silent days");
    assert_eq!(report.deliveries.sent, 1);
    assert_eq!(server.run_jobs().await.deliveries.attempted(), 0, "each change is reported once");

    let contact = segment.contact("ada@example.com").await;
    let events = segment.get(&format!("/api/contacts/{}/events", contact["id"])).await;
    let names: Vec<&str> = events["items"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(names.contains(&"Contact Became Close"), "{names:?}");
    assert!(names.contains(&"Contact Went Cold"), "{names:?}");
    assert!(names.contains(&"Audience Entered"), "{names:?}");
    let cold = events["items"].as_array().unwrap().iter().find(|e| e["name"] == "Contact Went Cold").unwrap();
    assert_eq!(cold["payload"]["userId"], "ada");
    assert_eq!(cold["properties"]["to"], "cold");
    assert_eq!(cold["payload"]["context"]["library"]["name"], "kith");
    // The receiving kith stores kith's reports without counting them as the person's activity.
    assert_eq!(segment.timeline("ada@example.com").await.len(), 1);
    server.stop().await;
    segment.stop().await;
}

async fn nudge_sent_and_bucket_and_due_rules_fire_once() {
    let segment = Receiver::start().await;
    let hook = Receiver::start().await;
    let server = server().await;
    server
        .call(Method::PATCH, "/api/workspace", &json!({"segment_host": segment.url, "segment_write_key": "wk_out"}))
        .await;
    create_rule(&server, json!({"name": "Cooling", "when": {"bucket_changed": {"to": "cooling"}}, "then": [{"webhook": {"url": hook.url}}]}))
        .await;
    create_rule(&server, json!({"name": "Due", "when": {"becomes_due": {}}, "then": [{"webhook": {"url": hook.url}}]}))
        .await;
    identify(&server, "ada@example.com", "pro", 0.0).await;
    server.call(Method::PUT, "/api/contacts/ada@example.com/cadence", &json!({"days": 3})).await;

    let report = server.run_jobs().await;
    assert_eq!(report.nudges.fired, 1, "cold → cooling on the first visit: {report:?}");
    advance(&server, 24.0 * 4.0);
    let report = server.run_jobs().await;
    assert_eq!(report.nudges.became_due, 1);
    assert_eq!(report.nudges.fired, 1);
    advance(&server, 1.0);
    assert_eq!(server.run_jobs().await.nudges.fired, 0, "due once per due date");
    let texts: Vec<String> = hook.received().iter().map(|r| r.json["trigger"].as_str().unwrap().to_owned()).collect();
    assert_eq!(texts, ["became cooling", "became due"]);

    // Every nudge is reported to Segment as Nudge Sent, with Basic auth and the contact's ids.
    let calls: Vec<Value> =
        segment.received().iter().flat_map(|r| r.json["batch"].as_array().unwrap().clone()).collect();
    let nudges: Vec<&Value> = calls.iter().filter(|c| c["event"] == "Nudge Sent").collect();
    assert_eq!(nudges.len(), 2);
    assert_eq!(nudges[0]["userId"], "ada@example.com");
    assert_eq!(nudges[0]["context"]["traits"]["email"], "ada@example.com");
    let auth = segment.received()[0].headers["authorization"].to_str().unwrap().to_owned();
    assert_eq!(auth, common::basic("wk_out"));
    assert_eq!(segment.received()[0].path, "/v1/batch");
    server.stop().await;
}

async fn the_daily_digest_goes_once_a_day_at_the_local_time() {
    let hook = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let clock = Clock::manual("2024-07-01T06:30:00Z".parse().unwrap());
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        smtp: Some(SmtpConfig { url: smtp.url.clone(), from: "kith <kith@example.com>".into() }),
        ..Options::default()
    })
    .await;
    let (status, body) = server
        .call(
            Method::PATCH,
            "/api/workspace",
            &json!({"time_zone": "Europe/Paris", "digest_time": "09:00", "digest_webhook_url": hook.url, "digest_email": "Founder@Example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["digest_email"], "founder@example.com");
    server
        .ingest("/v1/identify", &json!({"userId":"a","traits":{"email":"late@example.com","name":"Late"},"timestamp":"2024-06-01T10:00:00Z"}))
        .await;
    server.call(Method::PUT, "/api/contacts/late@example.com/cadence", &json!({"days": 7})).await;

    // 08:30 in Paris: not yet.
    assert_eq!(server.run_jobs().await.digests, 0);
    clock.advance(SignedDuration::from_mins(40));
    let report = server.run_jobs().await;
    assert_eq!(report.digests, 1);
    assert_eq!(report.deliveries.sent, 2);
    let text = hook.received()[0].json["text"].as_str().unwrap().to_owned();
    assert!(text.contains("Due a touch:\n• Late <late@example.com>"), "{text}");
    assert!(text.contains("Losing touch: nobody."), "{text}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].to[0].contains("founder@example.com"));
    assert!(mails[0].data.contains("Subject: kith digest"), "{}", mails[0].data);

    clock.advance(SignedDuration::from_hours(3));
    assert_eq!(server.run_jobs().await.digests, 0, "once a day");
    clock.advance(SignedDuration::from_hours(21));
    assert_eq!(server.run_jobs().await.digests, 1, "and again the next day");
    let (status, body) = server.call(Method::PATCH, "/api/workspace", &json!({"digest_time": "25:99"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_digest_time")));
    server.stop().await;
}

async fn email_actions_go_through_smtp() {
    let smtp = SmtpSink::start().await;
    let server = TestServer::start_with(Options {
        clock: Some(Clock::manual(t0())),
        smtp: Some(SmtpConfig { url: smtp.url.clone(), from: "kith <kith@example.com>".into() }),
        ..Options::default()
    })
    .await;
    create_rule(
        &server,
        json!({"name": "VIP entered", "when": {"audience_entered": {"audience": "vip"}},
            "then": [{"email": {"to": "sales@example.com", "subject": "{name} is a VIP now", "body": "Call {email}."}}]}),
    )
    .await;
    server
        .ingest(
            "/v1/identify",
            &json!({"userId":"ada","traits":{"email":"ada@example.com","name":"Ada","vip":true},"timestamp": at(0.0),
                "context":{"personas":{"computation_class":"audience","computation_key":"vip"}}}),
        )
        .await;
    assert_eq!(server.run_jobs().await.deliveries.sent, 1);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].to[0].contains("sales@example.com"));
    assert!(mails[0].data.contains("Subject: Ada is a VIP now"), "{}", mails[0].data);
    assert!(mails[0].data.contains("Call ada@example.com."));
    server.stop().await;
}

async fn an_email_action_without_smtp_fails_visibly() {
    let server = server().await;
    create_rule(
        &server,
        json!({"name": "R", "when": {"event": {"name": "X"}}, "then": [{"email": {"to": "a@example.com"}}]}),
    )
    .await;
    identify(&server, "ada@example.com", "pro", 0.0).await;
    track(&server, "ada@example.com", "X", json!({}), 0.0, "x1").await;
    assert_eq!(server.run_jobs().await.deliveries.failed, 1);
    let failed = server.get("/api/deliveries?status=failed").await;
    assert!(failed[0]["last_error"].as_str().unwrap().contains("SMTP"));
    server.stop().await;
}

async fn one_audience_entry_reaching_a_rule_twice_fires_once() {
    let hook = Receiver::start().await;
    let server = server().await;
    create_rule(
        &server,
        json!({"name": "VIP", "when": {"audience_entered": {"audience": "vip"}}, "then": [{"webhook": {"url": hook.url}}]}),
    )
    .await;
    let personas = json!({"computation_class": "audience", "computation_key": "vip"});
    // Engage reports the same entry as an identify and as a track, with two messageIds.
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "ada", "traits": {"email": "ada@example.com", "vip": true}, "timestamp": at(0.0),
                "messageId": "entry-identify", "context": {"personas": personas}}),
        )
        .await;
    server
        .ingest(
            "/v1/track",
            &json!({"userId": "ada", "event": "Audience Entered", "properties": {"audience_key": "vip", "vip": true},
                "timestamp": at(0.0), "messageId": "entry-track", "context": {"personas": personas}}),
        )
        .await;
    let report = server.run_jobs().await;
    assert_eq!((report.nudges.fired, report.deliveries.sent), (1, 1), "{report:?}");
    // A later entry is another occurrence.
    advance(&server, 3.0);
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "ada", "traits": {"email": "ada@example.com", "vip": false}, "timestamp": at(1.0),
                "context": {"personas": personas}}),
        )
        .await;
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "ada", "traits": {"email": "ada@example.com", "vip": true}, "timestamp": at(2.0),
                "context": {"personas": personas}}),
        )
        .await;
    assert_eq!(server.run_jobs().await.nudges.fired, 1);
    assert_eq!(hook.received().len(), 2);
    server.stop().await;
}

async fn the_inaction_window_counts_only_what_follows_the_trigger_within_the_delay() {
    let hook = Receiver::start().await;
    let server = server().await;
    create_rule(
        &server,
        json!({"name": "No invite", "when": {"event": {"name": "Signed Up"}},
            "unless": {"event": "Invited Teammate", "within_hours": 48},
            "then": [{"webhook": {"url": hook.url, "text": "{email}"}}]}),
    )
    .await;
    for email in ["before@example.com", "inside@example.com", "after@example.com"] {
        identify(&server, email, "pro", -1.0).await;
    }
    // An invite a minute before the trigger does not count.
    track(&server, "before@example.com", "Invited Teammate", json!({}), -1.0 / 60.0, "invite-before").await;
    for email in ["before@example.com", "inside@example.com", "after@example.com"] {
        track(&server, email, "Signed Up", json!({}), 0.0, &format!("signup-{email}")).await;
    }
    advance(&server, 48.0 + 2.0 / 60.0);
    // A minute inside the window, and a minute after it (arriving before the firing is due).
    track(&server, "inside@example.com", "Invited Teammate", json!({}), 48.0 - 1.0 / 60.0, "invite-inside").await;
    track(&server, "after@example.com", "Invited Teammate", json!({}), 48.0 + 1.0 / 60.0, "invite-after").await;
    let report = server.run_jobs().await;
    assert_eq!((report.nudges.fired, report.nudges.cancelled), (2, 1), "{report:?}");
    let mut nudged: Vec<String> = hook.received().iter().map(|r| r.json["text"].as_str().unwrap().to_owned()).collect();
    nudged.sort();
    assert_eq!(nudged, ["after@example.com", "before@example.com"]);
    server.stop().await;
}

async fn a_rule_disabled_while_its_firing_waits_does_not_act() {
    let hook = Receiver::start().await;
    let server = server().await;
    let rule = create_rule(
        &server,
        json!({"name": "No export", "when": {"event": {"name": "Signed Up"}},
            "unless": {"event": "Exported", "within_hours": 2}, "then": [{"webhook": {"url": hook.url}}]}),
    )
    .await;
    identify(&server, "ada@example.com", "pro", 0.0).await;
    track(&server, "ada@example.com", "Signed Up", json!({}), 0.0, "signup").await;
    let mut disabled = rule.clone();
    disabled["enabled"] = json!(false);
    for field in ["id", "created_at", "updated_at"] {
        disabled.as_object_mut().unwrap().remove(field);
    }
    let (status, body) = server.call(Method::PUT, &format!("/api/rules/{}", rule["id"]), &disabled).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    advance(&server, 3.0);
    let report = server.run_jobs().await;
    assert_eq!((report.nudges.fired, report.nudges.cancelled), (0, 1), "{report:?}");
    // Enabled again, it does not go back to what was decided while it was off.
    disabled["enabled"] = json!(true);
    server.call(Method::PUT, &format!("/api/rules/{}", rule["id"]), &disabled).await;
    advance(&server, 3.0);
    assert_eq!(server.run_jobs().await.nudges.fired, 0);
    assert!(hook.received().is_empty());
    assert_ne!(server.timeline("ada@example.com").await[0]["kind"], "nudge");
    server.stop().await;
}

async fn a_delivery_whose_lease_expired_is_claimed_again() {
    let hook = Receiver::start().await;
    let server = server().await;
    create_rule(
        &server,
        json!({"name": "Signups", "when": {"event": {"name": "Signed Up"}}, "then": [{"webhook": {"url": hook.url}}]}),
    )
    .await;
    identify(&server, "ada@example.com", "pro", 0.0).await;
    track(&server, "ada@example.com", "Signed Up", json!({}), 0.0, "s1").await;
    hook.answer(&[(500, None)]);
    let report = server.run_jobs().await;
    assert_eq!((report.nudges.fired, report.deliveries.retried), (1, 1), "{report:?}");
    // Once it is due again, a worker claims it for a minute and dies before sending it.
    advance(&server, 1.0);
    let claimed =
        server.state.store.claim_deliveries(server.state.clock.now(), 10, SignedDuration::from_secs(60)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    advance(&server, 30.0 / 3600.0);
    assert_eq!(server.run_jobs().await.deliveries.attempted(), 0, "leased to the dead worker");
    advance(&server, 31.0 / 3600.0);
    assert_eq!(server.run_jobs().await.deliveries.sent, 1, "its lease ended: another worker sends it");
    assert_eq!(hook.received().len(), 2);
    let sent = server.get("/api/deliveries?status=sent").await;
    assert_eq!(sent[0]["attempts"], 2);
    server.stop().await;
}

async fn a_retry_after_date_in_the_future_is_honoured() {
    let hook = Receiver::start().await;
    // T0 is Monday 1 July 2024, 09:00 UTC: the receiver asks for 09:20.
    hook.answer(&[(503, Some("Mon, 01 Jul 2024 09:20:00 GMT"))]);
    let server = server().await;
    create_rule(
        &server,
        json!({"name": "Signups", "when": {"event": {"name": "Signed Up"}}, "then": [{"webhook": {"url": hook.url}}]}),
    )
    .await;
    identify(&server, "ada@example.com", "pro", 0.0).await;
    track(&server, "ada@example.com", "Signed Up", json!({}), 0.0, "s1").await;
    assert_eq!(server.run_jobs().await.deliveries.retried, 1);
    let pending = server.get("/api/deliveries?status=pending").await;
    let next: Timestamp = pending[0]["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(next, at(20.0 / 60.0).parse::<Timestamp>().unwrap(), "the date asked for, by the server's clock");
    advance(&server, 19.0 / 60.0);
    assert_eq!(server.run_jobs().await.deliveries.attempted(), 0, "not before the date");
    advance(&server, 1.0 / 60.0);
    assert_eq!(server.run_jobs().await.deliveries.sent, 1);
    server.stop().await;
}

crate::backend_tests!(
    slack_me_when_an_enterprise_user_signs_up_but_invites_nobody_within_two_days,
    rules_are_managed_through_the_api_and_refuse_nonsense,
    deliveries_retry_through_500_and_429_then_succeed_and_survive_a_restart,
    deliveries_give_up_on_other_4xx_and_after_four_hours_and_can_be_retried,
    contact_went_cold_and_audiences_go_back_to_segment_on_a_second_kith,
    nudge_sent_and_bucket_and_due_rules_fire_once,
    the_daily_digest_goes_once_a_day_at_the_local_time,
    email_actions_go_through_smtp,
    an_email_action_without_smtp_fails_visibly,
    one_audience_entry_reaching_a_rule_twice_fires_once,
    the_inaction_window_counts_only_what_follows_the_trigger_within_the_delay,
    a_rule_disabled_while_its_firing_waits_does_not_act,
    a_delivery_whose_lease_expired_is_claimed_again,
    a_retry_after_date_in_the_future_is_honoured,
);
