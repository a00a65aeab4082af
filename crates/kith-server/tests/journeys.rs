//! Journeys: an onboarding journey over five days for contacts who act and who do not;
//! inaction matched to the same cart for two carts at once; a restart in the middle; the
//! backtest's counts against a live run over the same events; two nodes moving the same
//! entries. Time is driven by the test's clock and jobs run on demand.

mod common;

use common::browser::Browser;
use common::outbound::{Receiver, SmtpSink};
use common::{Options, TestServer};
use jiff::{SignedDuration, Timestamp};
use kith_server::jobs::delivery::SmtpConfig;
use kith_server::service::users::create_user;
use kith_server::web::WebConfig;
use kith_server::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn t0() -> Timestamp {
    "2024-07-01T09:00:00Z".parse().unwrap()
}

fn at(offset_hours: f64) -> String {
    (t0() + SignedDuration::from_secs_f64(offset_hours * 3600.0)).to_string()
}

fn options(clock: &Clock, smtp: &SmtpSink) -> Options {
    Options {
        clock: Some(clock.clone()),
        smtp: Some(SmtpConfig { url: smtp.url.clone(), from: "kith <kith@example.com>".into() }),
        web: WebConfig { public_url: Some("https://kith.example.com".into()), ..WebConfig::default() },
        ..Options::default()
    }
}

async fn created(server: &TestServer, path: &str, body: Value) -> Value {
    let (status, answer) = server.call(Method::POST, path, &body).await;
    assert_eq!(status, StatusCode::CREATED, "POST {path}: {answer}");
    answer
}

/// A template of a new topic; its subject names it and the entry event's `cartId`.
async fn template(server: &TestServer, name: &str) -> i64 {
    let topic = created(server, "/api/topics", json!({"name": format!("{name} topic"), "opt_in": false})).await;
    created(
        server,
        "/api/templates",
        json!({"name": name, "topic_id": topic["id"], "subject": format!("{name} {{{{ event.cartId }}}}"),
               "html": "<p>Hi</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
               "text": "Hi\nUnsubscribe: {{ unsubscribe_url }}"}),
    )
    .await["id"]
        .as_i64()
        .unwrap()
}

async fn identify(server: &TestServer, user: &str) {
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": user, "traits": {"email": format!("{user}@example.com"), "name": user},
                    "timestamp": at(0.0)}),
        )
        .await;
}

async fn track(server: &TestServer, user: &str, event: &str, properties: Value, hours: f64) {
    let message_id = format!("{user}-{event}-{hours}-{properties}");
    server
        .ingest(
            "/v1/track",
            &json!({"userId": user, "event": event, "properties": properties, "timestamp": at(hours),
                    "messageId": message_id}),
        )
        .await;
}

fn advance_to(server: &TestServer, hours: f64) {
    let target = t0() + SignedDuration::from_secs_f64(hours * 3600.0);
    let now = server.state.clock.now();
    server.state.clock.advance(target.duration_since(now));
}

/// `(recipient, subject)` of every mail, in order.
fn mails(smtp: &SmtpSink) -> Vec<(String, String)> {
    smtp.mails()
        .iter()
        .map(|mail| {
            let subject = mail
                .data
                .replace('\r', "")
                .lines()
                .find_map(|line| line.strip_prefix("Subject: ").map(str::to_owned))
                .unwrap_or_default();
            (mail.to.join(",").trim_matches(['<', '>']).to_owned(), subject.trim().to_owned())
        })
        .collect()
}

/// Welcome now; the tip after two days unless a project was created; the team alert after
/// five days unless a project was created by then; a subscription ends it anywhere.
async fn onboarding(server: &TestServer, team: &Receiver) -> Value {
    let welcome = template(server, "Welcome").await;
    let tip = template(server, "Tip").await;
    created(
        server,
        "/api/journeys",
        json!({
            "name": "Onboarding",
            "when": {"event": {"name": "Signed Up"}},
            "steps": [
                {"message": {"template": welcome}},
                {"wait_until": {"event": "Project Created", "hours": 48, "then": "exit"}},
                {"message": {"template": tip}},
                {"wait_until": {"event": "Project Created", "hours": 72, "then": "exit"}},
                {"webhook": {"url": format!("{}/team", team.url), "text": "{name} has no project after 5 days"}}
            ],
            "exit_when": [{"event": "Subscription Started"}]
        }),
    )
    .await
}

