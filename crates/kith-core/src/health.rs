//! Account health: a workspace's model of weighted factors, scored 0–100, with how much each
//! factor contributed beside the score so that a CSM can check the arithmetic.
//!
//! Every factor measures a value between 0 and 1; the score is `100 · Σ wᵢ·vᵢ / Σ wᵢ` over the
//! factors that could be measured, and factor `i` contributed `100 · wᵢ·vᵢ / Σ wᵢ` points of
//! it. A factor without data (an account nobody rated) is left out of both sums rather than
//! counted as 0, so an unrated account is not punished for it.
//!
//! Scoring is two steps because counting events is the store's work: [`HealthModel::windows`]
//! lists the time windows whose events must be counted, the caller counts them, and
//! [`HealthModel::score`] turns those counts and the account's facts into a [`Health`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Milliseconds in a day.
const MS_PER_DAY: i64 = 86_400_000;
/// The most factors a model holds.
pub const MAX_FACTORS: usize = 20;
/// The longest window a factor looks back over, in days.
pub const MAX_DAYS: i64 = 365;

/// A workspace's health model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthModel {
    /// The weighted factors, in the order they are shown.
    pub factors: Vec<WeightedFactor>,
    /// Where the bands start.
    #[serde(default)]
    pub bands: Bands,
    /// When an account counts as at risk besides its band: a drop of its score.
    #[serde(default)]
    pub at_risk: AtRiskRule,
}

/// An account is at risk when its band is, or when its score now is at least `drop_points`
/// below a score recorded in the last `drop_days` days.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtRiskRule {
    /// The fall, in points, that puts an account at risk (1 to 100).
    pub drop_points: i64,
    /// How many days back the fall is measured from (1 to 90).
    pub drop_days: i64,
}

impl Default for AtRiskRule {
    fn default() -> Self {
        AtRiskRule { drop_points: 20, drop_days: 7 }
    }
}

/// Why an account is at risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum AtRisk {
    /// Its score is in the at-risk band.
    Band,
    /// Its score fell from `from` (recorded on day key `day`) to what it is now.
    Dropped {
        /// The highest score recorded within the window.
        from: i64,
        /// The day key of that score.
        day: i32,
    },
}

/// One factor and its weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedFactor {
    /// Its share of the score relative to the others' weights (above 0, at most 100).
    pub weight: f64,
    /// What it measures.
    pub factor: Factor,
}

/// What a factor measures, each as a value from 0 to 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Factor {
    /// Members' closeness scores / 100: the mean of all members, or of the `top` closest.
    Closeness {
        /// Only the `top` closest members count; all of them when absent.
        #[serde(default)]
        top: Option<usize>,
    },
    /// The share of members with product activity (track, page, screen) in the last `days`.
    ActiveMembers {
        /// The window, in days.
        days: i64,
    },
    /// Members' product activity in the last `days` against the `days` before: 1 when it did
    /// not fall, else this period's count over the previous one's.
    Trend {
        /// The length of each period, in days.
        days: i64,
    },
    /// How many `event` tracks the members sent in the last `days`, over `target` (at most 1).
    EventCount {
        /// The track event's name, e.g. `Report Exported`.
        event: String,
        /// The window, in days.
        days: i64,
        /// The count that earns the whole weight (1 when absent).
        #[serde(default = "one")]
        target: i64,
    },
    /// 1 when the account's trait `key` equals `equals`, else 0.
    Trait {
        /// The trait, e.g. `plan`.
        key: String,
        /// The value it must have, e.g. `"enterprise"`.
        equals: Value,
    },
    /// The CSM's rating of the account, 1 to 5, as (rating − 1) / 4; left out when unrated.
    CsmRating {},
}

fn one() -> i64 {
    1
}

/// The band thresholds: at risk below `at_risk_below`, healthy from `healthy_from`, needs
/// attention between.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bands {
    /// Scores below it are at risk.
    pub at_risk_below: f64,
    /// Scores from it are healthy.
    pub healthy_from: f64,
}

impl Default for Bands {
    fn default() -> Self {
        Bands { at_risk_below: 40.0, healthy_from: 70.0 }
    }
}

