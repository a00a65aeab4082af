//! What started entries in a past window, for the backtests of journeys and rules: closeness
//! bucket changes recomputed from a contact's interactions, the moments it became due, and an
//! account's health changes read from its daily record. The live passes notice these as they
//! happen; a backtest finds them again in what is stored, with the same model and the same
//! trigger matching.

use crate::closeness::{Bucket, InteractionKind, Model};
use crate::health::Band;
use crate::rules::Trigger;

/// The bucket below, towards cold.
fn lower(bucket: Bucket) -> Option<Bucket> {
    match bucket {
        Bucket::Close => Some(Bucket::Warm),
        Bucket::Warm => Some(Bucket::Cooling),
        Bucket::Cooling => Some(Bucket::Cold),
        Bucket::Cold => None,
    }
}

/// Every bucket change of a contact with these interactions (time in days, in time order) up
/// to `until` days, as `(when, from, to)`: an interaction that lifts the score into another
/// bucket changes it at once, and the score decaying below a bucket's floor changes it at the
/// moment it crosses. A contact starts cold, as the nudge pass counts one it never saw.
pub fn bucket_changes(
    model: &Model,
    interactions: &[(InteractionKind, f64)],
    until: f64,
) -> Vec<(f64, Bucket, Bucket)> {
    let mut changes = Vec::new();
    let mut key: Option<f64> = None;
    let mut bucket = Bucket::Cold;
    // The decay crossings strictly before `before`.
    let decay = |key: Option<f64>, bucket: &mut Bucket, before: f64, changes: &mut Vec<(f64, Bucket, Bucket)>| {
        let Some(key) = key else { return };
        while let Some(below) = lower(*bucket) {
            let crossing = model.tau() * (key - Model::min_raw(bucket.min_score()).ln());
            if crossing >= before {
                break;
            }
            changes.push((crossing, *bucket, below));
            *bucket = below;
        }
    };
    for &(kind, t) in interactions.iter().filter(|(kind, t)| kind.counts() && *t <= until) {
        decay(key, &mut bucket, t, &mut changes);
        key = Some(model.add(key, kind, t));
        let now = model.closeness(key, t).bucket;
        if now != bucket {
            changes.push((t, bucket, now));
            bucket = now;
        }
    }
    decay(key, &mut bucket, until, &mut changes);
    changes
}

/// The moments (ms) in `[since, until]` a contact with a cadence of `cadence_days` became due:
/// that many days after each interaction not followed by another in time, or after its
/// creation when nothing came before. `interactions` are times in ms, in time order.
pub fn due_dates(created_at: i64, cadence_days: i64, interactions: &[i64], since: i64, until: i64) -> Vec<i64> {
    let cadence = cadence_days.saturating_mul(86_400_000);
    let starts = std::iter::once(created_at).chain(interactions.iter().copied().filter(|&t| t >= created_at));
    let mut starts: Vec<i64> = starts.collect();
    starts.dedup();
    starts
        .iter()
        .enumerate()
        .filter_map(|(i, &start)| {
            let due = start.saturating_add(cadence);
            let next = starts.get(i + 1).copied().unwrap_or(i64::MAX);
            (due < next && (since..=until).contains(&due)).then_some(due)
        })
        .collect()
}

/// One day of an account's health record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthDay {
    /// The day key.
    pub day: i32,
    /// 0 to 100.
    pub score: i64,
    /// The band of the score.
    pub band: Band,
    /// When it was recorded (ms).
    pub at: i64,
}

/// A change of an account's health a trigger matches.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthChange {
    /// The day before.
    pub before: HealthDay,
    /// The day it was seen.
    pub now: HealthDay,
    /// What identifies it, as the live pass records it.
    pub occurrence: String,
    /// What people read.
    pub text: String,
}

