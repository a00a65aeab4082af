//! A contact's row as the writer changes it, with the same rules for every backend: traits
//! merged in order, first/last seen, the closeness history, the cadence in force and the
//! due date that follows from it. Backends only load and save it.

use kith_core::closeness::{days_of_millis, History, InteractionKind, Model, MS_PER_DAY};
use kith_core::profile::{display_name, merge_traits};
use serde_json::{Map, Value};

use crate::plan::ContactChange;

/// The mutable part of a contact row.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactState {
    /// Merged traits.
    pub traits: Map<String, Value>,
    /// Traits Engage computed.
    pub computed: Vec<String>,
    /// Key, latest interaction time and last warm moment.
    pub closeness: History,
    /// Earliest event time (ms).
    pub first_seen_at: i64,
    /// Latest event time (ms).
    pub last_seen_at: i64,
    /// Latest interaction that counts (ms).
    pub last_interaction_at: Option<i64>,
    /// The contact's own cadence.
    pub cadence_days: Option<i64>,
    /// The shortest cadence of its audience and account rules.
    pub inherited_cadence: Option<i64>,
    /// Created (ms): the due timer's start when there is no interaction yet.
    pub created_at: i64,
}

impl ContactState {
    /// Applies what a batch did to the contact. Returns whether its profile (traits or
    /// computed traits) changed, so that a backend rewrites the profile columns only then.
    pub fn apply(&mut self, change: &ContactChange) -> bool {
        let mut profile_changed = merge_traits(&mut self.traits, &change.traits_patch);
        for key in &change.computed {
            if !self.computed.contains(key) {
                profile_changed = true;
                self.computed.push(key.clone());
            }
        }
        if let Some(first) = change.first_seen_at {
            self.first_seen_at = self.first_seen_at.min(first);
        }
        if let Some(last) = change.last_seen_at {
            self.last_seen_at = self.last_seen_at.max(last);
        }
        if let Some(last) = change.last_interaction_at {
            self.note_interaction(last);
        }
        profile_changed
    }

    /// Adds new interactions to the closeness history in O(1) each; `false` when one is older
    /// than the latest, and the history must be rebuilt from the stored interactions.
    pub fn extend_closeness(&mut self, model: &Model, mut interactions: Vec<(InteractionKind, f64)>) -> bool {
        interactions.sort_by(|a, b| a.1.total_cmp(&b.1));
        interactions.into_iter().all(|(kind, t)| model.extend(&mut self.closeness, kind, t))
    }

    /// An interaction happened at `at` (ms): the due timer restarts.
    pub fn note_interaction(&mut self, at: i64) {
        self.last_interaction_at = Some(self.last_interaction_at.map_or(at, |t| t.max(at)));
    }

    /// The cadence in force: the contact's own, else the inherited one.
    pub fn effective_cadence(&self) -> Option<i64> {
        self.cadence_days.or(self.inherited_cadence)
    }

    /// When the contact is due (ms).
    pub fn due_at(&self) -> Option<i64> {
        self.effective_cadence()
            .map(|days| self.last_interaction_at.unwrap_or(self.created_at) + days * MS_PER_DAY as i64)
    }

    /// The display name the traits give.
    pub fn name(&self) -> Option<String> {
        display_name(&self.traits)
    }

    /// The last warm moment in ms, as stored.
    pub fn warm_until_ms(&self) -> Option<i64> {
        self.closeness.warm_until.map(millis_of_days)
    }

    /// Reads the last warm moment back from its stored ms.
    pub fn warm_until_from_ms(ms: Option<i64>) -> Option<f64> {
        ms.map(days_of_millis)
    }
}

/// When an activity counts for closeness: the start of its day, so that the key depends only
/// on which days had activity, not on which event of the day arrived first.
pub fn activity_time(day: i32) -> f64 {
    f64::from(day)
}

/// The kind and closeness time of a stored interaction: activity from the start of its day,
/// the others from their time.
pub fn interaction_time(kind: &str, day: i32, at: i64) -> (InteractionKind, f64) {
    match InteractionKind::parse(kind).unwrap_or(InteractionKind::Activity) {
        InteractionKind::Activity => (InteractionKind::Activity, activity_time(day)),
        kind => (kind, days_of_millis(at)),
    }
}

/// Days (the model's unit) to stored milliseconds.
pub fn millis_of_days(days: f64) -> i64 {
    (days * MS_PER_DAY).round() as i64
}
