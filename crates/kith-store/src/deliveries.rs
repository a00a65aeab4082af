//! What kith sends when something happens, as deliveries to queue: the messages a firing turns
//! into and the track calls kith emits to an outbound Segment host. Pure functions, shared by
//! every backend (each backend's `nudges.rs` decides when a rule fires and queues these).

use jiff::Timestamp;
use kith_core::closeness::Bucket;
use kith_core::rules::{render, Action, RuleSpec, Trigger};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::records::{Account, Contact, NewDelivery, Workspace};

/// The track event kith emits for every nudge when outbound Segment is configured.
pub const NUDGE_SENT: &str = "Nudge Sent";
/// Emitted when a contact's closeness enters the close bucket.
pub const BECAME_CLOSE: &str = "Contact Became Close";
/// Emitted when a contact's closeness enters the cold bucket.
pub const WENT_COLD: &str = "Contact Went Cold";

/// Email events, named by Segment's email spec, emitted about each message kith sends a contact.
/// The mail server took the message.
pub const EMAIL_DELIVERED: &str = "Email Delivered";
/// The mail server refused the contact's address for good.
pub const EMAIL_BOUNCED: &str = "Email Bounced";
/// The message's tracking pixel was fetched (the first time).
pub const EMAIL_OPENED: &str = "Email Opened";
/// A tracked link of the message was followed. Also the name of the event kith ingests for the
/// contact, so that a click counts as product activity like any event.
pub const EMAIL_LINK_CLICKED: &str = "Email Link Clicked";
/// The contact unsubscribed from the message's topic.
pub const UNSUBSCRIBED: &str = "Unsubscribed";
/// The contact reported a message as spam. kith receives it rather than sends it: the email
/// provider reports complaints through Segment, and the contact is then never messaged again.
pub const EMAIL_MARKED_AS_SPAM: &str = "Email Marked as Spam";

/// A contact's move from one closeness bucket to another, as the nudge job sees it (a
/// contact never placed counts as cold), and what it sets off.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketChange {
    /// The bucket before; `None` when the stored name is not one kith knows.
    pub from: Option<Bucket>,
    /// The bucket now.
    pub to: Bucket,
    /// What the rules' firings and journeys' entries it sets off are keyed by: one per
    /// contact, bucket and moment.
    pub source: String,
    /// How those firings and entries describe it.
    pub description: String,
}

impl BucketChange {
    /// The change from the stored bucket `old` to `new` seen at `now_ms`; `None` when `new`
    /// is not a bucket.
    pub fn new(old: Option<&str>, new: &str, now_ms: i64) -> Option<BucketChange> {
        Some(BucketChange {
            from: Bucket::parse(old.unwrap_or("cold")),
            to: Bucket::parse(new)?,
            source: format!("bucket:{new}:{now_ms}"),
            description: format!("became {new}"),
        })
    }

    /// Whether it fires `rule`.
    pub fn fires(&self, rule: &RuleSpec) -> bool {
        rule.matches_bucket(self.from, self.to)
    }

    /// Whether it starts a journey whose trigger is `when`.
    pub fn starts(&self, when: &Trigger) -> bool {
        when.matches_bucket(self.from, self.to)
    }

    /// The track call kith emits about it, if any: entering close, or going cold from another
    /// bucket.
    pub fn track(&self) -> Option<(&'static str, Map<String, Value>)> {
        let event = match (self.from, self.to) {
            (_, Bucket::Close) => BECAME_CLOSE,
            (Some(from), Bucket::Cold) if from != Bucket::Cold => WENT_COLD,
            _ => return None,
        };
        let mut properties = Map::new();
        properties.insert("from".into(), Value::from(self.from.map_or("cold", Bucket::as_str)));
        properties.insert("to".into(), Value::from(self.to.as_str()));
        Some((event, properties))
    }
}

