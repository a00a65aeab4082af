//! The closeness indicator, made exact and cheap to sort by.
//!
//! Each interaction `i` has a time `t_i` (in days) and a weight `w_i`. With half-life `H` and
//! `τ = H / ln 2`, the raw value at time `t` is `Σ w_i · exp(−(t − t_i)/τ)` and the score is
//! `round(100 · (1 − exp(−raw/K)))`, `K = 3`.
//!
//! Instead of recomputing sums, each contact stores `key = ln Σ w_i · exp(t_i/τ)`. A new
//! interaction is one log-add-exp, the result does not depend on the order interactions
//! arrive in, and `raw(t) = exp(key − t/τ)`. Because `t/τ` is the same for every contact,
//! ordering contacts by `key` is ordering them by closeness at *any* moment, and every
//! threshold on the score ("warm or better now") is a threshold on `key`: an index range.

use serde::{Deserialize, Serialize};

/// The saturation constant of the score curve.
pub const K: f64 = 3.0;

/// Milliseconds in a day: the model counts time in days.
pub const MS_PER_DAY: f64 = 86_400_000.0;

/// The kinds of interaction on a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionKind {
    /// Product activity: at most one per contact per day.
    Activity,
    /// A note written by a person.
    Note,
    /// An email exchanged.
    Email,
    /// A call.
    Call,
    /// A meeting.
    Meeting,
    /// A nudge kith sent about the contact: shown on the timeline, not an interaction with
    /// the person, so it moves neither closeness nor the due date.
    Nudge,
}

impl InteractionKind {
    /// All kinds, in display order.
    pub const ALL: [InteractionKind; 6] = [
        InteractionKind::Activity,
        InteractionKind::Note,
        InteractionKind::Email,
        InteractionKind::Call,
        InteractionKind::Meeting,
        InteractionKind::Nudge,
    ];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            InteractionKind::Activity => "activity",
            InteractionKind::Note => "note",
            InteractionKind::Email => "email",
            InteractionKind::Call => "call",
            InteractionKind::Meeting => "meeting",
            InteractionKind::Nudge => "nudge",
        }
    }

    /// Whether it counts for closeness and resets the due timer.
    pub fn counts(self) -> bool {
        self != InteractionKind::Nudge
    }

    /// Whether a person may add it by hand.
    pub fn is_manual(self) -> bool {
        matches!(
            self,
            InteractionKind::Note | InteractionKind::Email | InteractionKind::Call | InteractionKind::Meeting
        )
    }

    /// Parses the name used in the API and the database.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Weights per interaction kind (defaults: activity 1, note 1, email 2, call 3, meeting 3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// Product activity.
    pub activity: f64,
    /// A note written by hand.
    pub note: f64,
    /// An email, logged by hand.
    pub email: f64,
    /// A call, logged by hand.
    pub call: f64,
    /// A meeting, logged by hand.
    pub meeting: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { activity: 1.0, note: 1.0, email: 2.0, call: 3.0, meeting: 3.0 }
    }
}

impl Weights {
    /// The weight of one interaction of `kind`.
    pub fn of(&self, kind: InteractionKind) -> f64 {
        match kind {
            InteractionKind::Activity => self.activity,
            InteractionKind::Note => self.note,
            InteractionKind::Email => self.email,
            InteractionKind::Call => self.call,
            InteractionKind::Meeting => self.meeting,
            InteractionKind::Nudge => 0.0,
        }
    }
}

/// Closeness buckets: close ≥ 70, warm ≥ 40, cooling ≥ 15, cold below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// Score below 15 (or no interactions at all).
    Cold,
    /// Score 15–39.
    Cooling,
    /// Score 40–69.
    Warm,
    /// Score 70–100.
    Close,
}

impl Bucket {
    /// All buckets, closest first.
    pub const ALL: [Bucket; 4] = [Bucket::Close, Bucket::Warm, Bucket::Cooling, Bucket::Cold];

