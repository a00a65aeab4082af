//! Rebuilding history from the stored events: a time zone change counts every day again,
//! in steps that ingest, reads and restarts can come between, and the result equals what a
//! workspace in that zone from the start holds; a rebuild asked for by hand changes nothing
//! that was right.

mod common;

use common::browser::Browser;
use common::TestServer;
use kith_server::auth::generate_key;
use kith_server::service::history::STEP_CONTACTS;
use kith_server::service::users::create_user;
use kith_store::KeyKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// More contacts than one step rebuilds.
const PEOPLE: usize = STEP_CONTACTS + STEP_CONTACTS / 2;
const ZONE: &str = "America/Los_Angeles";

fn identify(n: usize) -> Value {
    json!({"type": "identify", "userId": format!("u{n}"), "traits": {"email": format!("p{n}@example.com")},
           "timestamp": "2024-06-05T20:00:00Z", "messageId": format!("id-{n}")})
}

/// Events around midnight in Los Angeles (07:00 UTC): in UTC they fall on one day, there on
/// two, and the first of each day differs.
fn tracks(n: usize, round: &str) -> Vec<Value> {
    ["2024-06-06T06:30:00Z", "2024-06-06T07:30:00Z", "2024-06-06T12:00:00Z", "2024-06-05T23:00:00Z"]
        .iter()
        .enumerate()
        .map(|(i, time)| {
            json!({"type": "track", "userId": format!("u{n}"), "event": format!("{round} {i}"), "timestamp": time,
                   "messageId": format!("{round}-{n}-{i}")})
        })
        .collect()
}

async fn send_all(servers: &[&TestServer], events: Vec<Value>) {
    for chunk in events.chunks(400) {
        for server in servers {
            server.ingest("/v1/batch", &json!({ "batch": chunk })).await;
        }
    }
}

/// (day, description, time, hits) of each of a contact's days, and its closeness key.
async fn history(server: &TestServer, email: &str) -> (Vec<(String, String, String, i64)>, Value) {
    let days = server
        .timeline(email)
        .await
        .iter()
        .map(|i| {
            (
                i["day"].as_str().unwrap().to_owned(),
                i["description"].as_str().unwrap().to_owned(),
                i["occurred_at"].as_str().unwrap().to_owned(),
                i["hits"].as_i64().unwrap(),
            )
        })
        .collect();
    (days, server.contact(email).await["closeness"]["key"].clone())
}

async fn a_time_zone_change_counts_every_day_again_while_events_keep_arriving() {
    let changed = TestServer::start().await;
    let reference = TestServer::start().await;
    reference.set_time_zone(ZONE).await;
    let both = [&changed, &reference];
    send_all(&both, (0..PEOPLE).map(identify).collect()).await;
    // The first and the last contacts of the workspace: one is rebuilt by the first step, the
    // other by the second.
    let watched = [0, 1, PEOPLE - 2, PEOPLE - 1];
    send_all(&both, watched.iter().flat_map(|&n| tracks(n, "Before")).collect()).await;
    let utc_days = history(&changed, "p0@example.com").await.0;
    assert_eq!(utc_days.len(), 2, "in UTC the four events fall on June 5th and 6th: {utc_days:?}");

    changed.set_time_zone(ZONE).await;
    let status = changed.get("/api/workspace/reprojection").await;
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["reason"], "time zone changed");
    assert_eq!(status["contacts_total"], PEOPLE);

    let step = changed.state.store.reproject_step(STEP_CONTACTS).await.unwrap().expect("a step to run");
    assert_eq!((step.contacts, step.finished), (STEP_CONTACTS as u64, false));
    let status = changed.get("/api/workspace/reprojection").await;
    assert_eq!(status["contacts_done"], STEP_CONTACTS);
    assert_eq!(status["percent_done"], 100 * STEP_CONTACTS / PEOPLE);
    assert_eq!(history(&changed, "p0@example.com").await, history(&reference, "p0@example.com").await);

    // Events keep arriving between steps, for contacts rebuilt already and for the others.
    send_all(&both, watched.iter().flat_map(|&n| tracks(n, "During")).collect()).await;
    // A restart between two steps: the rebuild goes on where it stopped.
    let changed = changed.restart(common::Options::default()).await;
    let status = changed.get("/api/workspace/reprojection").await;
    assert_eq!(
        (status["state"].as_str(), status["contacts_done"].as_u64()),
        (Some("running"), Some(STEP_CONTACTS as u64))
    );
    let report = changed.run_jobs().await;
    assert_eq!(report.reprojected as usize, PEOPLE - STEP_CONTACTS, "only what was left is rebuilt");
    let status = changed.get("/api/workspace/reprojection").await;
    assert_eq!(status["state"], "finished", "{status}");
    assert_eq!(status["percent_done"], 100);
    // Each identify, the first round of every watched contact, and the second round of those
    // the first step had not reached yet: what arrived after a contact's rebuild was counted
    // in the new zone as it came.
    assert_eq!(status["events_done"], PEOPLE + 4 * watched.len() + 4 * 2, "every stored event read once: {status}");

    for n in watched {
        let email = format!("p{n}@example.com");
        let (days, key) = history(&changed, &email).await;
        assert_eq!((days.clone(), key), history(&reference, &email).await, "{email}");
        assert_eq!(days.len(), 2, "{email}: {days:?}");
    }
    assert_eq!(history(&changed, "p7@example.com").await, history(&reference, "p7@example.com").await);
    changed.stop().await;
    reference.stop().await;
}

