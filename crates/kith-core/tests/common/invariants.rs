//! What every reading of an ingest body must satisfy, whatever the bytes: shared by the
//! randomized test (`tests/random_input.rs`, every `cargo test`) and the fuzz target
//! (`fuzz/fuzz_targets/parse_body.rs`, run for minutes with `scripts/fuzz.sh`).

use jiff::Timestamp;
use kith_core::closeness::{days_of_millis, log_add_exp, InteractionKind, Model};
use kith_core::envelope::{self, BodyShape, MAX_BATCH_EVENTS, MAX_EVENT_BYTES};
use kith_core::event::{parse_event, EventKind, EventType, ParseContext, Parsed};
use kith_core::identity::{normalize_email, usable_id};
use kith_core::time::{day_key, time_zone, MAX_FUTURE};
use kith_core::Rejection;

/// Reads `body` as every ingest route would and checks each answer. Panics on a violation,
/// which is what the fuzzer and the test look for; a parser panic is found the same way.
pub fn check_body(body: &[u8]) {
    let now = Timestamp::from_second(1_717_000_000).expect("a valid time");
    for shape in [BodyShape::Single, BodyShape::Batch] {
        match envelope::split(body, shape) {
            Err(rejection) => check_rejection(&rejection),
            Ok(envelope) => {
                assert!(!envelope.is_empty(), "an empty batch is refused, not read");
                assert!(envelope.len() <= MAX_BATCH_EVENTS);
                for item in envelope.items() {
                    for route_type in [None, Some(EventType::Identify), Some(EventType::Track)] {
                        check_item(item, &ParseContext::live(route_type, now));
                    }
                }
            }
        }
    }
}

fn check_rejection(rejection: &Rejection) {
    assert!(!rejection.code.as_str().is_empty());
    assert!(!rejection.message.trim().is_empty(), "a refusal tells a person what to change: {rejection:?}");
}

fn check_item(item: envelope::Item<'_>, ctx: &ParseContext) {
    let first = parse_event(item, ctx);
    assert_eq!(first, parse_event(item, ctx), "reading an event is deterministic");
    let event = match first {
        Err(rejection) => return check_rejection(&rejection),
        Ok(Parsed::Skipped) => return,
        Ok(Parsed::Event(event)) => event,
    };
    assert!(event.payload.len() <= MAX_EVENT_BYTES, "an accepted event is within Segment's limit");
    let stored: serde_json::Value = serde_json::from_str(&event.payload).expect("the stored payload is JSON");
    assert!(stored.get("writeKey").is_none(), "the write key is never stored");
    let id = &event.message_id;
    assert!(!id.trim().is_empty() && id.chars().count() <= 100, "messageId {id:?}");
    if let Some(email) = &event.email {
        assert_eq!(normalize_email(email).as_deref(), Some(email.as_str()), "emails are stored normalised");
    }
    for id in [&event.user_id, &event.anonymous_id].into_iter().flatten() {
        assert_eq!(usable_id(id), Some(id.as_str()), "junk ids are never linked");
    }
    assert!(
        event.user_id.is_some() || event.anonymous_id.is_some() || event.email.is_some(),
        "an event reaches someone"
    );
    if let EventKind::Alias { previous_id } = &event.kind {
        assert_eq!(usable_id(previous_id), Some(previous_id.as_str()));
        assert!(event.user_id.is_some());
    }
    assert!(event.time.duration_since(ctx.now) <= MAX_FUTURE, "the future is clamped");
    assert_eq!(event.received_at, ctx.now);
    // The day key and the closeness term of any accepted time are computable in any zone.
    for zone in ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"] {
        let day = day_key(event.time, &time_zone(zone).expect("a known zone"));
        let term = Model::default().term(InteractionKind::Activity, f64::from(day));
        assert!(log_add_exp(None, term).is_finite());
    }
    assert!(days_of_millis(event.time.as_millisecond()).is_finite());
}