    /// The bucket a score falls in.
    pub fn of_score(score: u8) -> Bucket {
        match score {
            70.. => Bucket::Close,
            40..=69 => Bucket::Warm,
            15..=39 => Bucket::Cooling,
            _ => Bucket::Cold,
        }
    }

    /// The lowest score of the bucket.
    pub fn min_score(self) -> u8 {
        match self {
            Bucket::Close => 70,
            Bucket::Warm => 40,
            Bucket::Cooling => 15,
            Bucket::Cold => 0,
        }
    }

    /// The lowest score of the next bucket up, if any.
    pub fn upper_score(self) -> Option<u8> {
        match self {
            Bucket::Close => None,
            Bucket::Warm => Some(70),
            Bucket::Cooling => Some(40),
            Bucket::Cold => Some(15),
        }
    }

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Close => "close",
            Bucket::Warm => "warm",
            Bucket::Cooling => "cooling",
            Bucket::Cold => "cold",
        }
    }

    /// Parses the name used in the API.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|bucket| bucket.as_str() == name)
    }
}

/// `ln(exp(a) + exp(b))` without overflow; `None` stands for "no interactions" (−∞).
pub fn log_add_exp(a: Option<f64>, b: f64) -> f64 {
    match a {
        None => b,
        Some(a) => {
            let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
            hi + (lo - hi).exp().ln_1p()
        }
    }
}

/// The closeness model of one workspace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    /// Days after which an interaction counts half.
    pub half_life_days: f64,
    /// Weight of each interaction kind.
    pub weights: Weights,
}

impl Default for Model {
    fn default() -> Self {
        Model { half_life_days: 30.0, weights: Weights::default() }
    }
}

/// A contact's closeness at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Closeness {
    /// 0–100.
    pub score: u8,
    /// The score's bucket.
    pub bucket: Bucket,
}

impl Model {
    /// `τ = H / ln 2`, in days.
    pub fn tau(&self) -> f64 {
        self.half_life_days / std::f64::consts::LN_2
    }

    /// The key contribution `ln w + t/τ` of one interaction at `t_days`.
    pub fn term(&self, kind: InteractionKind, t_days: f64) -> f64 {
        self.weights.of(kind).ln() + t_days / self.tau()
    }

    /// The key after adding one interaction.
    pub fn add(&self, key: Option<f64>, kind: InteractionKind, t_days: f64) -> f64 {
        log_add_exp(key, self.term(kind, t_days))
    }

    /// `raw(t) = exp(key − t/τ)`; zero without interactions.
    pub fn raw(&self, key: Option<f64>, now_days: f64) -> f64 {
        key.map_or(0.0, |key| (key - now_days / self.tau()).exp())
    }

    /// The 0–100 score and bucket at `now_days`.
    pub fn closeness(&self, key: Option<f64>, now_days: f64) -> Closeness {
        let score = score_of_raw(self.raw(key, now_days));
        Closeness { score, bucket: Bucket::of_score(score) }
    }

    /// The smallest key whose score is at least `score` at `now_days`; `None` for a score of
    /// zero (every contact qualifies, including those with no key).
    pub fn key_for_score(&self, score: u8, now_days: f64) -> Option<f64> {
        if score == 0 {
            return None;
        }
        // round(100·(1 − e^(−raw/K))) ≥ s  ⇔  raw ≥ −K·ln(1 − (s − 0.5)/100)
        Some(Self::min_raw(score).ln() + now_days / self.tau())
    }
}

/// What a contact's closeness remembers between interactions.
///
/// Besides the key it keeps the time of its latest interaction and the last moment its score
/// was warm or better (≥ 40). Right after interaction `i` the score's raw value is
/// `exp(K_i − t_i/τ)`, where `K_i` sums the interactions up to `t_i`; it stays warm until
/// `τ·(K_i − ln r₄₀)`. So adding interactions in time order keeps "last warm" in O(1); an
/// interaction older than the latest changes every later `K_i` and needs [`Model::rebuild`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct History {
    /// `ln Σ w·exp(t/τ)`; `None` without interactions.
    pub key: Option<f64>,
    /// The latest interaction's time, in days.
    pub last_t: Option<f64>,
    /// The last moment, in days, at which the score was warm or better.
    pub warm_until: Option<f64>,
}

