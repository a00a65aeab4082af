//! Nudge rules: *when* a contact does something (or something happens to it), *unless* it does
//! something else within a delay, *then* act. Rules are data; matching an event against a rule is a
//! pure function.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::closeness::Bucket;
use crate::event::{Event, EventKind};
use crate::health::Band;

/// How far back an event may lie and still trigger a rule: replaying last year's history
/// must not send last year's nudges.
pub const TRIGGER_HORIZON: SignedDuration = SignedDuration::from_hours(24 * 7);

/// The longest inaction delay a rule may wait.
pub const MAX_UNLESS_HOURS: i64 = 24 * 90;

/// The longest window a health drop may be measured over (the daily record keeps a year).
pub const MAX_DROP_DAYS: i64 = 365;

/// What starts a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// A track event by name, optionally with property conditions.
    Event {
        /// The event name, e.g. `Signed Up`.
        name: String,
        /// Each property must equal the value given (or one of a list of values).
        #[serde(default, rename = "where", skip_serializing_if = "Map::is_empty")]
        conditions: Map<String, Value>,
    },
    /// The contact enters an Engage audience.
    AudienceEntered {
        /// The audience key.
        audience: String,
    },
    /// The contact exits an Engage audience.
    AudienceExited {
        /// The audience key.
        audience: String,
    },
    /// The contact's cadence makes it due.
    BecomesDue {},
    /// The contact's closeness moves into another bucket.
    BucketChanged {
        /// The bucket entered.
        to: Bucket,
        /// Only when coming from this bucket.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Bucket>,
    },
    /// An account's health moves into another band.
    HealthBandChanged {
        /// Only when entering this band (any band when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Band>,
        /// Only when coming from this band.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Band>,
    },
    /// An account's health falls by at least `points` from its highest score recorded within
    /// the last `within_days` days.
    HealthDropped {
        /// How far, 1 to 100.
        points: i64,
        /// Over how many days, 1 to [`MAX_DROP_DAYS`].
        within_days: i64,
    },
}

impl Trigger {
    /// Whether the trigger is about an account (its health) rather than a contact.
    pub fn is_about_accounts(&self) -> bool {
        matches!(self, Trigger::HealthBandChanged { .. } | Trigger::HealthDropped { .. })
    }

    /// Whether an account's health moving from band `from` to band `to` is this trigger (rules
    /// and journeys share it).
    pub fn matches_band(&self, from: Band, to: Band) -> bool {
        match self {
            Trigger::HealthBandChanged { to: wanted, from: wanted_from } => {
                from != to
                    && wanted.is_none_or(|wanted| wanted == to)
                    && wanted_from.is_none_or(|wanted_from| wanted_from == from)
            }
            _ => false,
        }
    }

    /// How an account's health moving from `previous` to `current` (band and score) matches
    /// this trigger, if it does: the occurrence that identifies the change, so it acts once,
    /// and what people read. `recorded` is the account's daily record (day and score), `today`
    /// the current day and `at` (ms) when the change is seen.
    pub fn health_change(
        &self,
        previous: (Option<Band>, i64),
        current: (Band, i64),
        recorded: &[(i32, i64)],
        today: i32,
        at: i64,
    ) -> Option<(String, String)> {
        let ((from, before), (band, score)) = (previous, current);
        match from {
            Some(from) if self.matches_band(from, band) => Some((
                format!("band:{}:{}:{at}", from.as_str(), band.as_str()),
                format!("became {} (was {})", band.label(), from.label()),
            )),
            _ => self.matches_drop(recorded, today, before, score).map(|(day, peak)| {
                (format!("drop:{day}:{peak}:{score}"), format!("fell from {peak} to {score} (now {})", band.label()))
            }),
        }
    }

    /// Whether an account's health falling to `score` is this trigger: `peak` is the highest
    /// score recorded within the trigger's window (`recorded`, day and score, newest or oldest
    /// first), and `previous` the score seen at the last observation. The fall counts once: when
    /// the previous score was not yet that far below the peak.
    pub fn matches_drop(&self, recorded: &[(i32, i64)], today: i32, previous: i64, score: i64) -> Option<(i32, i64)> {
        let Trigger::HealthDropped { points, within_days } = self else { return None };
        let since = today - i32::try_from(*within_days).unwrap_or(i32::MAX);
        let peak = recorded
            .iter()
            .filter(|(day, _)| *day >= since && *day <= today)
            .max_by_key(|(day, recorded)| (*recorded, std::cmp::Reverse(*day)))
            .copied()?;
        (peak.1 - score >= *points && peak.1 - previous < *points).then_some(peak)
    }
}