/// A health band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// Below the at-risk threshold.
    AtRisk,
    /// Between the thresholds.
    NeedsAttention,
    /// From the healthy threshold.
    Healthy,
}

impl Band {
    /// The name stored and shown in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Band::AtRisk => "at_risk",
            Band::NeedsAttention => "needs_attention",
            Band::Healthy => "healthy",
        }
    }

    /// Parses a stored or user-given name.
    pub fn parse(name: &str) -> Option<Band> {
        [Band::AtRisk, Band::NeedsAttention, Band::Healthy].into_iter().find(|band| band.as_str() == name)
    }

    /// A label for people.
    pub fn label(self) -> &'static str {
        match self {
            Band::AtRisk => "at risk",
            Band::NeedsAttention => "needs attention",
            Band::Healthy => "healthy",
        }
    }
}

impl Bands {
    /// The band of `score`.
    pub fn of(&self, score: f64) -> Band {
        if score < self.at_risk_below {
            Band::AtRisk
        } else if score < self.healthy_from {
            Band::NeedsAttention
        } else {
            Band::Healthy
        }
    }
}

/// A time window whose member events the caller counts: `[since_ms, until_ms)`, of every
/// product event (track, page, screen) or only of the track `event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Start, inclusive, in Unix milliseconds.
    pub since_ms: i64,
    /// End, exclusive, in Unix milliseconds.
    pub until_ms: i64,
    /// Only tracks of this name.
    pub event: Option<String>,
}

/// What the store counted in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events.
    pub events: i64,
    /// Distinct members who sent them.
    pub members: i64,
}

/// What is known of an account besides its event counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountFacts {
    /// Each member's closeness score now (0–100).
    pub member_scores: Vec<u8>,
    /// The account's traits.
    pub traits: Map<String, Value>,
    /// The CSM's rating, 1 to 5.
    pub rating: Option<i64>,
}

/// An account's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// 0 to 100.
    pub score: u8,
    /// The band of the score.
    pub band: Band,
    /// Every factor of the model, in its order, with what it contributed.
    pub factors: Vec<Contribution>,
}

/// What one factor contributed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// What it measures, for people, e.g. `Members active in the last 14 days`.
    pub label: String,
    /// Its weight in the model.
    pub weight: f64,
    /// What it measured, 0 to 1; `None` when it could not be (then it is left out).
    pub value: Option<f64>,
    /// The points it added to the score (to one decimal).
    pub points: f64,
    /// The most it could have added.
    pub max_points: f64,
    /// The measurement in words, e.g. `3 of 4 members`.
    pub detail: String,
}

impl HealthModel {
    /// Whether an account of `health` now, whose recorded scores are `recorded` (day key and
    /// score), is at risk on day `today`: its band first, else the largest fall from a score
    /// recorded within the rule's days.
    pub fn at_risk(&self, health: &Health, recorded: &[(i32, i64)], today: i32) -> Option<AtRisk> {
        if health.band == Band::AtRisk {
            return Some(AtRisk::Band);
        }
        let since = today - self.at_risk.drop_days as i32;
        let (day, from) = recorded
            .iter()
            .filter(|(day, _)| *day >= since && *day <= today)
            .max_by_key(|(day, score)| (*score, std::cmp::Reverse(*day)))?;
        (from - i64::from(health.score) >= self.at_risk.drop_points)
            .then_some(AtRisk::Dropped { from: *from, day: *day })
    }
}

/// Why a model was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    /// The field concerned, e.g. `factors[2].factor.days`.
    pub field: String,
    /// What to change.
    pub message: String,
}

fn refuse(field: String, message: impl Into<String>) -> ModelError {
    ModelError { field, message: message.into() }
}

impl Default for HealthModel {
    /// Closeness of the three closest members, active members over 30 days and the trend of
    /// activity over 30 days against the 30 before.
    fn default() -> Self {
        HealthModel {
            factors: vec![
                WeightedFactor { weight: 2.0, factor: Factor::Closeness { top: Some(3) } },
                WeightedFactor { weight: 1.0, factor: Factor::ActiveMembers { days: 30 } },
                WeightedFactor { weight: 1.0, factor: Factor::Trend { days: 30 } },
            ],
            bands: Bands::default(),
            at_risk: AtRiskRule::default(),
        }
    }
}