/// What a contact's becoming due (its cadence's due date, `due_at`, reached) keys the rules'
/// firings and journeys' entries it sets off by, once per due date, and how they describe it.
pub fn became_due(due_at: i64) -> (String, &'static str) {
    (format!("due:{due_at}"), "became due")
}

/// The Segment identity of a contact: its first userId, and its email as a trait.
#[derive(Debug, Clone)]
pub struct SegmentIdentity<'a> {
    /// Contact id (an anonymousId of last resort).
    pub contact_id: i64,
    /// The contact's email.
    pub email: &'a str,
    /// The contact's userId, if it has one.
    pub user_id: Option<&'a str>,
}

/// A Segment track call about a contact, ready for `/v1/batch`. The messageId is derived from
/// what happened, so a receiver deduplicates kith's retries; `context.library.name` says kith
/// sent it, so a kith receiving it back (through Segment, or as a second instance) stores it
/// without acting on it again.
pub fn segment_track(who: &SegmentIdentity, event: &str, properties: Map<String, Value>, at: Timestamp) -> Value {
    let mut hasher = Sha256::new();
    hasher.update(format!("{}|{event}|{}|{}", who.contact_id, at.as_millisecond(), Value::Object(properties.clone())));
    let message_id = format!("kith-{}", hex::encode(&hasher.finalize()[..12]));
    let mut call = json!({
        "type": "track",
        "event": event,
        "properties": properties,
        "context": {"traits": {"email": who.email}, "library": {"name": kith_core::event::KITH_LIBRARY, "version": env!("CARGO_PKG_VERSION")}},
        "timestamp": at.to_string(),
        "messageId": message_id,
    });
    match who.user_id {
        Some(user_id) => call["userId"] = json!(user_id),
        None => call["anonymousId"] = json!(format!("kith-contact-{}", who.contact_id)),
    }
    call
}

/// What acts: a rule's firing or a step of a journey's entry.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A rule fired.
    Rule {
        /// The firing's id: a message looks up its triggering event through it.
        firing_id: i64,
        /// The rule's id.
        rule_id: i64,
    },
    /// An entry of a journey passed a step.
    Journey {
        /// The journey's id.
        journey_id: i64,
        /// The entry's id.
        entry_id: i64,
        /// The step's id.
        step: u32,
        /// The entry event's properties, for a message's `event`.
        event: &'a Map<String, Value>,
    },
}

/// A firing or a journey step about to act.
pub struct Fired<'a> {
    /// What acts.
    pub origin: Origin<'a>,
    /// The rule's or the journey's name.
    pub name: &'a str,
    /// The contact.
    pub contact: &'a Contact,
    /// The contact's Segment identity.
    pub who: SegmentIdentity<'a>,
    /// What occurred.
    pub trigger: &'a str,
    /// The workspace.
    pub workspace: &'a Workspace,
    /// When it acted: the time of the messages and track calls it turns into.
    pub at: Timestamp,
}

impl Fired<'_> {
    /// Who acted, for the receiver: `{"rule": {…}}` or `{"journey": {…}}`.
    fn source(&self) -> (&'static str, Value) {
        match self.origin {
            Origin::Rule { rule_id, .. } => ("rule", json!({"id": rule_id, "name": self.name})),
            Origin::Journey { journey_id, entry_id, step, .. } => {
                ("journey", json!({"id": journey_id, "name": self.name, "entry_id": entry_id, "step": step}))
            }
        }
    }

    fn track_properties(&self) -> Map<String, Value> {
        let mut properties = Map::new();
        match self.origin {
            Origin::Rule { rule_id, .. } => {
                properties.insert("rule_id".into(), json!(rule_id));
                properties.insert("rule".into(), json!(self.name));
            }
            Origin::Journey { journey_id, step, .. } => {
                properties.insert("journey_id".into(), json!(journey_id));
                properties.insert("journey".into(), json!(self.name));
                properties.insert("step".into(), json!(step));
            }
        }
        properties.insert("trigger".into(), json!(self.trigger));
        properties
    }

    fn outbound_host(&self) -> Option<&String> {
        self.workspace.segment_host.as_ref().filter(|_| self.workspace.sends_to_segment())
    }
}