impl Model {
    /// The smallest raw value that rounds to `score`.
    pub fn min_raw(score: u8) -> f64 {
        -K * (1.0 - (f64::from(score.min(100)) - 0.5) / 100.0).ln()
    }

    /// Adds an interaction of `kind` at `t` days; returns `false` (leaving `history` as it
    /// was) when `t` is older than the latest interaction: then [`Model::rebuild`] is needed.
    pub fn extend(&self, history: &mut History, kind: InteractionKind, t: f64) -> bool {
        if !kind.counts() {
            return true;
        }
        if history.last_t.is_some_and(|last| t < last) {
            return false;
        }
        let key = self.add(history.key, kind, t);
        history.key = Some(key);
        history.last_t = Some(t);
        let warm_until = self.tau() * (key - Self::min_raw(Bucket::Warm.min_score()).ln());
        if warm_until >= t {
            history.warm_until = Some(history.warm_until.map_or(warm_until, |w| w.max(warm_until)));
        }
        true
    }

    /// The history of a set of interactions, whatever order they come in.
    pub fn rebuild(&self, interactions: impl IntoIterator<Item = (InteractionKind, f64)>) -> History {
        let mut sorted: Vec<(InteractionKind, f64)> = interactions.into_iter().collect();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut history = History::default();
        for (kind, t) in sorted {
            self.extend(&mut history, kind, t);
        }
        history
    }
}

/// `round(100 · (1 − exp(−raw/K)))`.
pub fn score_of_raw(raw: f64) -> u8 {
    (100.0 * (1.0 - (-raw / K).exp())).round().clamp(0.0, 100.0) as u8
}