impl HealthModel {
    /// Checks weights, windows, targets and bands; the first problem is returned.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.factors.is_empty() || self.factors.len() > MAX_FACTORS {
            return Err(refuse("factors".into(), format!("a model has 1 to {MAX_FACTORS} factors")));
        }
        for (index, weighted) in self.factors.iter().enumerate() {
            let at = |name: &str| format!("factors[{index}].{name}");
            if !(weighted.weight > 0.0 && weighted.weight <= 100.0) {
                return Err(refuse(at("weight"), "a weight is above 0 and at most 100"));
            }
            let days = match &weighted.factor {
                Factor::ActiveMembers { days } | Factor::Trend { days } => Some(*days),
                Factor::EventCount { days, .. } => Some(*days),
                _ => None,
            };
            if let Some(days) = days {
                if !(1..=MAX_DAYS).contains(&days) {
                    return Err(refuse(at("factor.days"), format!("days is 1 to {MAX_DAYS}")));
                }
            }
            match &weighted.factor {
                Factor::Closeness { top: Some(0) } => {
                    return Err(refuse(at("factor.top"), "top is at least 1 (or absent: every member)"));
                }
                Factor::EventCount { event, target, .. } => {
                    if event.trim().is_empty() || event.len() > 200 {
                        return Err(refuse(at("factor.event"), "event names a track event, 1 to 200 characters"));
                    }
                    if !(1..=1_000_000).contains(target) {
                        return Err(refuse(at("factor.target"), "target is 1 to 1000000 events"));
                    }
                }
                Factor::Trait { key, .. } if key.trim().is_empty() || key.len() > 200 => {
                    return Err(refuse(at("factor.key"), "key names a trait, 1 to 200 characters"));
                }
                _ => {}
            }
        }
        if !(1..=100).contains(&self.at_risk.drop_points) || !(1..=90).contains(&self.at_risk.drop_days) {
            return Err(refuse(
                "at_risk".into(),
                "at_risk is {\"drop_points\": 1 to 100, \"drop_days\": 1 to 90}, e.g. {\"drop_points\": 20, \"drop_days\": 7}",
            ));
        }
        let Bands { at_risk_below, healthy_from } = self.bands;
        if !(0.0..=100.0).contains(&at_risk_below)
            || !(0.0..=100.0).contains(&healthy_from)
            || at_risk_below > healthy_from
        {
            return Err(refuse(
                "bands".into(),
                "bands are 0 to 100 with at_risk_below at most healthy_from, e.g. {\"at_risk_below\": 40, \"healthy_from\": 70}",
            ));
        }
        Ok(())
    }

    /// The windows whose member events [`HealthModel::score`] needs counted, in order, as of
    /// `now_ms`.
    pub fn windows(&self, now_ms: i64) -> Vec<Window> {
        let back = |days: i64| now_ms - days * MS_PER_DAY;
        let mut windows = Vec::new();
        for weighted in &self.factors {
            match &weighted.factor {
                Factor::ActiveMembers { days } => {
                    windows.push(Window { since_ms: back(*days), until_ms: now_ms, event: None });
                }
                Factor::Trend { days } => {
                    windows.push(Window { since_ms: back(*days), until_ms: now_ms, event: None });
                    windows.push(Window { since_ms: back(2 * days), until_ms: back(*days), event: None });
                }
                Factor::EventCount { event, days, .. } => {
                    windows.push(Window { since_ms: back(*days), until_ms: now_ms, event: Some(event.clone()) });
                }
                Factor::Closeness { .. } | Factor::Trait { .. } | Factor::CsmRating {} => {}
            }
        }
        windows
    }

    /// The account's health from its facts and the counts of [`HealthModel::windows`], in
    /// the same order.
    pub fn score(&self, facts: &AccountFacts, counts: &[Counts]) -> Health {
        let mut counts = counts.iter().copied();
        let mut next = || counts.next().unwrap_or_default();
        let members = facts.member_scores.len();
        let measured: Vec<(String, Option<f64>, String)> =
            self.factors.iter().map(|weighted| measure(&weighted.factor, facts, members, &mut next)).collect();
        let total: f64 = self
            .factors
            .iter()
            .zip(&measured)
            .filter(|(_, (_, value, _))| value.is_some())
            .map(|(weighted, _)| weighted.weight)
            .sum();
        let mut sum = 0.0;
        let factors = self
            .factors
            .iter()
            .zip(measured)
            .map(|(weighted, (label, value, detail))| {
                let share = if total > 0.0 && value.is_some() { 100.0 * weighted.weight / total } else { 0.0 };
                let points = share * value.unwrap_or(0.0);
                sum += points;
                Contribution {
                    label,
                    weight: weighted.weight,
                    value: value.map(|v| round_to(v, 3)),
                    points: round_to(points, 1),
                    max_points: round_to(share, 1),
                    detail,
                }
            })
            .collect();
        let score = sum.round().clamp(0.0, 100.0) as u8;
        Health { score, band: self.bands.of(f64::from(score)), factors }
    }
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn plural(count: i64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// A factor's label, value and detail.
fn measure(
    factor: &Factor,
    facts: &AccountFacts,
    members: usize,
    next: &mut impl FnMut() -> Counts,
) -> (String, Option<f64>, String) {
    match factor {
        Factor::Closeness { top } => {
            let mut scores = facts.member_scores.clone();
            scores.sort_unstable_by(|a, b| b.cmp(a));
            let label = match top {
                Some(top) => format!("Closeness of the {top} closest members"),
                None => "Members' mean closeness".to_owned(),
            };
            scores.truncate(top.unwrap_or(scores.len()));
            if scores.is_empty() {
                return (label, Some(0.0), "no members".into());
            }
            let mean = scores.iter().map(|score| f64::from(*score)).sum::<f64>() / scores.len() as f64;
            let detail =
                format!("mean closeness {} of {}", round_to(mean, 1), plural(scores.len() as i64, "member", "members"));
            (label, Some(mean / 100.0), detail)
        }
        Factor::ActiveMembers { days } => {
            let active = next().members;
            let label = format!("Members active in the last {}", plural(*days, "day", "days"));
            if members == 0 {
                return (label, Some(0.0), "no members".into());
            }
            let value = (active as f64 / members as f64).min(1.0);
            (label, Some(value), format!("{active} of {}", plural(members as i64, "member", "members")))
        }
        Factor::Trend { days } => {
            let (current, previous) = (next().events, next().events);
            let label = format!("Activity trend, last {} against the {days} before", plural(*days, "day", "days"));
            let value = if current >= previous {
                if current == 0 {
                    0.0
                } else {
                    1.0
                }
            } else {
                current as f64 / previous as f64
            };
            (label, Some(value), format!("{} against {previous}", plural(current, "event", "events")))
        }
        Factor::EventCount { event, days, target } => {
            let count = next().events;
            let label = format!("{event} in the last {}", plural(*days, "day", "days"));
            let value = (count as f64 / *target as f64).min(1.0);
            (label, Some(value), format!("{count} of {target} wanted"))
        }
        Factor::Trait { key, equals } => {
            let found = facts.traits.get(key);
            let label = format!("{key} = {}", equals.as_str().map_or_else(|| equals.to_string(), str::to_owned));
            let value = if found == Some(equals) { 1.0 } else { 0.0 };
            let detail = match found {
                None => format!("{key} is not set"),
                Some(Value::String(text)) => format!("{key} is {text}"),
                Some(other) => format!("{key} is {other}"),
            };
            (label, Some(value), detail)
        }
        Factor::CsmRating {} => {
            let label = "CSM rating".to_owned();
            match facts.rating {
                Some(rating) => (label, Some((rating.clamp(1, 5) - 1) as f64 / 4.0), format!("rated {rating} of 5")),
                None => (label, None, "not rated: left out".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(value: Value) -> HealthModel {
        let model: HealthModel = serde_json::from_value(value).unwrap();
        model.validate().unwrap();
        model
    }

    fn facts(scores: &[u8], traits: Value, rating: Option<i64>) -> AccountFacts {
        AccountFacts { member_scores: scores.to_vec(), traits: traits.as_object().cloned().unwrap_or_default(), rating }
    }

    fn counts(list: &[(i64, i64)]) -> Vec<Counts> {
        list.iter().map(|&(events, members)| Counts { events, members }).collect()
    }

    /// Each factor alone: its value, and the score it makes with the whole weight.
    #[test]
    fn each_factor_measures_its_value() {
        /// A factor, the account, the counts of its windows, the value and score expected.
        type Case = (Value, AccountFacts, Vec<Counts>, Option<f64>, u8);
        let cases: Vec<Case> = vec![
            (json!({"closeness": {}}), facts(&[80, 40, 30], json!({}), None), vec![], Some(0.5), 50),
            (json!({"closeness": {"top": 2}}), facts(&[80, 40, 30], json!({}), None), vec![], Some(0.6), 60),
            (json!({"closeness": {"top": 5}}), facts(&[], json!({}), None), vec![], Some(0.0), 0),
            (
                json!({"active_members": {"days": 14}}),
                facts(&[1, 2, 3, 4], json!({}), None),
                counts(&[(9, 3)]),
                Some(0.75),
                75,
            ),
            (json!({"trend": {"days": 30}}), facts(&[], json!({}), None), counts(&[(5, 1), (20, 2)]), Some(0.25), 25),
            (json!({"trend": {"days": 30}}), facts(&[], json!({}), None), counts(&[(30, 1), (20, 2)]), Some(1.0), 100),
            (json!({"trend": {"days": 30}}), facts(&[], json!({}), None), counts(&[(0, 0), (0, 0)]), Some(0.0), 0),
            (
                json!({"event_count": {"event": "Report Exported", "days": 30, "target": 4}}),
                facts(&[], json!({}), None),
                counts(&[(3, 1)]),
                Some(0.75),
                75,
            ),
            (
                json!({"event_count": {"event": "Report Exported", "days": 30}}),
                facts(&[], json!({}), None),
                counts(&[(7, 1)]),
                Some(1.0),
                100,
            ),
            (
                json!({"trait": {"key": "plan", "equals": "enterprise"}}),
                facts(&[], json!({"plan": "enterprise"}), None),
                vec![],
                Some(1.0),
                100,
            ),
            (
                json!({"trait": {"key": "plan", "equals": "enterprise"}}),
                facts(&[], json!({"plan": "free"}), None),
                vec![],
                Some(0.0),
                0,
            ),
            (json!({"csm_rating": {}}), facts(&[], json!({}), Some(4)), vec![], Some(0.75), 75),
            (json!({"csm_rating": {}}), facts(&[], json!({}), None), vec![], None, 0),
        ];
        for (factor, facts, counts, value, score) in cases {
            let model = model(json!({"factors": [{"weight": 1, "factor": factor}]}));
            let health = model.score(&facts, &counts);
            assert_eq!(health.factors[0].value, value, "{factor}");
            assert_eq!(health.score, score, "{factor}");
        }
    }

    /// A whole model, worked by hand: weights 2, 1, 1 (total 4) share 50, 25 and 25 points.
    #[test]
    fn contributions_add_up_to_the_score() {
        let model = model(json!({"factors": [
            {"weight": 2, "factor": {"closeness": {}}},
            {"weight": 1, "factor": {"active_members": {"days": 7}}},
            {"weight": 1, "factor": {"trait": {"key": "plan", "equals": "enterprise"}}},
            {"weight": 3, "factor": {"csm_rating": {}}}
        ]}));
        assert_eq!(
            model.windows(100 * MS_PER_DAY),
            vec![Window { since_ms: 93 * MS_PER_DAY, until_ms: 100 * MS_PER_DAY, event: None }]
        );
        let health = model.score(&facts(&[60, 20], json!({"plan": "enterprise"}), None), &counts(&[(4, 1)]));
        // Closeness 0.4 × 50 = 20, active 1 of 2 × 25 = 12.5, trait 25; the rating is left out.
        let points: Vec<f64> = health.factors.iter().map(|c| c.points).collect();
        assert_eq!(points, [20.0, 12.5, 25.0, 0.0]);
        let max: Vec<f64> = health.factors.iter().map(|c| c.max_points).collect();
        assert_eq!(max, [50.0, 25.0, 25.0, 0.0]);
        assert_eq!(health.score, 58);
        assert_eq!(health.band, Band::NeedsAttention);
        assert_eq!(health.factors[1].detail, "1 of 2 members");
        assert_eq!(health.factors[3].detail, "not rated: left out");
        // Rated 5: the rating takes 3/7 of the score.
        let rated = model.score(&facts(&[60, 20], json!({"plan": "enterprise"}), Some(5)), &counts(&[(4, 1)]));
        assert_eq!(rated.score, 76, "(2·0.4 + 1·0.5 + 1 + 3) / 7 = 75.7");
        assert_eq!(rated.band, Band::Healthy);
    }

    #[test]
    fn bands_default_and_configured() {
        let bands = Bands::default();
        assert_eq!(
            [bands.of(39.0), bands.of(40.0), bands.of(69.0), bands.of(70.0)],
            [Band::AtRisk, Band::NeedsAttention, Band::NeedsAttention, Band::Healthy]
        );
        let bands = Bands { at_risk_below: 20.0, healthy_from: 50.0 };
        assert_eq!(bands.of(30.0), Band::NeedsAttention);
        assert_eq!(Band::parse("at_risk"), Some(Band::AtRisk));
        assert_eq!(Band::parse("bad"), None);
    }

    #[test]
    fn at_risk_by_band_or_by_a_drop_within_the_window() {
        let model = model(json!({"factors": [{"weight": 1, "factor": {"csm_rating": {}}}]}));
        let health = |score: u8| Health { score, band: Bands::default().of(f64::from(score)), factors: vec![] };
        assert_eq!(model.at_risk(&health(30), &[], 100), Some(AtRisk::Band));
        let recorded = [(100, 75), (97, 90), (95, 99), (92, 100)];
        // Within 7 days of day 100: the highest is 99 on day 95; 99 − 75 ≥ 20.
        assert_eq!(model.at_risk(&health(75), &recorded, 100), Some(AtRisk::Dropped { from: 99, day: 95 }));
        assert_eq!(model.at_risk(&health(80), &recorded, 100), None, "a fall of 19");
        assert_eq!(model.at_risk(&health(65), &recorded, 103), Some(AtRisk::Dropped { from: 90, day: 97 }));
        assert_eq!(model.at_risk(&health(75), &recorded, 110), None, "every high score is older than 7 days");
        let strict: HealthModel =
            serde_json::from_value(json!({"factors": [{"weight": 1, "factor": {"csm_rating": {}}}],
            "at_risk": {"drop_points": 30, "drop_days": 7}}))
            .unwrap();
        assert_eq!(strict.at_risk(&health(75), &recorded, 100), None);
    }

    #[test]
    fn bad_models_are_refused_with_the_field() {
        let cases = [
            (json!({"factors": []}), "factors"),
            (json!({"factors": [{"weight": 0, "factor": {"closeness": {}}}]}), "factors[0].weight"),
            (json!({"factors": [{"weight": 1, "factor": {"trend": {"days": 0}}}]}), "factors[0].factor.days"),
            (json!({"factors": [{"weight": 1, "factor": {"closeness": {"top": 0}}}]}), "factors[0].factor.top"),
            (
                json!({"factors": [{"weight": 1, "factor": {"event_count": {"event": "", "days": 3}}}]}),
                "factors[0].factor.event",
            ),
            (
                json!({"factors": [{"weight": 1, "factor": {"closeness": {}}}], "bands": {"at_risk_below": 80, "healthy_from": 70}}),
                "bands",
            ),
            (
                json!({"factors": [{"weight": 1, "factor": {"closeness": {}}}], "at_risk": {"drop_points": 0, "drop_days": 7}}),
                "at_risk",
            ),
        ];
        for (value, field) in cases {
            let model: HealthModel = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(model.validate().unwrap_err().field, field, "{value}");
        }
        assert!(serde_json::from_value::<HealthModel>(json!({"factors": [{"weight": 1, "factor": {"vibes": {}}}]}))
            .is_err());
        assert!(HealthModel::default().validate().is_ok());
    }
}