/// The messages a firing sends: one per action (a `message` is rendered when it is sent), plus
/// `Nudge Sent` to the outbound Segment host when one is configured and the rule does not emit
/// its own track call.
pub fn for_firing(fired: &Fired, rule: &RuleSpec) -> Vec<NewDelivery> {
    let mut out: Vec<NewDelivery> = rule.then.iter().filter_map(|action| for_action(fired, action)).collect();
    let emitted_track = rule.then.iter().any(|action| matches!(action, Action::Segment { .. }));
    if let Some(host) = fired.outbound_host().filter(|_| !emitted_track) {
        out.push(NewDelivery {
            kind: "segment".into(),
            target: host.clone(),
            payload: segment_track(&fired.who, NUDGE_SENT, fired.track_properties(), fired.at),
        });
    }
    out
}

/// What one action sends, if anything (a track call needs an outbound Segment host). Rules
/// and journey steps both go through here.
pub fn for_action(fired: &Fired, action: &Action) -> Option<NewDelivery> {
    let contact = fired.contact;
    let name = contact.name.as_deref().unwrap_or(&contact.email);
    let fill = |template: &str| render(template, name, &contact.email, fired.name, fired.trigger);
    Some(match action {
        Action::Webhook { url, text } => {
            let (source, about) = fired.source();
            NewDelivery {
                kind: "webhook".into(),
                target: url.clone(),
                payload: json!({
                    "text": fill(text.as_deref().unwrap_or("kith: {rule} — {name} ({email}): {event}")),
                    source: about,
                    "trigger": fired.trigger,
                    "contact": {"id": contact.id, "email": contact.email, "name": contact.name},
                    "fired_at": fired.at.to_string(),
                }),
            }
        }
        Action::Email { to, subject, body } => NewDelivery {
            kind: "email".into(),
            target: to.clone(),
            payload: json!({
                "subject": fill(subject.as_deref().unwrap_or("kith: {rule} — {name}")),
                "body": fill(body.as_deref().unwrap_or("{name} ({email}): {event}\n\nRule: {rule}")),
            }),
        },
        // Rendered and checked against the contact's consent when it is sent, not now: an
        // unsubscribe that arrives while the message waits in the outbox still counts.
        Action::Message { template } => {
            let mut payload = json!({"template": template, "contact_id": contact.id});
            match fired.origin {
                Origin::Rule { firing_id, rule_id } => {
                    payload["firing_id"] = json!(firing_id);
                    payload["rule_id"] = json!(rule_id);
                    payload["rule"] = json!(fired.name);
                }
                Origin::Journey { journey_id, step, event, .. } => {
                    payload["journey_id"] = json!(journey_id);
                    payload["journey"] = json!(fired.name);
                    payload["step"] = json!(step);
                    payload["event"] = json!({"properties": event});
                }
            }
            NewDelivery { kind: "message".into(), target: contact.email.clone(), payload }
        }
        // Refused on contact rules and journey steps when they are saved: a contact's owner is
        // not asked.
        Action::EmailOwner { .. } => return None,
        Action::Segment { event } => NewDelivery {
            kind: "segment".into(),
            target: fired.outbound_host()?.clone(),
            payload: segment_track(
                &fired.who,
                event.as_deref().unwrap_or(NUDGE_SENT),
                fired.track_properties(),
                fired.at,
            ),
        },
    })
}

/// A rule about an account's health, firing.
pub struct AccountFired<'a> {
    /// The rule's id.
    pub rule_id: i64,
    /// The rule.
    pub rule: &'a RuleSpec,
    /// The account.
    pub account: &'a Account,
    /// Its score and band now.
    pub score: i64,
    /// Its band now (`at_risk`…).
    pub band: &'a str,
    /// What occurred, e.g. `became at risk (was healthy)`.
    pub trigger: &'a str,
    /// The email of the account's owner, if it has one.
    pub owner_email: Option<&'a str>,
    /// When the rule fired.
    pub at: Timestamp,
}