/// Milliseconds since the Unix epoch to days, the model's unit of time.
pub fn days_of_millis(ms: i64) -> f64 {
    ms as f64 / MS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-9;

    fn key_of(model: &Model, interactions: &[(InteractionKind, f64)]) -> Option<f64> {
        interactions.iter().fold(None, |key, &(kind, t)| Some(model.add(key, kind, t)))
    }

    #[test]
    fn the_key_does_not_depend_on_arrival_order() {
        let model = Model::default();
        let mut interactions = vec![
            (InteractionKind::Activity, 19_000.0),
            (InteractionKind::Call, 19_010.5),
            (InteractionKind::Activity, 18_900.0),
            (InteractionKind::Meeting, 19_020.25),
            (InteractionKind::Note, 17_000.0),
            (InteractionKind::Email, 19_021.0),
        ];
        let forward = key_of(&model, &interactions).unwrap();
        interactions.reverse();
        let backward = key_of(&model, &interactions).unwrap();
        interactions.swap(0, 3);
        interactions.swap(1, 5);
        let shuffled = key_of(&model, &interactions).unwrap();
        assert!((forward - backward).abs() < EPS && (forward - shuffled).abs() < EPS);
        let direct: f64 = interactions
            .iter()
            .map(|&(kind, t)| model.weights.of(kind) * (t / model.tau() - forward).exp())
            .sum::<f64>();
        assert!((direct - 1.0).abs() < EPS, "key is ln of the plain sum");
    }

    #[test]
    fn raw_value_halves_after_one_half_life() {
        for half_life in [7.0, 30.0, 90.0] {
            let model = Model { half_life_days: half_life, ..Model::default() };
            let key = key_of(&model, &[(InteractionKind::Call, 1000.0), (InteractionKind::Activity, 1001.0)]);
            let now = 1002.0;
            let ratio = model.raw(key, now + half_life) / model.raw(key, now);
            assert!((ratio - 0.5).abs() < EPS, "{ratio}");
        }
    }

    #[test]
    fn scores_and_buckets_follow_the_formula() {
        let model = Model::default();
        let key = key_of(&model, &[(InteractionKind::Activity, 500.0)]);
        // raw = 1 at the moment of the interaction: 100·(1 − e^(−1/3)) = 28.3
        let closeness = model.closeness(key, 500.0);
        assert_eq!(closeness.score, 28);
        assert_eq!(closeness.bucket, Bucket::Cooling);
        assert_eq!(model.closeness(None, 500.0).score, 0);
        assert_eq!(Bucket::of_score(70), Bucket::Close);
        assert_eq!(Bucket::of_score(69), Bucket::Warm);
        assert_eq!(Bucket::of_score(40), Bucket::Warm);
        assert_eq!(Bucket::of_score(39), Bucket::Cooling);
        assert_eq!(Bucket::of_score(15), Bucket::Cooling);
        assert_eq!(Bucket::of_score(14), Bucket::Cold);
    }

    #[test]
    fn key_thresholds_match_scores_exactly() {
        let model = Model::default();
        let now = 20_000.0;
        for score in 1..=100u8 {
            let threshold = model.key_for_score(score, now).unwrap();
            let just_above = model.closeness(Some(threshold + 1e-9), now).score;
            let just_below = model.closeness(Some(threshold - 1e-6), now).score;
            assert!(just_above >= score, "{score}: {just_above}");
            assert!(just_below < score, "{score}: {just_below}");
        }
    }

    #[test]
    fn history_does_not_depend_on_arrival_order() {
        let model = Model::default();
        let interactions = [
            (InteractionKind::Activity, 100.0),
            (InteractionKind::Call, 101.5),
            (InteractionKind::Activity, 102.0),
            (InteractionKind::Note, 160.0),
        ];
        let mut in_order = History::default();
        for (kind, t) in interactions {
            assert!(model.extend(&mut in_order, kind, t));
        }
        let mut reversed = interactions;
        reversed.reverse();
        let rebuilt = model.rebuild(reversed);
        assert!((in_order.key.unwrap() - rebuilt.key.unwrap()).abs() < EPS);
        assert_eq!(in_order.last_t, rebuilt.last_t);
        assert!((in_order.warm_until.unwrap() - rebuilt.warm_until.unwrap()).abs() < EPS);
        let mut late = in_order;
        assert!(!model.extend(&mut late, InteractionKind::Activity, 50.0), "older than the latest");
        assert_eq!(late, in_order, "left as it was");
    }

    #[test]
    fn warm_until_is_the_last_moment_the_score_was_at_least_40() {
        let model = Model::default();
        // A single activity never reaches 40 (raw 1 scores 28).
        assert_eq!(model.rebuild([(InteractionKind::Activity, 10.0)]).warm_until, None);
        // A busy week, then one visit long after: warm ended after the week, not after the visit.
        let mut week: Vec<(InteractionKind, f64)> = (0..7).map(|d| (InteractionKind::Activity, f64::from(d))).collect();
        let busy = model.rebuild(week.clone());
        week.push((InteractionKind::Activity, 200.0));
        let history = model.rebuild(week);
        let warm_until = history.warm_until.unwrap();
        assert!((warm_until - busy.warm_until.unwrap()).abs() < EPS);
        assert!(warm_until > 6.0 && warm_until < 200.0);
        // The score is exactly at the warm threshold then, measured with the week's interactions.
        let week_key = busy.key;
        assert_eq!(model.closeness(week_key, warm_until - 1e-6).score, 40);
        assert!(model.closeness(week_key, warm_until + 1e-3).score < 40);
    }

    #[test]
    fn log_add_exp_is_stable_for_far_apart_values() {
        assert_eq!(log_add_exp(None, 3.0), 3.0);
        assert!((log_add_exp(Some(1000.0), 0.0) - 1000.0).abs() < EPS);
        assert!((log_add_exp(Some(0.0), 0.0) - std::f64::consts::LN_2).abs() < EPS);
    }
}
