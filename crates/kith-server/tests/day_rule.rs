//! One activity interaction per contact per day, in the workspace's time zone, whatever the arrival
//! order, with replays and across batches; messageId idempotency.

mod common;

use common::TestServer;
use serde_json::{json, Value};

fn event(kind: &str, time: &str, description: &str, message_id: &str) -> Value {
    let mut event = json!({"type": kind, "userId": "u1", "timestamp": time, "messageId": message_id});
    match kind {
        "identify" => event["traits"] = json!({"email": "ada@example.com"}),
        _ => event["event"] = json!(description),
    }
    event
}

async fn the_first_event_of_the_day_sets_the_description_whatever_the_arrival_order() {
    let server = TestServer::start().await;
    server.ingest("/v1/identify", &event("identify", "2024-06-05T08:00:00Z", "", "m0")).await;
    // Later in the day first, then an earlier one, in separate requests.
    server.ingest("/v1/track", &event("track", "2024-06-06T18:00:00Z", "Exported", "m1")).await;
    server.ingest("/v1/track", &event("track", "2024-06-06T09:00:00Z", "Logged In", "m2")).await;
    server.ingest("/v1/track", &event("track", "2024-06-06T12:00:00Z", "Invited", "m3")).await;
    let timeline = server.timeline("ada@example.com").await;
    assert_eq!(timeline.len(), 2, "{timeline:?}");
    assert_eq!(timeline[0]["day"], "2024-06-06");
    assert_eq!(timeline[0]["description"], "Logged In");
    assert_eq!(timeline[0]["occurred_at"], "2024-06-06T09:00:00Z");
    assert_eq!(timeline[0]["hits"], 3);
    assert_eq!(timeline[1]["day"], "2024-06-05");
    server.stop().await;
}

async fn out_of_order_within_one_batch_and_across_batches_agree() {
    let a = TestServer::start().await;
    let b = TestServer::start().await;
    let events = vec![
        event("identify", "2024-06-05T08:00:00Z", "", "m0"),
        event("track", "2024-06-05T20:00:00Z", "Late", "m1"),
        event("track", "2024-06-05T07:00:00Z", "Early", "m2"),
        event("track", "2024-06-05T12:00:00Z", "Noon", "m3"),
    ];
    a.ingest("/v1/batch", &json!({"batch": events})).await;
    for e in events.iter().rev() {
        b.ingest("/v1/events", e).await;
    }
    for server in [&a, &b] {
        let timeline = server.timeline("ada@example.com").await;
        assert_eq!(timeline.len(), 1);
        assert_eq!(timeline[0]["description"], "Early");
        assert_eq!(timeline[0]["occurred_at"], "2024-06-05T07:00:00Z");
        assert_eq!(timeline[0]["hits"], 4);
    }
    a.stop().await;
    b.stop().await;
}

async fn days_are_counted_in_the_workspace_time_zone() {
    let server = TestServer::start().await;
    server.set_time_zone("America/Los_Angeles").await;
    // 2024-06-06T06:30Z is 23:30 on June 5th in Los Angeles; 07:30Z is 00:30 on June 6th.
    server.ingest("/v1/identify", &event("identify", "2024-06-05T20:00:00Z", "", "m0")).await;
    server.ingest("/v1/track", &event("track", "2024-06-06T06:30:00Z", "Before midnight", "m1")).await;
    server.ingest("/v1/track", &event("track", "2024-06-06T07:30:00Z", "After midnight", "m2")).await;
    let timeline = server.timeline("ada@example.com").await;
    let days: Vec<(&str, &str, i64)> = timeline
        .iter()
        .map(|i| (i["day"].as_str().unwrap(), i["description"].as_str().unwrap(), i["hits"].as_i64().unwrap()))
        .collect();
    assert_eq!(days, [("2024-06-06", "After midnight", 1), ("2024-06-05", "Active in your product", 2)]);

    // The same instants in UTC would have split differently.
    let utc = TestServer::start().await;
    utc.ingest("/v1/identify", &event("identify", "2024-06-05T20:00:00Z", "", "m0")).await;
    utc.ingest("/v1/track", &event("track", "2024-06-06T06:30:00Z", "Before midnight", "m1")).await;
    utc.ingest("/v1/track", &event("track", "2024-06-06T07:30:00Z", "After midnight", "m2")).await;
    let days: Vec<i64> = utc.timeline("ada@example.com").await.iter().map(|i| i["hits"].as_i64().unwrap()).collect();
    assert_eq!(days, [2, 1]);
    server.stop().await;
    utc.stop().await;
}