/// The messages a rule about an account's health sends: webhooks, emails, and an email to
/// the account's owner when it has one. `{name}` is the account's name (else its groupId),
/// `{email}` its owner's address.
pub fn for_account_firing(fired: &AccountFired) -> Vec<NewDelivery> {
    let account = fired.account;
    let name = account.name.as_deref().unwrap_or(&account.group_id);
    let owner = fired.owner_email.unwrap_or("");
    let fill = |template: &str| render(template, name, owner, &fired.rule.name, fired.trigger);
    let default_body = "{name}: {event}\n\nRule: {rule}";
    let mut out = Vec::new();
    for action in &fired.rule.then {
        let email = |to: &str, subject: &Option<String>, body: &Option<String>| NewDelivery {
            kind: "email".into(),
            target: to.to_owned(),
            payload: json!({
                "subject": fill(subject.as_deref().unwrap_or("kith: {rule} — {name}")),
                "body": fill(body.as_deref().unwrap_or(default_body)),
            }),
        };
        match action {
            Action::Webhook { url, text } => out.push(NewDelivery {
                kind: "webhook".into(),
                target: url.clone(),
                payload: json!({
                    "text": fill(text.as_deref().unwrap_or("kith: {rule} — {name}: {event}")),
                    "rule": {"id": fired.rule_id, "name": fired.rule.name},
                    "trigger": fired.trigger,
                    "account": {"group_id": account.group_id, "name": account.name},
                    "health": {"score": fired.score, "band": fired.band},
                    "owner": fired.owner_email,
                    "fired_at": fired.at.to_string(),
                }),
            }),
            Action::Email { to, subject, body } => out.push(email(to, subject, body)),
            Action::EmailOwner { subject, body } => {
                if let Some(owner) = fired.owner_email {
                    out.push(email(owner, subject, body));
                }
            }
            // Refused on account rules when the rule is saved: they speak to or about a contact.
            Action::Message { .. } | Action::Segment { .. } => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_change_says_what_it_sets_off() {
        // (stored bucket, new bucket, track emitted)
        let cases = [
            (None, "close", Some(BECAME_CLOSE)),
            (Some("warm"), "close", Some(BECAME_CLOSE)),
            (Some("cooling"), "cold", Some(WENT_COLD)),
            (Some("close"), "cold", Some(WENT_COLD)),
            (Some("close"), "warm", None),
            (Some("cold"), "cooling", None),
            (None, "warm", None),
            // A stored name kith does not know: going cold from it is no news.
            (Some("lukewarm"), "cold", None),
        ];
        for (old, new, track) in cases {
            let change = BucketChange::new(old, new, 1_000).unwrap();
            assert_eq!(change.track().map(|(event, _)| event), track, "{old:?} → {new}");
            assert_eq!(change.source, format!("bucket:{new}:1000"));
            assert_eq!(change.description, format!("became {new}"));
        }
        let (_, properties) = BucketChange::new(None, "close", 0).unwrap().track().unwrap();
        assert_eq!(Value::Object(properties), json!({"from": "cold", "to": "close"}));
        assert_eq!(BucketChange::new(Some("warm"), "tepid", 0), None, "not a bucket");

        let to_cold_from_close = Trigger::BucketChanged { to: Bucket::Cold, from: Some(Bucket::Close) };
        assert!(BucketChange::new(Some("close"), "cold", 0).unwrap().starts(&to_cold_from_close));
        assert!(!BucketChange::new(Some("cooling"), "cold", 0).unwrap().starts(&to_cold_from_close));
        assert!(!BucketChange::new(Some("close"), "warm", 0).unwrap().starts(&to_cold_from_close));
    }
}