/// The changes of one account's daily record (in day order) that `when` matches. The live
/// pass looks more often than once a day; the record keeps one score a day, so a change and
/// its reversal within a day are not seen here.
pub fn health_changes(when: &Trigger, days: &[HealthDay]) -> Vec<HealthChange> {
    let recorded: Vec<(i32, i64)> = days.iter().map(|day| (day.day, day.score)).collect();
    days.windows(2)
        .enumerate()
        .filter_map(|(i, pair)| {
            let (before, now) = (pair[0], pair[1]);
            let (occurrence, text) = when.health_change(
                (Some(before.band), before.score),
                (now.band, now.score),
                &recorded[..=i],
                now.day,
                now.at,
            )?;
            Some(HealthChange { before, now, occurrence, text })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model() -> Model {
        Model::default()
    }

    #[test]
    fn interactions_lift_the_bucket_and_decay_lowers_it_one_floor_at_a_time() {
        let model = model();
        // One meeting (weight 5 by default) at day 100, then nothing.
        let changes = bucket_changes(&model, &[(InteractionKind::Meeting, 100.0)], 400.0);
        let path: Vec<(Bucket, Bucket)> = changes.iter().map(|(_, from, to)| (*from, *to)).collect();
        let first = changes[0];
        assert_eq!(first.0, 100.0, "the interaction changes the bucket at once");
        assert_eq!(path.last().unwrap().1, Bucket::Cold, "{changes:?}");
        for pair in changes.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{changes:?}");
            assert_eq!(pair[0].2, pair[1].1, "each change starts where the last ended: {changes:?}");
        }
        // At each crossing the model itself agrees: just before, the old bucket; just after, the new.
        let key = Some(model.add(None, InteractionKind::Meeting, 100.0));
        for (t, from, to) in &changes[1..] {
            assert_eq!(model.closeness(key, t - 1e-6).bucket, *from);
            assert_eq!(model.closeness(key, t + 1e-6).bucket, *to);
        }
        // Stopping the window early keeps only what happened before its end.
        let early = bucket_changes(&model, &[(InteractionKind::Meeting, 100.0)], changes[1].0 - 0.5);
        assert_eq!(early, changes[..1]);
        // Activity that keeps a contact where it is changes nothing.
        assert!(bucket_changes(&model, &[], 10.0).is_empty());
    }

    #[test]
    fn a_contact_is_due_a_cadence_after_its_last_interaction() {
        let day = 86_400_000;
        // Created at 0, cadence 7 days, interactions at day 3 and day 20.
        let due = due_dates(0, 7, &[3 * day, 20 * day], 0, 40 * day);
        assert_eq!(due, [10 * day, 27 * day], "after day 3 (the next came later), after day 20");
        // An interaction before the due date restarts the timer: nothing due at 7.
        assert_eq!(due_dates(0, 7, &[5 * day], 0, 10 * day), Vec::<i64>::new());
        // Nothing ever: due a cadence after creation; outside the window, not counted.
        assert_eq!(due_dates(0, 7, &[], 0, 40 * day), [7 * day]);
        assert_eq!(due_dates(0, 7, &[], 8 * day, 40 * day), Vec::<i64>::new());
    }

    #[test]
    fn health_changes_are_read_from_the_daily_record() {
        let record = |day: i32, score: i64, band: Band| HealthDay { day, score, band, at: i64::from(day) * 1000 };
        let days = [
            record(1, 100, Band::Healthy),
            record(2, 90, Band::Healthy),
            record(3, 20, Band::AtRisk),
            record(4, 80, Band::Healthy),
        ];
        let into_risk: Trigger = serde_json::from_value(json!({"health_band_changed": {"to": "at_risk"}})).unwrap();
        let found = health_changes(&into_risk, &days);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].now.day, found[0].text.as_str()), (3, "became at risk (was healthy)"));
        let fall: Trigger =
            serde_json::from_value(json!({"health_dropped": {"points": 50, "within_days": 7}})).unwrap();
        let found = health_changes(&fall, &days);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].text, "fell from 100 to 20 (now at risk)");
    }
}