/// The inaction part: the rule fires only if this event does not follow within the delay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unless {
    /// The track event that cancels the nudge, e.g. `Project Created`.
    pub event: String,
    /// Hours after the trigger during which it counts.
    pub within_hours: i64,
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// POST JSON with a Slack-compatible `text`.
    Webhook {
        /// Where to.
        url: String,
        /// The message; `{name}`, `{email}`, `{rule}` and `{event}` are filled in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Send an email over the configured SMTP server.
    Email {
        /// The recipient's address, used as written.
        to: String,
        /// Subject; placeholders as for webhooks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        /// Body; placeholders as for webhooks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// Send a template of the workspace to the contact's own email, if its consent allows.
    Message {
        /// The template's id, as in `/api/templates/{id}`.
        template: i64,
    },
    /// Email the owner of the account (a user of the workspace); nothing when it has none.
    EmailOwner {
        /// Subject; placeholders as for webhooks, `{name}` being the account's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        /// Body; placeholders as for webhooks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// Emit a Segment track call to the workspace's outbound Segment host.
    Segment {
        /// The event name (default `Nudge Sent`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
}

/// A rule as stored and managed through `/api/rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// A name people recognise.
    pub name: String,
    /// Disabled rules match nothing.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// What starts it.
    pub when: Trigger,
    /// What cancels it, if it follows in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<Unless>,
    /// What it does, in order.
    pub then: Vec<Action>,
}

fn enabled_by_default() -> bool {
    true
}

impl RuleSpec {
    /// Checks a rule a person wrote; the error says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err("a rule needs a name of 1 to 200 characters".into());
        }
        self.when.validate()?;
        let about_accounts = self.when.is_about_accounts();
        if about_accounts && self.unless.is_some() {
            return Err("`unless` waits for a contact's event; an account health rule acts at once".into());
        }
        if let Some(unless) = &self.unless {
            if unless.event.trim().is_empty() {
                return Err("`unless.event` names the track event that cancels the nudge".into());
            }
            if !(1..=MAX_UNLESS_HOURS).contains(&unless.within_hours) {
                return Err(format!("`unless.within_hours` is 1 to {MAX_UNLESS_HOURS}"));
            }
        }
        if self.then.is_empty() {
            return Err("`then` lists at least one action: webhook, email, message or segment".into());
        }
        for action in &self.then {
            match action {
                Action::Webhook { url, .. } if !(url.starts_with("http://") || url.starts_with("https://")) => {
                    return Err(format!("webhook url {url:?} must start with http:// or https://"));
                }
                Action::Email { to, .. } if crate::identity::normalize_email(to).is_none() => {
                    return Err(format!("email recipient {to:?} is not an email address"));
                }
                Action::Message { template } if *template <= 0 => {
                    return Err("`message.template` is the id of one of the workspace's templates".into());
                }
                Action::Message { .. } | Action::Segment { .. } if about_accounts => {
                    return Err("an account health rule can use webhook, email and email_owner actions; \
                                message and segment speak to or about a contact"
                        .into());
                }
                Action::EmailOwner { .. } if !about_accounts => {
                    return Err("`email_owner` emails an account's owner: use it with health_band_changed \
                                or health_dropped"
                        .into());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// How long a firing waits before acting: the inaction delay, or nothing.
    pub fn delay(&self) -> SignedDuration {
        self.unless.as_ref().map_or(SignedDuration::ZERO, |unless| SignedDuration::from_hours(unless.within_hours))
    }

    /// Whether a track event starts this rule.
    pub fn matches_event(&self, event: &Event) -> bool {
        self.enabled && self.when.matches_event(event)
    }

    /// Whether an audience change starts this rule.
    pub fn matches_audience(&self, key: &str, entered: bool, time: Timestamp, received_at: Timestamp) -> bool {
        self.enabled && self.when.matches_audience(key, entered, time, received_at)
    }

    /// Whether a bucket change starts this rule.
    pub fn matches_bucket(&self, from: Option<Bucket>, to: Bucket) -> bool {
        self.enabled && self.when.matches_bucket(from, to)
    }
}

impl Trigger {
    /// Checks a trigger a person wrote; the error says what to change.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Trigger::Event { name, .. } if name.trim().is_empty() => {
                Err("`when.event.name` names the track event, e.g. \"Signed Up\"".into())
            }
            Trigger::AudienceEntered { audience } | Trigger::AudienceExited { audience }
                if audience.trim().is_empty() =>
            {
                Err("name the audience key".into())
            }
            Trigger::HealthDropped { points, .. } if !(1..=100).contains(points) => {
                Err("`when.health_dropped.points` is 1 to 100".into())
            }
            Trigger::HealthDropped { within_days, .. } if !(1..=MAX_DROP_DAYS).contains(within_days) => {
                Err(format!("`when.health_dropped.within_days` is 1 to {MAX_DROP_DAYS}"))
            }
            _ => Ok(()),
        }
    }

    /// Whether a live track event starts this trigger: its name and conditions match and it is
    /// recent enough (history replayed long after triggers nothing).
    pub fn matches_event(&self, event: &Event) -> bool {
        let EventKind::Track { name } = &event.kind else { return false };
        if event.time < event.received_at - TRIGGER_HORIZON {
            return false;
        }
        self.matches_track(name, &event_properties(&event.payload))
    }

    /// Whether a track event of this name and properties starts this trigger, whenever it
    /// happened: the test live ingestion and backtests share.
    pub fn matches_track(&self, event_name: &str, properties: &Map<String, Value>) -> bool {
        let Trigger::Event { name, conditions } = self else { return false };
        name == event_name
            && conditions.iter().all(|(key, expected)| {
                let actual = properties.get(key).unwrap_or(&Value::Null);
                match expected {
                    Value::Array(choices) => choices.contains(actual),
                    expected => expected == actual,
                }
            })
    }

    /// Whether an audience change starts this trigger.
    pub fn matches_audience(&self, key: &str, entered: bool, time: Timestamp, received_at: Timestamp) -> bool {
        if time < received_at - TRIGGER_HORIZON {
            return false;
        }
        match self {
            Trigger::AudienceEntered { audience } => entered && audience == key,
            Trigger::AudienceExited { audience } => !entered && audience == key,
            _ => false,
        }
    }

    /// Whether a bucket change starts this trigger.
    pub fn matches_bucket(&self, from: Option<Bucket>, to: Bucket) -> bool {
        match self {
            Trigger::BucketChanged { to: wanted, from: wanted_from } => {
                *wanted == to && wanted_from.is_none_or(|wanted_from| Some(wanted_from) == from)
            }
            _ => false,
        }
    }
}

/// The `properties` object of a stored event payload (empty when it has none).
pub fn event_properties(payload: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|mut payload| payload.get_mut("properties").map(Value::take))
    {
        Some(Value::Object(properties)) => properties,
        _ => Map::new(),
    }
}