fn counts(detail: &Value) -> Vec<(u64, u64, u64)> {
    detail["step_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["step"].as_u64().unwrap(), c["waiting"].as_u64().unwrap(), c["done"].as_u64().unwrap()))
        .collect()
}

async fn the_onboarding_journey_for_a_contact_who_acts_and_one_who_does_not() {
    let smtp = SmtpSink::start().await;
    let team = Receiver::start().await;
    let clock = Clock::manual(t0());
    let server = TestServer::start_with(options(&clock, &smtp)).await;
    let journey = onboarding(&server, &team).await;
    let id = journey["id"].as_i64().unwrap();
    assert_eq!(journey["steps"][4]["id"], 5, "steps are numbered 1, 2, 3…");
    for user in ["ada", "bob"] {
        identify(&server, user).await;
        track(&server, user, "Signed Up", json!({}), 0.0).await;
    }
    server.run_jobs().await;
    assert_eq!(
        mails(&smtp),
        [("ada@example.com".into(), "Welcome".into()), ("bob@example.com".into(), "Welcome".into())],
        "welcome at once"
    );

    advance_to(&server, 20.0);
    track(&server, "bob", "Project Created", json!({}), 20.0).await;
    server.run_jobs().await;
    let detail = server.get(&format!("/api/journeys/{id}")).await;
    assert_eq!(counts(&detail), [(1, 0, 2), (2, 1, 1), (3, 0, 0), (4, 0, 0), (5, 0, 0)]);
    assert_eq!((detail["active"].as_u64(), detail["exited"].as_u64()), (Some(1), Some(1)));
    let waiting = server.get(&format!("/api/journeys/{id}/steps/2/contacts")).await;
    assert_eq!(waiting.as_array().unwrap().len(), 1);
    assert_eq!(waiting[0]["email"], "ada@example.com");

    advance_to(&server, 47.0);
    server.run_jobs().await;
    assert_eq!(mails(&smtp).len(), 2, "nothing before the two days are up");
    advance_to(&server, 49.0);
    server.run_jobs().await;
    assert_eq!(mails(&smtp)[2], ("ada@example.com".into(), "Tip".into()), "the tip goes to ada only");
    assert_eq!(mails(&smtp).len(), 3);
    assert!(team.received().is_empty());

    advance_to(&server, 119.0);
    server.run_jobs().await;
    assert!(team.received().is_empty(), "nothing before the five days are up");
    advance_to(&server, 121.0);
    server.run_jobs().await;
    let alerts = team.received();
    assert_eq!(alerts.len(), 1, "the team hears of ada, not of bob");
    assert_eq!(alerts[0].json["text"], "ada has no project after 5 days");
    assert_eq!(alerts[0].json["journey"]["name"], "Onboarding");

    // More passes, much later, change nothing.
    advance_to(&server, 500.0);
    server.run_jobs().await;
    assert_eq!((mails(&smtp).len(), team.received().len()), (3, 1));
    let detail = server.get(&format!("/api/journeys/{id}")).await;
    assert_eq!(counts(&detail), [(1, 0, 2), (2, 0, 2), (3, 0, 1), (4, 0, 1), (5, 0, 1)]);
    assert_eq!((detail["completed"].as_u64(), detail["exited"].as_u64()), (Some(1), Some(1)));

    let bob = server.get("/api/contacts/bob@example.com/journeys").await;
    assert_eq!(bob[0]["state"], "exited");
    assert_eq!(bob[0]["reason"], "left: Project Created happened");
    assert_eq!(bob[0]["moves"][1]["at"], at(20.0), "moved when the project was created");
    let ada = server.get("/api/contacts/ada@example.com/journeys").await;
    assert_eq!(ada[0]["state"], "completed");
    let why: Vec<&str> = ada[0]["moves"].as_array().unwrap().iter().map(|m| m["why"].as_str().unwrap()).collect();
    assert_eq!(
        why,
        [
            "message done",
            "no Project Created within 48 h",
            "message done",
            "no Project Created within 72 h",
            "webhook done"
        ]
    );
    server.stop().await;
}

async fn inaction_is_matched_to_the_same_cart_for_two_carts_at_once() {
    let smtp = SmtpSink::start().await;
    let clock = Clock::manual(t0());
    let server = TestServer::start_with(options(&clock, &smtp)).await;
    let reminder = template(&server, "Your cart").await;
    created(
        &server,
        "/api/journeys",
        json!({
            "name": "Abandoned cart",
            "when": {"event": {"name": "Product Added"}},
            "entry": "every_time",
            "steps": [
                {"wait_until": {"event": "Order Completed", "same": "cartId", "hours": 24, "then": "exit"}},
                {"message": {"template": reminder}}
            ]
        }),
    )
    .await;
    identify(&server, "ada").await;
    track(&server, "ada", "Product Added", json!({"cartId": "a"}), 0.0).await;
    advance_to(&server, 1.0);
    track(&server, "ada", "Product Added", json!({"cartId": "b"}), 1.0).await;
    advance_to(&server, 5.0);
    track(&server, "ada", "Order Completed", json!({"cartId": "a"}), 5.0).await;
    server.run_jobs().await;
    let entries = server.get("/api/contacts/ada@example.com/journeys").await;
    let states: Vec<&str> = entries.as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["active", "exited"], "cart a's checkout ends cart a's entry at once, not cart b's");
    advance_to(&server, 30.0);
    server.run_jobs().await;
    assert_eq!(mails(&smtp), [("ada@example.com".into(), "Your cart b".into())], "a reminder for cart b only");
    server.stop().await;
}