async fn a_rebuild_asked_for_changes_nothing_that_was_right() {
    let server = TestServer::start().await;
    let fresh = server.get("/api/workspace/reprojection").await;
    assert_eq!(fresh["state"], "none", "a new workspace has nothing to rebuild: {fresh}");
    server.set_time_zone("Asia/Kolkata").await;
    server.run_jobs().await;
    send_all(&[&server], (0..3).map(identify).collect()).await;
    send_all(&[&server], (0..3).flat_map(|n| tracks(n, "Live")).collect()).await;
    server
        .send_json("/v1/track", &json!({"type": "track", "userId": "nobody", "event": "Pending", "messageId": "p"}))
        .await;
    let before = [history(&server, "p0@example.com").await, history(&server, "p2@example.com").await];

    let (status, started) = server.call(reqwest::Method::POST, "/api/workspace/reprojection", &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!((started["state"].as_str(), started["reason"].as_str()), (Some("running"), Some("asked for")));
    assert_eq!(server.run_jobs().await.reprojected, 3);
    let done = server.get("/api/workspace/reprojection").await;
    assert_eq!(done["state"], "finished");
    assert_eq!(done["events_done"], 3 + 3 * 4, "a pending event belongs to no contact: {done}");
    let after = [history(&server, "p0@example.com").await, history(&server, "p2@example.com").await];
    assert_eq!(before, after);
    server.stop().await;
}

/// Contact ids are shared by all workspaces, and a step reads its events and interactions by a
/// range of ids: the contacts of another workspace inside that range are neither read nor
/// rebuilt.
async fn a_rebuild_leaves_another_workspaces_contacts_alone() {
    let mut server = TestServer::start().await;
    let store = server.state.store.clone();
    let other = store.create_workspace("Bravo").await.unwrap();
    let (write_key, secret_key) = (generate_key(KeyKind::Write), generate_key(KeyKind::Secret));
    store.create_key(other.id, KeyKind::Write, "b write", &write_key).await.unwrap();
    store.create_key(other.id, KeyKind::Secret, "b secret", &secret_key).await.unwrap();
    let own = (server.write_key.clone(), server.secret_key.clone());
    let keys = [own.clone(), (write_key, secret_key)];
    // One contact in each workspace in turn, so that their ids interleave.
    for n in 0..4 {
        for (write, secret) in &keys {
            (server.write_key, server.secret_key) = (write.clone(), secret.clone());
            send_all(&[&server], vec![identify(n)]).await;
            send_all(&[&server], tracks(n, "Before")).await;
        }
    }
    let emails: Vec<String> = (0..4).map(|n| format!("p{n}@example.com")).collect();
    let mut other_before = Vec::new();
    for email in &emails {
        other_before.push(history(&server, email).await);
    }
    (server.write_key, server.secret_key) = own;
    let own_before = history(&server, "p0@example.com").await;

    server.set_time_zone(ZONE).await;
    assert_eq!(server.run_jobs().await.reprojected, 4);
    let done = server.get("/api/workspace/reprojection").await;
    assert_eq!(done["events_done"], 4 * 5, "only the workspace's own events are read: {done}");
    assert_ne!(history(&server, "p0@example.com").await, own_before, "the workspace's own days moved to {ZONE}");

    (server.write_key, server.secret_key) = keys[1].clone();
    let mut other_after = Vec::new();
    for email in &emails {
        other_after.push(history(&server, email).await);
    }
    assert_eq!(other_after, other_before);
    server.stop().await;
}

async fn the_settings_page_shows_the_rebuild_and_starts_one() {
    let server = TestServer::start().await;
    create_user(server.state.store.as_ref(), server.workspace, "founder@example.com", "correct horse battery")
        .await
        .unwrap();
    send_all(&[&server], (0..2).map(identify).collect()).await;
    let mut browser = Browser::new(&server);
    browser.sign_in("founder@example.com", "correct horse battery").await;
    let page = browser.get("/settings").await;
    assert!(page.body.contains("never needed rebuilding"), "{}", page.body);

    let csrf = page.csrf();
    let page = browser
        .post(
            "/settings/workspace",
            &[("_csrf", &csrf), ("name", "Test"), ("time_zone", ZONE), ("half_life_days", "30")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let page = browser.get("/settings").await;
    assert!(page.body.contains("Rebuilding the history (time zone changed)"), "{}", page.body);
    assert!(page.body.contains("<progress"), "{}", page.body);

    server.run_jobs().await;
    let page = browser.post("/settings/reproject", &[("_csrf", &page.csrf())]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("being rebuilt in the background"), "{}", page.body);
    server.run_jobs().await;
    let page = browser.get("/settings").await;
    assert!(page.body.contains("Rebuilt from 2 events of 2 contacts (asked for)"), "{}", page.body);
    server.stop().await;
}

crate::backend_tests!(
    a_time_zone_change_counts_every_day_again_while_events_keep_arriving,
    a_rebuild_asked_for_changes_nothing_that_was_right,
    a_rebuild_leaves_another_workspaces_contacts_alone,
    the_settings_page_shows_the_rebuild_and_starts_one,
);