impl Unless {
    /// Whether one of `events` (name and time) cancels a firing triggered at `triggered_at`.
    pub fn cancels<'a>(&self, triggered_at: Timestamp, events: impl IntoIterator<Item = (&'a str, Timestamp)>) -> bool {
        let until = triggered_at + SignedDuration::from_hours(self.within_hours);
        events.into_iter().any(|(name, time)| name == self.event && time >= triggered_at && time <= until)
    }
}

/// Fills `{name}`, `{email}`, `{rule}` and `{event}` into a template.
pub fn render(template: &str, name: &str, email: &str, rule: &str, event: &str) -> String {
    template.replace("{name}", name).replace("{email}", email).replace("{rule}", rule).replace("{event}", event)
}

/// What to do after one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delivery {
    /// The receiver took it: done, no retry.
    Sent,
    /// Try again after this delay.
    RetryAfter(SignedDuration),
    /// Stop: the receiver refused for good, or four hours have passed.
    GiveUp,
}

/// How long deliveries are retried, as Segment retries its destinations.
pub const RETRY_FOR: SignedDuration = SignedDuration::from_hours(4);

/// Decides after an attempt. `status` is `None` for a timeout or a connection failure;
/// `jitter` is uniform in `[0, 1)`.
pub fn after_attempt(
    status: Option<u16>,
    retry_after: Option<SignedDuration>,
    attempts: u32,
    age: SignedDuration,
    jitter: f64,
) -> Delivery {
    let retryable = match status {
        Some(200..=299) => return Delivery::Sent,
        Some(408 | 429) | Some(500..=599) | None => true,
        Some(_) => false,
    };
    if !retryable {
        return Delivery::GiveUp;
    }
    // 30 s, 1 min, 2 min, … capped at 30 min, each stretched by 50–150 % so that many failed
    // deliveries do not all come back at once.
    let base = 30.0 * 2f64.powi(attempts.saturating_sub(1).min(10) as i32);
    let backoff = SignedDuration::from_secs_f64(base.min(1800.0) * (0.5 + jitter));
    // A receiver's Retry-After is honoured while it falls inside the retry window; beyond
    // it (a year, or i64::MAX seconds from a hostile receiver) the usual backoff applies.
    let left = RETRY_FOR.saturating_sub(age);
    let delay = match retry_after {
        Some(asked) if asked <= left => asked.max(backoff),
        _ => backoff,
    };
    if delay > left {
        Delivery::GiveUp
    } else {
        Delivery::RetryAfter(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{parse_value, ParseContext, Parsed};
    use serde_json::json;

    fn event(value: Value) -> Event {
        let ctx = ParseContext::live(None, "2026-01-01T00:00:00Z".parse().unwrap());
        match parse_value(&value, &ctx).unwrap() {
            Parsed::Event(event) => *event,
            Parsed::Skipped => panic!(),
        }
    }

    fn rule(value: Value) -> RuleSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn rules_read_as_a_person_writes_them() {
        let spec = rule(json!({
            "name": "Enterprise signup, no teammate",
            "when": {"event": {"name": "Signed Up", "where": {"plan": "enterprise"}}},
            "unless": {"event": "Invited Teammate", "within_hours": 48},
            "then": [{"webhook": {"url": "https://hooks.slack.com/x"}}, {"segment": {}}]
        }));
        assert!(spec.enabled);
        assert!(spec.validate().is_ok());
        assert_eq!(spec.delay(), SignedDuration::from_hours(48));
        assert!(serde_json::from_value::<RuleSpec>(json!({"name":"x","when":{"teleport":{}},"then":[]})).is_err());
        let bad = rule(json!({"name":"x","when":{"becomes_due":{}},"then":[{"webhook":{"url":"ftp://x"}}]}));
        assert!(bad.validate().unwrap_err().contains("http"));
        let none = rule(json!({"name":"x","when":{"becomes_due":{}},"then":[]}));
        assert!(none.validate().is_err());
    }

    #[test]
    fn event_triggers_match_name_and_conditions() {
        let spec =
            rule(json!({"name":"x","when":{"event":{"name":"Signed Up","where":{"plan":["enterprise","business"]}}},
            "then":[{"segment":{}}]}));
        let signed_up = |plan: &str| {
            event(
                json!({"type":"track","userId":"u","event":"Signed Up","properties":{"plan":plan},"timestamp":"2025-12-31T00:00:00Z"}),
            )
        };
        assert!(spec.matches_event(&signed_up("enterprise")));
        assert!(spec.matches_event(&signed_up("business")));
        assert!(!spec.matches_event(&signed_up("free")));
        let other = event(json!({"type":"track","userId":"u","event":"Logged In","timestamp":"2025-12-31T00:00:00Z"}));
        assert!(!spec.matches_event(&other));
        let old = event(json!({"type":"track","userId":"u","event":"Signed Up","properties":{"plan":"enterprise"},
            "timestamp":"2025-01-01T00:00:00Z"}));
        assert!(!spec.matches_event(&old), "history replayed long after does not nudge");
    }

    #[test]
    fn audience_and_bucket_triggers() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let entered = rule(json!({"name":"x","when":{"audience_entered":{"audience":"vip"}},"then":[{"segment":{}}]}));
        assert!(entered.matches_audience("vip", true, now, now));
        assert!(!entered.matches_audience("vip", false, now, now));
        assert!(!entered.matches_audience("other", true, now, now));
        let cold =
            rule(json!({"name":"x","when":{"bucket_changed":{"to":"cold","from":"cooling"}},"then":[{"segment":{}}]}));
        assert!(cold.matches_bucket(Some(Bucket::Cooling), Bucket::Cold));
        assert!(!cold.matches_bucket(Some(Bucket::Warm), Bucket::Cold));
        assert!(!cold.matches_bucket(Some(Bucket::Cooling), Bucket::Warm));
    }

    #[test]
    fn health_triggers_fire_on_a_change_of_band_or_a_new_fall() {
        let any = rule(json!({"name":"x","when":{"health_band_changed":{}},"then":[{"email_owner":{}}]}));
        assert!(any.validate().is_ok());
        assert!(any.when.matches_band(Band::Healthy, Band::AtRisk));
        assert!(!any.when.matches_band(Band::AtRisk, Band::AtRisk), "no change, no firing");
        let into_risk = rule(json!({"name":"x","when":{"health_band_changed":{"to":"at_risk","from":"healthy"}},
            "then":[{"webhook":{"url":"https://hooks.example.com/x"}}]}));
        assert!(into_risk.when.matches_band(Band::Healthy, Band::AtRisk));
        assert!(!into_risk.when.matches_band(Band::NeedsAttention, Band::AtRisk));
        assert!(!into_risk.when.matches_band(Band::AtRisk, Band::Healthy));

        let drop = rule(json!({"name":"x","when":{"health_dropped":{"points":20,"within_days":7}},
            "then":[{"email_owner":{}}]}));
        assert!(drop.validate().is_ok());
        let recorded = [(100, 90), (98, 100), (90, 100)];
        assert_eq!(drop.when.matches_drop(&recorded, 100, 90, 75), Some((98, 100)), "25 below the 100 of day 98");
        assert_eq!(drop.when.matches_drop(&recorded, 100, 75, 70), None, "already that far below: told once");
        assert_eq!(drop.when.matches_drop(&recorded, 100, 90, 85), None, "15 points is not 20");
        assert_eq!(
            drop.when.matches_drop(&recorded, 106, 90, 75),
            None,
            "the 100 of day 98 is more than 7 days before 106"
        );
        assert_eq!(drop.when.matches_drop(&[], 100, 90, 10), None, "nothing recorded, nothing to fall from");
    }

    #[test]
    fn account_rules_act_on_accounts_only() {
        let refused = |value: Value| rule(value).validate().unwrap_err();
        assert!(refused(json!({"name":"x","when":{"health_band_changed":{}},"then":[{"message":{"template":1}}]}))
            .contains("contact"));
        assert!(
            refused(json!({"name":"x","when":{"health_band_changed":{}},"then":[{"segment":{}}]})).contains("contact")
        );
        assert!(refused(json!({"name":"x","when":{"health_band_changed":{}},
            "unless":{"event":"Logged In","within_hours":2},"then":[{"email_owner":{}}]}))
        .contains("unless"));
        assert!(refused(json!({"name":"x","when":{"becomes_due":{}},"then":[{"email_owner":{}}]})).contains("owner"));
        assert!(refused(json!({"name":"x","when":{"health_dropped":{"points":0,"within_days":7}},
            "then":[{"email_owner":{}}]}))
        .contains("points"));
        assert!(refused(json!({"name":"x","when":{"health_dropped":{"points":10,"within_days":9999}},
            "then":[{"email_owner":{}}]}))
        .contains("within_days"));
    }

    #[test]
    fn deliveries_retry_on_transient_failures_for_four_hours() {
        let zero = SignedDuration::ZERO;
        assert_eq!(after_attempt(Some(200), None, 1, zero, 0.5), Delivery::Sent);
        assert_eq!(after_attempt(Some(400), None, 1, zero, 0.5), Delivery::GiveUp);
        assert_eq!(after_attempt(Some(404), None, 1, zero, 0.5), Delivery::GiveUp);
        assert_eq!(after_attempt(Some(500), None, 1, zero, 0.5), Delivery::RetryAfter(SignedDuration::from_secs(30)));
        assert_eq!(after_attempt(None, None, 2, zero, 0.5), Delivery::RetryAfter(SignedDuration::from_secs(60)));
        assert_eq!(
            after_attempt(Some(408), None, 30, zero, 0.5),
            Delivery::RetryAfter(SignedDuration::from_secs(1800))
        );
        let asked = SignedDuration::from_secs(600);
        assert_eq!(
            after_attempt(Some(429), Some(asked), 1, zero, 0.0),
            Delivery::RetryAfter(asked),
            "Retry-After is honoured"
        );
        assert_eq!(after_attempt(Some(503), None, 5, SignedDuration::from_hours(4), 0.1), Delivery::GiveUp);
        match after_attempt(Some(502), None, 3, zero, 0.99) {
            Delivery::RetryAfter(delay) => {
                assert!(delay > SignedDuration::from_secs(120) && delay < SignedDuration::from_secs(180))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_counts_only_inside_the_retry_window() {
        let zero = SignedDuration::ZERO;
        let backoff = SignedDuration::from_secs(15);
        for asked in [SignedDuration::from_secs(i64::MAX), SignedDuration::MAX, SignedDuration::from_hours(5)] {
            assert_eq!(after_attempt(Some(503), Some(asked), 1, zero, 0.0), Delivery::RetryAfter(backoff), "{asked:?}");
            assert_eq!(after_attempt(Some(503), Some(asked), 1, SignedDuration::MAX, 0.0), Delivery::GiveUp);
        }
        let within = SignedDuration::from_hours(3);
        assert_eq!(after_attempt(Some(429), Some(within), 1, zero, 0.0), Delivery::RetryAfter(within));
        // A delivery created "in the future" (a clock set back) does not overflow either.
        assert_eq!(after_attempt(Some(429), Some(within), 1, SignedDuration::MIN, 0.0), Delivery::RetryAfter(within));
    }

    #[test]
    fn templates_fill_placeholders() {
        assert_eq!(
            render("{name} <{email}> did {event} ({rule})", "Ada", "a@x.io", "R", "Signed Up"),
            "Ada <a@x.io> did Signed Up (R)"
        );
    }
}