async fn a_restart_in_the_middle_loses_and_repeats_nothing() {
    let hooks = Receiver::start().await;
    let clock = Clock::manual(t0());
    let server = TestServer::start_with(Options { clock: Some(clock.clone()), ..Options::default() }).await;
    let journey = created(
        &server,
        "/api/journeys",
        json!({
            "name": "Two steps",
            "when": {"event": {"name": "Signed Up"}},
            "steps": [
                {"webhook": {"url": format!("{}/welcome", hooks.url)}},
                {"wait": {"hours": 48}},
                {"note": {"text": "Two days in"}},
                {"webhook": {"url": format!("{}/tip", hooks.url)}}
            ]
        }),
    )
    .await;
    identify(&server, "ada").await;
    track(&server, "ada", "Signed Up", json!({}), 0.0).await;
    server.run_jobs().await;
    assert_eq!(hooks.received().len(), 1);

    let server = server.restart(Options { clock: Some(clock.clone()), ..Options::default() }).await;
    let detail = server.get(&format!("/api/journeys/{}", journey["id"])).await;
    assert_eq!(counts(&detail)[1], (2, 1, 0), "the wait survived the restart");
    server.run_jobs().await;
    assert_eq!(hooks.received().len(), 1, "the welcome is not sent again");

    advance_to(&server, 49.0);
    server.run_jobs().await;
    let server = server.restart(Options { clock: Some(clock.clone()), ..Options::default() }).await;
    server.run_jobs().await;
    let paths: Vec<String> = hooks.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/welcome", "/tip"]);
    let notes: Vec<Value> =
        server.timeline("ada@example.com").await.into_iter().filter(|i| i["kind"] == "note").collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["description"], "Two days in");
    server.stop().await;
}

/// What a contact does after signing up: events and their hours.
type Later = &'static [(&'static str, f64)];