async fn a_replayed_message_id_changes_nothing() {
    let server = TestServer::start().await;
    server.ingest("/v1/identify", &event("identify", "2024-06-05T08:00:00Z", "", "m0")).await;
    let track = event("track", "2024-06-05T09:00:00Z", "Clicked", "m1");
    server.ingest("/v1/track", &track).await;
    let before = server.contact("ada@example.com").await;
    for _ in 0..3 {
        let answer = server.ingest("/v1/track", &track).await;
        assert_eq!(answer["success"], true, "a replay is acknowledged");
    }
    let answer = server.ingest("/v1/batch", &json!({"batch": [track.clone(), track.clone()]})).await;
    assert_eq!(answer["accepted"], 2);
    let timeline = server.timeline("ada@example.com").await;
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0]["hits"], 2, "identify and the one track");
    let events = server.get(&format!("/api/contacts/{}/events", before["id"])).await;
    assert_eq!(events["items"].as_array().unwrap().len(), 2);
    assert_eq!(server.contact("ada@example.com").await["closeness"], before["closeness"]);

    // Without a messageId, the very same body is recognised too.
    let anonymous = json!({"type":"track","userId":"u1","event":"Retried","timestamp":"2024-06-07T09:00:00Z"});
    server.ingest("/v1/track", &anonymous).await;
    server.ingest("/v1/track", &anonymous).await;
    assert_eq!(server.timeline("ada@example.com").await[0]["hits"], 1);
    server.stop().await;
}

async fn concurrent_requests_for_one_day_make_one_interaction() {
    let server = TestServer::start().await;
    server.ingest("/v1/identify", &event("identify", "2024-06-04T08:00:00Z", "", "m0")).await;
    // 40 events of June 5th, each with its own description, all in flight at once; the
    // earliest (09:00, "Step 20") is neither the first nor the last one sent.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = server.client.clone();
        let url = format!("{}/v1/track", server.url);
        let auth = server.basic();
        let minute = (i + 20) % 40;
        let body = event("track", &format!("2024-06-05T09:{minute:02}:00Z"), &format!("Step {i}"), &format!("c{i}"));
        tasks.push(tokio::spawn(async move {
            client.post(url).header("authorization", auth).body(body.to_string()).send().await.unwrap().status()
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().is_success());
    }
    let timeline = server.timeline("ada@example.com").await;
    assert_eq!(timeline.len(), 2, "{timeline:?}");
    assert_eq!(timeline[0]["day"], "2024-06-05");
    assert_eq!(timeline[0]["hits"], 40);
    assert_eq!(timeline[0]["description"], "Step 20");
    assert_eq!(timeline[0]["occurred_at"], "2024-06-05T09:00:00Z");
    server.stop().await;
}

async fn across_batches_each_day_keeps_its_earliest_event() {
    let server = TestServer::start().await;
    server.ingest("/v1/identify", &event("identify", "2024-06-01T23:00:00Z", "", "m0")).await;
    // Three days, four events each (06:00 the earliest), every one with its own description,
    // spread over batches so that each day's earliest event arrives between later ones.
    let mut events = Vec::new();
    for day in 2..=4 {
        for hour in [15, 6, 11, 20] {
            let time = format!("2024-06-{day:02}T{hour:02}:00:00Z");
            events.push(event("track", &time, &format!("Day {day} at {hour}"), &format!("d{day}-{hour}")));
        }
    }
    for batch in [[11, 0, 4], [1, 8, 5], [6, 9, 3]] {
        let batch: Vec<Value> = batch.iter().map(|&n| events[n].clone()).collect();
        server.ingest("/v1/batch", &json!({ "batch": batch })).await;
    }
    let summary = |timeline: &[Value]| -> Vec<(String, String, String, i64)> {
        timeline
            .iter()
            .map(|i| {
                let text = |field: &str| i[field].as_str().unwrap().to_owned();
                (text("day"), text("description"), text("occurred_at"), i["hits"].as_i64().unwrap())
            })
            .collect()
    };
    let expected = |day: u32, hour: u32, hits: i64| {
        (
            format!("2024-06-{day:02}"),
            format!("Day {day} at {hour}"),
            format!("2024-06-{day:02}T{hour:02}:00:00Z"),
            hits,
        )
    };
    assert_eq!(
        summary(&server.timeline("ada@example.com").await)[..3],
        [expected(4, 6, 3), expected(3, 6, 3), expected(2, 6, 3)]
    );
    // The last event of every day, as a batch of its own.
    let rest: Vec<Value> = [10, 7, 2].iter().map(|&n| events[n].clone()).collect();
    server.ingest("/v1/batch", &json!({ "batch": rest })).await;
    assert_eq!(
        summary(&server.timeline("ada@example.com").await)[..3],
        [expected(4, 6, 4), expected(3, 6, 4), expected(2, 6, 4)]
    );
    server.stop().await;
}

crate::backend_tests!(
    the_first_event_of_the_day_sets_the_description_whatever_the_arrival_order,
    out_of_order_within_one_batch_and_across_batches_agree,
    days_are_counted_in_the_workspace_time_zone,
    a_replayed_message_id_changes_nothing,
    concurrent_requests_for_one_day_make_one_interaction,
    across_batches_each_day_keeps_its_earliest_event,
);
