//! Engage (Personas) deliveries (`fixtures/engage/`): audience memberships from identify and
//! from Audience Entered/Exited, their history, and computed traits.

mod common;

use common::{fixture, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn buyer_enters_and_exits_audiences_and_gets_a_computed_trait() {
    let server = TestServer::start().await;
    for file in [
        "audience-identify.json",
        "audience-entered-track.json",
        "computed-trait-identify.json",
        "audience-exit-identify.json",
    ] {
        let (status, body) = server.send("/v1/events", fixture(&format!("engage/{file}"))).await;
        assert_eq!(status, StatusCode::OK, "{file}: {body}");
    }
    assert_eq!(server.emails().await, ["buyer@example.com"]);
    let contact = server.contact("buyer@example.com").await;
    assert_eq!(contact["traits"]["lifetime_orders"], 17);
    assert_eq!(contact["computed_traits"], serde_json::json!(["lifetime_orders"]));
    let memberships: Vec<(&str, bool, &str)> = contact["audiences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (m["audience"].as_str().unwrap(), m["is_member"].as_bool().unwrap(), m["changed_at"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        memberships,
        [("power_users", true, "2024-05-04T10:00:00Z"), ("order_completed_last_30days", false, "2024-06-10T08:00:00Z")]
    );
    assert!(server.timeline("buyer@example.com").await.is_empty(), "an Engage sync is not the person being active");

    let audience = server.get("/api/audiences/order_completed_last_30days").await;
    assert_eq!(audience["member_count"], 0);
    assert_eq!(audience["entered_count"], 1);
    assert_eq!(audience["exited_count"], 1);
    assert_eq!(audience["computation_id"], "aud_2djnfxHHnYGVQfOAEBroQ9Ti87N");
    assert_eq!(audience["space_id"], "spa_o1E9fAxCkCzjp6rLG1ptWR");
    let history: Vec<(bool, &str)> = audience["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["entered"].as_bool().unwrap(), h["at"].as_str().unwrap()))
        .collect();
    assert_eq!(history, [(false, "2024-06-10T08:00:00Z"), (true, "2024-05-03T19:42:50.066Z")]);

    let power = server.get("/api/audiences/power_users").await;
    assert_eq!(power["member_count"], 1);
    assert_eq!(power["members"][0]["email"], "buyer@example.com");
    let list = server.get("/api/audiences").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let filtered = server.get("/api/contacts?audience=power_users").await;
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    let filtered = server.get("/api/contacts?audience=order_completed_last_30days").await;
    assert!(filtered["items"].as_array().unwrap().is_empty());
    server.stop().await;
}

async fn a_late_older_change_does_not_undo_a_newer_one() {
    let server = TestServer::start().await;
    // The exit (June 10th) arrives before the entry (May 3rd).
    for file in ["audience-exit-identify.json", "audience-identify.json"] {
        let (status, _) = server.send("/v1/events", fixture(&format!("engage/{file}"))).await;
        assert_eq!(status, StatusCode::OK);
    }
    let audience = server.get("/api/audiences/order_completed_last_30days").await;
    assert_eq!(audience["member_count"], 0, "the newest change wins");
    assert_eq!(audience["history"].as_array().unwrap().len(), 2);
    server.stop().await;
}

/// A change of membership in the `vip` audience, as an Engage identify or as an
/// `Audience Entered`/`Audience Exited` track.
fn vip_change(as_track: bool, entered: bool, time: &str) -> Value {
    let personas = json!({"computation_class": "audience", "computation_key": "vip", "computation_id": "aud_vip"});
    if as_track {
        let event = if entered { "Audience Entered" } else { "Audience Exited" };
        json!({"type": "track", "userId": "u1", "event": event, "timestamp": time,
            "properties": {"audience_key": "vip", "vip": entered}, "context": {"personas": personas}})
    } else {
        json!({"type": "identify", "userId": "u1", "timestamp": time,
            "traits": {"email": "ada@example.com", "vip": entered}, "context": {"personas": personas}})
    }
}

async fn the_newest_membership_change_wins_in_both_directions_and_on_both_paths() {
    const NEWER: &str = "2024-06-10T08:00:00Z";
    const OLDER: &str = "2024-05-03T08:00:00Z";
    for newer_entered in [true, false] {
        for (newer_as_track, older_as_track) in [(false, true), (true, false), (true, true)] {
            let case = format!(
                "newer {} as a {}, older as a {}",
                if newer_entered { "entry" } else { "exit" },
                if newer_as_track { "track" } else { "identify" },
                if older_as_track { "track" } else { "identify" }
            );
            let server = TestServer::start().await;
            server
                .ingest("/v1/identify", &json!({"userId": "u1", "traits": {"email": "ada@example.com"}, "timestamp": "2024-05-01T08:00:00Z"}))
                .await;
            // The newer change arrives first, the older one late.
            server.ingest("/v1/events", &vip_change(newer_as_track, newer_entered, NEWER)).await;
            server.ingest("/v1/events", &vip_change(older_as_track, !newer_entered, OLDER)).await;

            let contact = server.contact("ada@example.com").await;
            let memberships: Vec<(&str, bool, &str)> = contact["audiences"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["audience"].as_str().unwrap(),
                        m["is_member"].as_bool().unwrap(),
                        m["changed_at"].as_str().unwrap(),
                    )
                })
                .collect();
            assert_eq!(memberships, [("vip", newer_entered, NEWER)], "{case}");
            let filtered = server.get("/api/contacts?audience=vip").await;
            let emails: Vec<&str> =
                filtered["items"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap()).collect();
            let expected: &[&str] = if newer_entered { &["ada@example.com"] } else { &[] };
            assert_eq!(emails, expected, "{case}");
            let audience = server.get("/api/audiences/vip").await;
            assert_eq!(audience["member_count"], i64::from(newer_entered), "{case}");
            let history: Vec<(bool, &str)> = audience["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h["entered"].as_bool().unwrap(), h["at"].as_str().unwrap()))
                .collect();
            assert_eq!(history, [(newer_entered, NEWER), (!newer_entered, OLDER)], "{case}: both changes are history");
            server.stop().await;
        }
    }
}

crate::backend_tests!(
    buyer_enters_and_exits_audiences_and_gets_a_computed_trait,
    a_late_older_change_does_not_undo_a_newer_one,
    the_newest_membership_change_wins_in_both_directions_and_on_both_paths,
);