/// The live counts of a journey in the backtest's shape: steps nobody reached left out.
fn live_counts(detail: &Value) -> Value {
    let steps: Vec<Value> = detail["step_counts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["waiting"] != 0 || c["done"] != 0)
        .cloned()
        .collect();
    json!({"entered": detail["entered"], "active": detail["active"], "completed": detail["completed"],
           "exited": detail["exited"], "steps": steps})
}

async fn the_backtest_counts_what_a_live_run_over_the_same_events_does() {
    let team = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let clock = Clock::manual(t0());
    let server = TestServer::start_with(options(&clock, &smtp)).await;
    let journey = onboarding(&server, &team).await;
    let id = journey["id"].as_i64().unwrap();
    let rule = created(
        &server,
        "/api/rules",
        json!({"name": "Nudge", "when": {"event": {"name": "Signed Up"}},
               "unless": {"event": "Project Created", "within_hours": 48},
               "then": [{"webhook": {"url": format!("{}/rule", team.url)}}]}),
    )
    .await;
    // Contacts who sign up at different times and act, subscribe, or do nothing.
    let script: &[(&str, f64, Later)] = &[
        ("ada", 0.0, &[]),
        ("bob", 0.0, &[("Project Created", 10.0)]),
        ("cy", 10.0, &[("Project Created", 70.0)]),
        ("dee", 20.0, &[("Subscription Started", 30.0)]),
        ("eve", 90.0, &[]),
        ("fay", 150.0, &[]),
    ];
    let mut timeline: Vec<(f64, &str, &str)> = Vec::new();
    for (user, signed_up, later) in script {
        identify(&server, user).await;
        timeline.push((*signed_up, user, "Signed Up"));
        for (event, hours) in *later {
            timeline.push((*hours, user, event));
        }
    }
    timeline.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (hours, user, event) in timeline {
        advance_to(&server, hours);
        track(&server, user, event, json!({}), hours).await;
        server.run_jobs().await;
    }
    advance_to(&server, 160.0);
    server.run_jobs().await;

    let live = live_counts(&server.get(&format!("/api/journeys/{id}")).await);
    let (status, backtest) = server.call(Method::POST, &format!("/api/journeys/{id}/backtest"), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{backtest}");
    assert_eq!(backtest["counts"], live, "the backtest counts what the live run did");
    assert_eq!(live["entered"], 6);
    assert!(live["active"].as_u64().unwrap() > 0 && live["exited"].as_u64().unwrap() > 0, "{live}");
    let sent: usize = smtp.mails().len() + team.received().iter().filter(|r| r.path == "/team").count();
    assert_eq!(backtest["sends"].as_array().unwrap().len(), sent, "{backtest}");
    assert_eq!(backtest["sends_total"].as_u64(), Some(sent as u64), "{backtest}");

    // A draft backtests the same; an empty body, too; a window that is too long is refused.
    let mut draft = journey.clone();
    for field in ["id", "created_at", "updated_at"] {
        draft.as_object_mut().unwrap().remove(field);
    }
    let (status, from_draft) =
        server.call(Method::POST, "/api/journeys/backtest", &json!({"journey": draft, "days": 30})).await;
    assert_eq!(status, StatusCode::OK, "{from_draft}");
    assert_eq!(from_draft["counts"], live);
    let (status, refused) =
        server.call(Method::POST, &format!("/api/journeys/{id}/backtest"), &json!({"days": 4000})).await;
    assert_eq!((status, refused["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_days")));

    // A rule's backtest counts what its firings did.
    let firings = server.get(&format!("/api/rules/{}", rule["id"])).await["firings"].clone();
    let count = |state: &str| firings.as_array().unwrap().iter().filter(|f| f["state"] == state).count() as u64;
    let (status, rule_backtest) =
        server.call(Method::POST, &format!("/api/rules/{}/backtest", rule["id"]), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rule_backtest}");
    assert_eq!(rule_backtest["fired"].as_u64(), Some(count("fired")), "{rule_backtest} {firings}");
    assert_eq!(rule_backtest["cancelled"].as_u64(), Some(count("cancelled")));
    assert_eq!(rule_backtest["waiting"].as_u64(), Some(count("waiting")));
    assert_eq!(rule_backtest["triggered"], 6);

    // The web app shows the same backtests.
    create_user(server.state.store.as_ref(), server.workspace, "founder@example.com", "correct horse battery")
        .await
        .unwrap();
    let mut browser = Browser::new(&server);
    browser.sign_in("founder@example.com", "correct horse battery").await;
    let page = browser.get(&format!("/journeys/{id}/backtest?days=30")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let entered = format!("<dt>Entered</dt><dd>{}</dd>", live["entered"]);
    assert!(page.body.contains(&entered), "{}", page.body);
    assert!(page.body.contains("ada@example.com") && page.body.contains("Nothing was sent"), "{}", page.body);
    let page = browser.get(&format!("/nudges/rules/{}/backtest", rule["id"])).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let fired = format!("<dt>Fired</dt><dd>{}</dd>", count("fired"));
    assert!(page.body.contains(&fired), "{}", page.body);
    for days in ["abc", "4000"] {
        let page = browser.get(&format!("/journeys/{id}/backtest?days={days}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{days}: {}", page.body);
    }
    // A path that does not parse gets the app's error page, not axum's plain text.
    let page = browser.get("/journeys/abc").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("Something to fix") && page.body.contains("Invalid URL"), "{}", page.body);
    server.stop().await;
}

async fn two_nodes_never_fire_a_step_twice() {
    let hooks = Receiver::start().await;
    let clock = Clock::manual(t0());
    let server = TestServer::start_with(Options { clock: Some(clock.clone()), ..Options::default() }).await;
    let other = server.second_node().await;
    created(
        &server,
        "/api/journeys",
        json!({
            "name": "Busy",
            "when": {"event": {"name": "Signed Up"}},
            "entry": "every_time",
            "steps": [
                {"webhook": {"url": format!("{}/welcome", hooks.url)}},
                {"wait": {"hours": 1}},
                {"webhook": {"url": format!("{}/tip", hooks.url)}}
            ]
        }),
    )
    .await;
    for n in 0..30 {
        let user = format!("u{n}");
        identify(&server, &user).await;
        track(&server, &user, "Signed Up", json!({}), 0.0).await;
    }
    for hours in [0.0, 0.5, 2.0, 3.0] {
        advance_to(&server, hours);
        let (first, second) =
            tokio::join!(kith_server::jobs::run_pending(&server.state), kith_server::jobs::run_pending(&other));
        first.unwrap();
        second.unwrap();
    }
    let received = hooks.received();
    let welcomes = received.iter().filter(|r| r.path == "/welcome").count();
    let tips = received.iter().filter(|r| r.path == "/tip").count();
    assert_eq!((welcomes, tips), (30, 30));
    server.stop().await;
}

/// An account's health falling into "at risk" enters each of its members, once per change:
/// a webhook for each member now, and a second two days later for those who did not log in.
async fn an_account_at_risk_enters_each_of_its_members() {
    let server = TestServer::start_with_clock(Clock::manual(t0())).await;
    let hooks = Receiver::start().await;
    for (user, group) in [("ann", "acme"), ("bob", "acme"), ("cy", "globex")] {
        identify(&server, user).await;
        server
            .ingest(
                "/v1/group",
                &json!({"userId": user, "groupId": group, "traits": {"name": group.to_uppercase()},
                        "timestamp": at(0.0)}),
            )
            .await;
    }
    let (status, body) = server
        .call(Method::PUT, "/api/health-model", &json!({"factors": [{"weight": 1, "factor": {"csm_rating": {}}}]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rate = |group: &'static str, rating: i64| {
        let server = &server;
        async move {
            let (status, body) =
                server.call(Method::PUT, &format!("/api/accounts/{group}/rating"), &json!({"rating": rating})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    let journey = created(
        &server,
        "/api/journeys",
        json!({
            "name": "Rescue",
            "when": {"health_band_changed": {"to": "at_risk"}},
            "steps": [
                {"webhook": {"url": format!("{}/now", hooks.url), "text": "{name} {event}"}},
                {"wait_until": {"event": "Logged In", "hours": 48, "then": "exit"}},
                {"branch": {"condition": {"property": {"key": "band", "equals": "at_risk"}}}},
                {"webhook": {"url": format!("{}/later", hooks.url), "text": "{name}"}}
            ]
        }),
    )
    .await;
    rate("acme", 5).await;
    rate("globex", 1).await;
    server.run_jobs().await;
    assert!(hooks.received().is_empty(), "the first sight of an account is no change");

    advance_to(&server, 1.0);
    rate("acme", 1).await;
    for _ in 0..3 {
        server.run_jobs().await;
    }
    let mut now: Vec<String> =
        hooks.received().iter().filter(|r| r.path == "/now").map(|r| r.json["text"].as_str().unwrap().into()).collect();
    now.sort();
    assert_eq!(now, ["ann ACME became at risk (was healthy)", "bob ACME became at risk (was healthy)"]);

    // Ann logs in; two days later only Bob is still away.
    track(&server, "ann", "Logged In", json!({}), 2.0).await;
    advance_to(&server, 50.0);
    server.run_jobs().await;
    server.run_jobs().await;
    let later: Vec<String> = hooks
        .received()
        .iter()
        .filter(|r| r.path == "/later")
        .map(|r| r.json["text"].as_str().unwrap().into())
        .collect();
    assert_eq!(later, ["bob"]);
    let id = journey["id"].as_i64().unwrap();
    let detail = server.get(&format!("/api/journeys/{id}")).await;
    assert_eq!(detail["entered"], 2, "{detail}");
    assert_eq!(detail["completed"], 1, "{detail}");
    assert_eq!(detail["exited"], 1, "{detail}");
    server.stop().await;
}

/// A note step's delivery taken up again (its lease ran out before the node that applied it
/// marked it, as after a crash) writes the note once; a cadence step likewise sets it once.
async fn a_note_step_taken_up_again_is_written_once() {
    let server = TestServer::start_with_clock(Clock::manual(t0())).await;
    identify(&server, "ann").await;
    created(
        &server,
        "/api/journeys",
        json!({"name": "Notes", "when": {"event": {"name": "Signed Up"}},
               "steps": [{"note": {"text": "Signed up: call them"}}, {"cadence": {"days": 14}}]}),
    )
    .await;
    track(&server, "ann", "Signed Up", json!({}), 0.0).await;
    kith_server::jobs::journeys(&server.state).await.unwrap();
    let store = &server.state.store;
    let now = server.state.clock.now();
    let claimed = store.claim_deliveries(now, 10, SignedDuration::from_secs(60)).await.unwrap();
    let kinds: Vec<&str> = claimed.iter().map(|delivery| delivery.kind.as_str()).collect();
    assert_eq!(kinds, ["note", "cadence"]);
    let contact = claimed[0].payload["contact_id"].as_i64().unwrap();
    for delivery in &claimed {
        let change = match delivery.kind.as_str() {
            "note" => kith_store::StepChange::Note("Signed up: call them".into()),
            _ => kith_store::StepChange::Cadence(Some(14)),
        };
        let first = store.apply_to_contact(delivery.id, server.workspace, contact, change.clone(), now).await;
        let again = store.apply_to_contact(delivery.id, server.workspace, contact, change, now).await;
        assert_eq!((first.unwrap(), again.unwrap()), (true, false), "{}", delivery.kind);
    }
    // The job finds nothing left to apply once the lease is over.
    advance_to(&server, 1.0);
    server.run_jobs().await;
    let timeline = server.get(&format!("/api/contacts/{contact}/timeline")).await;
    let notes: Vec<&Value> = timeline["items"].as_array().unwrap().iter().filter(|i| i["kind"] == "note").collect();
    assert_eq!(notes.len(), 1, "{timeline}");
    assert_eq!(notes[0]["description"], "Signed up: call them");
    let detail = server.get(&format!("/api/contacts/{contact}")).await;
    assert_eq!(detail["cadence_days"], 14, "{detail}");
    server.stop().await;
}

/// Backtests of journeys started by an audience, becoming due, a closeness change and an
/// account's health count what the live run over the same weeks did: the audience history,
/// the interactions (closeness and due dates follow from them) and the daily health record
/// are replayed.
async fn backtests_of_changes_count_what_the_live_run_did() {
    let server = TestServer::start_with_clock(Clock::manual(t0())).await;
    let hooks = Receiver::start().await;
    let mut journeys = Vec::new();
    for (name, when) in [
        ("audience", json!({"audience_entered": {"audience": "power_users"}})),
        ("due", json!({"becomes_due": {}})),
        ("cold", json!({"bucket_changed": {"to": "cold"}})),
        ("cooling", json!({"bucket_changed": {"to": "cooling", "from": "cold"}})),
        ("risk", json!({"health_band_changed": {"to": "at_risk"}})),
    ] {
        let steps = json!([{"webhook": {"url": format!("{}/{name}", hooks.url)}}]);
        let journey = created(&server, "/api/journeys", json!({"name": name, "when": when, "steps": steps})).await;
        journeys.push(journey["id"].as_i64().unwrap());
    }
    let rule = created(
        &server,
        "/api/rules",
        json!({"name": "Risk", "when": {"health_band_changed": {"to": "at_risk"}},
               "then": [{"webhook": {"url": format!("{}/rule", hooks.url)}}]}),
    )
    .await;
    let (status, body) = server
        .call(Method::PUT, "/api/health-model", &json!({"factors": [{"weight": 1, "factor": {"csm_rating": {}}}]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for user in ["ann", "bob", "cy"] {
        identify(&server, user).await;
    }
    for user in ["ann", "bob"] {
        server.ingest("/v1/group", &json!({"userId": user, "groupId": "acme", "timestamp": at(0.0)})).await;
    }
    let rate = |rating: i64| {
        let server = &server;
        async move {
            let (status, body) =
                server.call(Method::PUT, "/api/accounts/acme/rating", &json!({"rating": rating})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    rate(5).await;
    let bob = server.get("/api/contacts?q=bob").await["items"][0]["id"].as_i64().unwrap();
    let (status, body) = server.call(Method::PUT, &format!("/api/contacts/{bob}/cadence"), &json!({"days": 2})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.run_jobs().await;

    // Ann joins the audience the next day; Acme falls to at risk; Bob becomes due after two
    // days; then everyone drifts to cold.
    advance_to(&server, 24.0);
    server
        .ingest(
            "/v1/track",
            &json!({"userId": "ann", "event": "Audience Entered", "timestamp": at(24.0),
                    "properties": {"audience_key": "power_users", "power_users": true},
                    "context": {"personas": {"computation_class": "audience", "computation_key": "power_users"}}}),
        )
        .await;
    server.run_jobs().await;
    advance_to(&server, 30.0);
    rate(1).await;
    server.run_jobs().await;
    for hours in [49.0, 24.0 * 70.0] {
        advance_to(&server, hours);
        server.run_jobs().await;
        server.run_jobs().await;
    }

    let mut entered = Vec::new();
    for id in &journeys {
        let live = live_counts(&server.get(&format!("/api/journeys/{id}")).await);
        let (status, backtest) =
            server.call(Method::POST, &format!("/api/journeys/{id}/backtest"), &json!({"days": 90})).await;
        assert_eq!(status, StatusCode::OK, "{backtest}");
        assert_eq!(backtest["counts"], live, "journey {id}: {backtest}");
        entered.push(live["entered"].as_i64().unwrap());
    }
    // Ann; Bob; all three; all three (at their first activity); Ann and Bob of Acme.
    assert_eq!(entered, [1, 1, 3, 3, 2]);
    let (status, backtest) =
        server.call(Method::POST, &format!("/api/rules/{}/backtest", rule["id"]), &json!({"days": 90})).await;
    assert_eq!(status, StatusCode::OK, "{backtest}");
    assert_eq!((backtest["triggered"].as_i64(), backtest["fired"].as_i64()), (Some(1), Some(1)), "{backtest}");
    assert_eq!(backtest["sends"][0]["account"], "acme", "{backtest}");
    assert_eq!(hooks.received().iter().filter(|r| r.path == "/rule").count(), 1);
    server.stop().await;
}

/// A merge moves the merged-away contact's entries to the survivor: the journey lists it under
/// the survivor, and a "once" journey does not take the same person in twice.
async fn a_merged_contact_keeps_its_journey_entries() {
    let server = TestServer::start_with_clock(Clock::manual(t0())).await;
    let journey = created(
        &server,
        "/api/journeys",
        json!({"name": "Once", "when": {"event": {"name": "Signed Up"}},
               "steps": [{"wait": {"hours": 24}}, {"segment": {"event": "Welcomed"}}]}),
    )
    .await;
    let id = journey["id"].as_i64().unwrap();
    identify(&server, "m1").await;
    identify(&server, "m2").await;
    track(&server, "m2", "Signed Up", json!({}), 0.0).await;
    server.run_jobs().await;
    let (status, merged) =
        server.call(Method::POST, "/api/contacts/m1@example.com/merge", &json!({"contact": "m2@example.com"})).await;
    assert_eq!(status, StatusCode::OK, "{merged}");
    let m1 = merged["id"].as_i64().unwrap();
    let entries = server.get(&format!("/api/contacts/{m1}/journeys")).await;
    assert_eq!(entries.as_array().unwrap().len(), 1, "{entries}");
    // The same person signs up again under the surviving id: "once" holds.
    advance_to(&server, 2.0);
    track(&server, "m1", "Signed Up", json!({}), 2.0).await;
    server.run_jobs().await;
    let detail = server.get(&format!("/api/journeys/{id}")).await;
    assert_eq!((detail["entered"].as_i64(), detail["active"].as_i64()), (Some(1), Some(1)), "{detail}");
    let waiting = server.get(&format!("/api/journeys/{id}/steps/1/contacts")).await;
    assert_eq!(waiting.as_array().unwrap().len(), 1, "{waiting}");
    server.stop().await;
}

/// What the API refuses or keeps on an edit, and a template a journey sends cannot be deleted.
async fn edits_keep_what_they_do_not_say_and_refuse_ambiguity() {
    let server = TestServer::start_with_clock(Clock::manual(t0())).await;
    let topic = created(&server, "/api/topics", json!({"name": "News", "opt_in": false})).await;
    let template = created(
        &server,
        "/api/templates",
        json!({"name": "Hi", "topic_id": topic["id"], "subject": "Hi", "html": "<p>Hi</p>", "text": "Hi"}),
    )
    .await;
    let body = json!({"name": "J", "when": {"event": {"name": "Signed Up"}},
                      "steps": [{"wait": {"hours": 1}}, {"message": {"template": template["id"]}}, {"exit": {}}]});
    let journey = created(&server, "/api/journeys", body.clone()).await;
    let id = journey["id"].as_i64().unwrap();
    let (status, answer) =
        server.call(Method::DELETE, &format!("/api/templates/{}", template["id"]), &Value::Null).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::CONFLICT, Some("template_in_use")), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("journey J"), "{answer}");

    // A paused journey edited without `enabled` stays paused.
    server.call(Method::POST, &format!("/api/journeys/{id}/pause"), &json!({})).await;
    let (status, edited) = server.call(Method::PUT, &format!("/api/journeys/{id}"), &journey_steps(&body, 1)).await;
    assert_eq!((status, edited["enabled"].as_bool()), (StatusCode::OK, Some(false)), "{edited}");
    // Step 2 is gone now: a new step may not take its id.
    let mut reused = journey_steps(&body, 1);
    reused["steps"].as_array_mut().unwrap().push(json!({"id": 2, "note": {"text": "again"}}));
    let (status, refused) = server.call(Method::PUT, &format!("/api/journeys/{id}"), &reused).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("step id 2"), "{refused}");
    // A step is one kind: two at once, or a field no kind has, is refused rather than dropped.
    for step in [json!({"wait": {"hours": 1}, "note": {"text": "x"}}), json!({"exit": {}, "extra": 1})] {
        let bad = json!({"name": "x", "when": {"event": {"name": "A"}}, "steps": [step]});
        let (status, answer) = server.call(Method::POST, "/api/journeys", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
    server.stop().await;
}

/// `body` without the step at `index`, with the ids the API gave.
fn journey_steps(body: &Value, index: usize) -> Value {
    let mut body = body.clone();
    let steps = body["steps"].as_array_mut().unwrap();
    for (i, step) in steps.iter_mut().enumerate() {
        step["id"] = json!(i + 1);
    }
    steps.remove(index);
    body
}

async fn journeys_are_managed_through_the_api_and_refuse_nonsense() {
    let server = TestServer::start_with_clock(Clock::manual(t0())).await;
    let journey = created(
        &server,
        "/api/journeys",
        json!({"name": "J", "when": {"event": {"name": "Signed Up"}},
               "steps": [{"wait": {"hours": 1}}, {"segment": {"event": "Journey Step"}}]}),
    )
    .await;
    let id = journey["id"].as_i64().unwrap();
    assert_eq!(server.get("/api/journeys").await.as_array().unwrap().len(), 1);
    let (status, paused) = server.call(Method::POST, &format!("/api/journeys/{id}/pause"), &json!({})).await;
    assert_eq!((status, paused["enabled"].as_bool()), (StatusCode::OK, Some(false)));
    let (status, resumed) = server.call(Method::POST, &format!("/api/journeys/{id}/resume"), &json!({})).await;
    assert_eq!((status, resumed["enabled"].as_bool()), (StatusCode::OK, Some(true)));

    // An edit keeps the ids of the steps it keeps; a new step gets a fresh one.
    let (status, edited) = server
        .call(
            Method::PUT,
            &format!("/api/journeys/{id}"),
            &json!({"name": "J", "when": {"event": {"name": "Signed Up"}},
                    "steps": [{"id": 2, "segment": {"event": "Journey Step"}}, {"exit": {}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["steps"][1]["id"], 3);

    for bad in [
        json!({"name": "x", "when": {"event": {"name": "A"}}, "steps": []}),
        json!({"name": "x", "when": {"teleported": {}}, "steps": [{"exit": {}}]}),
        json!({"name": "x", "when": {"event": {"name": "A"}}, "steps": [{"wait": {"hours": 0}}]}),
        json!({"name": "x", "when": {"event": {"name": "A"}}, "steps": [{"message": {"template": 99}}]}),
        json!({"name": "x", "when": {"event": {"name": "A"}}, "steps": [{"webhook": {"url": "http://10.0.0.1/x"}}]}),
        json!({"name": "x", "when": {"event": {"name": "A"}},
               "steps": [{"exit": {}}, {"wait_until": {"event": "B", "hours": 1, "timeout": {"step": 1}}}]}),
    ] {
        let (status, body) = server.call(Method::POST, "/api/journeys", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["code"].is_string() && body["message"].is_string(), "{body}");
    }
    let (status, _) = server.api("/api/journeys/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // What axum itself refuses is answered in the API's shape too.
    for path in ["/api/journeys/abc", "/api/journeys/99999999999999999999", "/api/contacts?limit=x"] {
        let (status, body) = server.api(path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{path}: {body}"
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
    let (status, _) = server.api(&format!("/api/journeys/{id}/steps/42/contacts")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.call(Method::DELETE, &format!("/api/journeys/{id}"), &Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    server.stop().await;
}

crate::backend_tests!(
    the_onboarding_journey_for_a_contact_who_acts_and_one_who_does_not,
    inaction_is_matched_to_the_same_cart_for_two_carts_at_once,
    a_restart_in_the_middle_loses_and_repeats_nothing,
    the_backtest_counts_what_a_live_run_over_the_same_events_does,
    two_nodes_never_fire_a_step_twice,
    journeys_are_managed_through_the_api_and_refuse_nonsense,
    an_account_at_risk_enters_each_of_its_members,
    a_note_step_taken_up_again_is_written_once,
    backtests_of_changes_count_what_the_live_run_did,
    a_merged_contact_keeps_its_journey_entries,
    edits_keep_what_they_do_not_say_and_refuse_ambiguity,
);
