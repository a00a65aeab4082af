//! Journeys: an entry trigger, then steps over days — waits, waits for an event (matched to the
//! entry event's object, e.g. the same `cartId`), branches, actions — with exit conditions for
//! the whole journey. A journey is data; where a contact goes next is [`advance`], a pure
//! function of the journey, the contact's position and what the contact did. The live job and
//! the backtest both call it, so a backtest counts what a live run over the same events does.
//!
//! Time inside a journey is logical: a step that waited 48 hours ends at its deadline and an
//! awaited event moves the contact at the event's time, however late a job pass notices. So the
//! same events give the same path whether a pass runs every 15 seconds or once at the end.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::rules::{Action, Trigger};

/// The most steps a journey may hold.
pub const MAX_STEPS: usize = 50;
/// The longest wait of one step: a year.
pub const MAX_WAIT_HOURS: i64 = 24 * 365;
/// The longest cadence a step may set, in days.
pub const MAX_CADENCE_DAYS: i64 = 3650;
/// The longest name, event name, property key or URL in a journey, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest note or webhook text, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// Who may enter, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EntryPolicy {
    /// A contact enters at most once, ever.
    #[default]
    Once,
    /// A contact enters again only this many days after its last entry.
    OncePerDays(i64),
    /// Every trigger is an entry; one contact may be in the journey several times at once
    /// (two carts, two projects).
    EveryTime,
}

impl EntryPolicy {
    /// Whether a contact whose last entry was at `last` (if ever) enters at `at`.
    pub fn admits(self, last: Option<Timestamp>, at: Timestamp) -> bool {
        match (self, last) {
            (_, None) | (EntryPolicy::EveryTime, _) => true,
            (EntryPolicy::Once, Some(_)) => false,
            (EntryPolicy::OncePerDays(days), Some(last)) => at >= last + SignedDuration::from_hours(24 * days),
        }
    }
}

/// Where to go after a wait or a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Next {
    /// The step below.
    #[default]
    Continue,
    /// Leave the journey.
    Exit,
    /// Jump forward to the step with this id.
    Step(u32),
}

/// What a branch tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// A trait of the contact, now.
    Trait {
        /// The trait's name.
        key: String,
        /// The value (or one of a list); without it, the trait is set and not null.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        equals: Option<Value>,
    },
    /// The contact is in an Engage audience now.
    Audience {
        /// The audience key.
        key: String,
    },
    /// A property of the event that started the entry.
    Property {
        /// The property's name.
        key: String,
        /// As for traits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        equals: Option<Value>,
    },
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepKind {
    /// Wait this long.
    Wait {
        /// Hours.
        hours: i64,
    },
    /// Wait until the contact does something, at most `hours`.
    WaitUntil {
        /// The awaited track event.
        event: String,
        /// When set, the awaited event must carry the entry event's value of this property
        /// (e.g. `cartId`: the checkout of *that* cart).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        same: Option<String>,
        /// How long to wait.
        hours: i64,
        /// Where to go when the event happens.
        #[serde(default)]
        then: Next,
        /// Where to go when it does not happen in time.
        #[serde(default)]
        timeout: Next,
    },
    /// Go on if the condition holds, else go `otherwise`.
    Branch {
        /// The test.
        condition: Condition,
        /// Where to go when it does not hold.
        #[serde(default = "exit_by_default")]
        otherwise: Next,
    },
    /// Send a template of the workspace to the contact (checked against consent when sent).
    Message {
        /// The template's id.
        template: i64,
    },
    /// POST JSON with a Slack-compatible `text`.
    Webhook {
        /// Where to.
        url: String,
        /// The text; `{name}`, `{email}`, `{rule}` (the journey) and `{event}` are filled in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Emit a Segment track call to the workspace's outbound Segment host.
    Segment {
        /// The event name.
        event: String,
    },
    /// Write a note on the contact's timeline.
    Note {
        /// The note.
        text: String,
    },
    /// Set the contact's cadence (none clears it).
    Cadence {
        /// Days, or none.
        #[serde(default)]
        days: Option<i64>,
    },
    /// Leave the journey here.
    Exit {},
}

fn exit_by_default() -> Next {
    Next::Exit
}

impl StepKind {
    /// The step's kind as the API and forms name it.
    pub fn kind(&self) -> &'static str {
        match self {
            StepKind::Wait { .. } => "wait",
            StepKind::WaitUntil { .. } => "wait_until",
            StepKind::Branch { .. } => "branch",
            StepKind::Message { .. } => "message",
            StepKind::Webhook { .. } => "webhook",
            StepKind::Segment { .. } => "segment",
            StepKind::Note { .. } => "note",
            StepKind::Cadence { .. } => "cadence",
            StepKind::Exit {} => "exit",
        }
    }

    /// The rule action a sending step shares with nudge rules, so both go through the same
    /// delivery code.
    pub fn action(&self) -> Option<Action> {
        match self {
            StepKind::Message { template } => Some(Action::Message { template: *template }),
            StepKind::Webhook { url, text } => Some(Action::Webhook { url: url.clone(), text: text.clone() }),
            StepKind::Segment { event } => Some(Action::Segment { event: Some(event.clone()) }),
            _ => None,
        }
    }

    /// Whether passing the step does something to the outside world or the contact.
    pub fn acts(&self) -> bool {
        matches!(
            self,
            StepKind::Message { .. }
                | StepKind::Webhook { .. }
                | StepKind::Segment { .. }
                | StepKind::Note { .. }
                | StepKind::Cadence { .. }
        )
    }
}

/// One step, with an id that stays when steps are added, removed or reordered: positions and
/// the record of steps taken refer to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Assigned when the journey is saved if not given.
    pub id: u32,
    /// What it does.
    #[serde(flatten)]
    pub kind: StepKind,
}

/// Read by hand rather than derived: serde's `flatten` would take the first kind it knows and
/// ignore the rest, so `{"wait": …, "note": …}` would lose a step silently and a misspelt
/// field would pass. A step is its optional `id` and exactly one kind.
impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = Map::<String, Value>::deserialize(deserializer)?;
        let id = match fields.remove("id") {
            None | Some(Value::Null) => 0,
            Some(id) => {
                u32::deserialize(id).map_err(|_| D::Error::custom("a step's `id` is a positive whole number"))?
            }
        };
        if fields.len() != 1 {
            let found: Vec<&str> = fields.keys().map(String::as_str).collect();
            return Err(D::Error::custom(format!(
                "a step is one of wait, wait_until, branch, message, webhook, segment, note, cadence or exit (with an \
                 optional id); found {found:?}"
            )));
        }
        let kind = StepKind::deserialize(Value::Object(fields)).map_err(D::Error::custom)?;
        Ok(Step { id, kind })
    }
}

/// An event that ends the journey wherever the contact is in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitWhen {
    /// The track event, e.g. `Subscription Started`.
    pub event: String,
    /// When set, only with the entry event's value of this property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same: Option<String>,
}

/// A journey as stored and managed through `/api/journeys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneySpec {
    /// A name people recognise.
    pub name: String,
    /// A paused journey admits nobody and moves nobody; contacts wait where they are.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// What starts an entry.
    pub when: Trigger,
    /// Who may enter, how often.
    #[serde(default)]
    pub entry: EntryPolicy,
    /// The steps, top to bottom.
    pub steps: Vec<Step>,
    /// Events that end an entry wherever it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_when: Vec<ExitWhen>,
}

fn enabled_by_default() -> bool {
    true
}

impl JourneySpec {
    /// Gives every step without an id the next free one, so a new journey's steps are 1, 2, 3…
    /// and a step added to a live journey never takes the id of one that was removed while
    /// contacts had passed it (ids only grow past the largest in `previous`).
    pub fn assign_ids(&mut self, previous: Option<&JourneySpec>) {
        let mut next = self
            .steps
            .iter()
            .chain(previous.map(|p| p.steps.as_slice()).unwrap_or_default())
            .map(|step| step.id)
            .max()
            .unwrap_or(0);
        for step in &mut self.steps {
            if step.id == 0 {
                // Past the largest id there is none left: the step keeps 0, which `validate`
                // refuses, rather than overflowing.
                next = next.checked_add(1).unwrap_or(0);
                step.id = next;
            }
        }
    }

    /// Refuses, in an edit, an id given to a step the previous version does not have, at or
    /// below its largest id: such an id may be a removed step's, and the contacts that passed
    /// that step would skip the new one. A new step is given without an id.
    pub fn check_new_ids(&self, previous: &JourneySpec) -> Result<(), String> {
        let largest = previous.steps.iter().map(|step| step.id).max().unwrap_or(0);
        match self
            .steps
            .iter()
            .find(|step| step.id != 0 && step.id <= largest && !previous.steps.iter().any(|kept| kept.id == step.id))
        {
            Some(step) => Err(format!(
                "step id {} is not a step of this journey now (it may be one that was removed): leave `id` out for a \
                 new step",
                step.id
            )),
            None => Ok(()),
        }
    }

    /// Checks a journey a person wrote (after [`JourneySpec::assign_ids`]); the error says what
    /// to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.chars().count() > MAX_NAME_CHARS {
            return Err(format!("a journey needs a name of 1 to {MAX_NAME_CHARS} characters"));
        }
        self.check_texts()?;
        self.when.validate()?;
        if let EntryPolicy::OncePerDays(days) = self.entry {
            if !(1..=3650).contains(&days) {
                return Err("`entry.once_per_days` is 1 to 3650".into());
            }
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(format!("a journey has 1 to {MAX_STEPS} steps"));
        }
        for exit in &self.exit_when {
            if exit.event.trim().is_empty() {
                return Err("`exit_when.event` names the track event that ends the journey".into());
            }
            if exit.same.as_deref().is_some_and(|same| same.trim().is_empty()) {
                return Err("`exit_when.same` names a property of the entry event".into());
            }
        }
        let position: HashMap<u32, usize> = self.steps.iter().enumerate().map(|(i, step)| (step.id, i)).collect();
        if position.len() != self.steps.len() || position.contains_key(&0) {
            return Err("step ids are unique and positive".into());
        }
        for (index, step) in self.steps.iter().enumerate() {
            let n = index + 1;
            let forward = |next: Next, field: &str| match next {
                Next::Step(id) if position.get(&id).is_none_or(|&target| target <= index) => {
                    Err(format!("step {n}: `{field}` jumps to step id {id}, which is not a later step"))
                }
                _ => Ok(()),
            };
            match &step.kind {
                StepKind::Wait { hours } if !(1..=MAX_WAIT_HOURS).contains(hours) => {
                    return Err(format!("step {n}: a wait is 1 to {MAX_WAIT_HOURS} hours"));
                }
                StepKind::WaitUntil { event, same, hours, then, timeout } => {
                    if event.trim().is_empty() {
                        return Err(format!("step {n}: name the awaited track event"));
                    }
                    if same.as_deref().is_some_and(|same| same.trim().is_empty()) {
                        return Err(format!("step {n}: `same` names a property of the entry event"));
                    }
                    if !(1..=MAX_WAIT_HOURS).contains(hours) {
                        return Err(format!("step {n}: a wait is 1 to {MAX_WAIT_HOURS} hours"));
                    }
                    forward(*then, "then")?;
                    forward(*timeout, "timeout")?;
                }
                StepKind::Branch { condition, otherwise } => {
                    let key = match condition {
                        Condition::Trait { key, .. }
                        | Condition::Audience { key }
                        | Condition::Property { key, .. } => key,
                    };
                    if key.trim().is_empty() {
                        return Err(format!("step {n}: a branch names the trait, audience or property it tests"));
                    }
                    forward(*otherwise, "otherwise")?;
                }
                StepKind::Message { template } if *template <= 0 => {
                    return Err(format!("step {n}: `template` is the id of one of the workspace's templates"));
                }
                StepKind::Webhook { url, .. } if !(url.starts_with("http://") || url.starts_with("https://")) => {
                    return Err(format!("step {n}: webhook url {url:?} must start with http:// or https://"));
                }
                StepKind::Segment { event } if event.trim().is_empty() => {
                    return Err(format!("step {n}: name the track event to emit"));
                }
                StepKind::Note { text } if text.trim().is_empty() => {
                    return Err(format!("step {n}: a note is 1 to {MAX_TEXT_CHARS} characters"));
                }
                StepKind::Cadence { days: Some(days) } if !(1..=MAX_CADENCE_DAYS).contains(days) => {
                    return Err(format!("step {n}: a cadence is 1 to {MAX_CADENCE_DAYS} days"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Every text a person wrote in the journey is of a sensible length and holds no control
    /// characters (line breaks and tabs only in notes and webhook texts): a NUL or a 2 MB event
    /// name is a mistake, and PostgreSQL cannot store a NUL.
    fn check_texts(&self) -> Result<(), String> {
        let mut texts: Vec<(&str, String, bool)> = vec![(&self.name, "the name".into(), false)];
        for exit in &self.exit_when {
            texts.push((&exit.event, "`exit_when.event`".into(), false));
            texts.extend(exit.same.as_deref().map(|same| (same, "`exit_when.same`".to_owned(), false)));
        }
        for (index, step) in self.steps.iter().enumerate() {
            let n = index + 1;
            let field = |name: &str| format!("step {n}: `{name}`");
            match &step.kind {
                StepKind::WaitUntil { event, same, .. } => {
                    texts.push((event, field("event"), false));
                    texts.extend(same.as_deref().map(|same| (same, field("same"), false)));
                }
                StepKind::Branch { condition, .. } => {
                    let (Condition::Trait { key, .. } | Condition::Audience { key } | Condition::Property { key, .. }) =
                        condition;
                    texts.push((key, field("key"), false));
                }
                StepKind::Webhook { url, text } => {
                    texts.push((url, field("url"), false));
                    texts.extend(text.as_deref().map(|text| (text, field("text"), true)));
                }
                StepKind::Segment { event } => texts.push((event, field("event"), false)),
                StepKind::Note { text } => texts.push((text, field("text"), true)),
                _ => {}
            }
        }
        for (text, what, multiline) in texts {
            let max = if multiline { MAX_TEXT_CHARS } else { MAX_NAME_CHARS };
            if text.chars().count() > max {
                return Err(format!("{what} is longer than {max} characters"));
            }
            if text.chars().any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'))) {
                return Err(format!("{what} holds a control character (such as NUL or a line break)"));
            }
        }
        Ok(())
    }

    fn index_of(&self, id: u32) -> Option<usize> {
        self.steps.iter().position(|step| step.id == id)
    }

    /// The position of a new entry: the first step, from the entry's time.
    pub fn start(&self, entered_at: Timestamp) -> Position {
        Position { step: self.steps.first().map_or(0, |step| step.id), since: entered_at }
    }
}

/// A track event as a journey sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The event name.
    pub name: String,
    /// When it happened.
    pub time: Timestamp,
    /// Its properties.
    pub properties: Map<String, Value>,
}

/// What a journey may know about a contact.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The contact's track events since the entry, in time order.
    pub events: &'a [Seen],
    /// The contact's traits now.
    pub traits: &'a Map<String, Value>,
    /// The audiences the contact is in now.
    pub audiences: &'a [String],
    /// The properties of the event that started the entry.
    pub entry: &'a Map<String, Value>,
    /// When the entry started.
    pub entered_at: Timestamp,
}

/// Where an entry is: the step it is at, and since when (logical time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The step's id.
    pub step: u32,
    /// When the contact reached it.
    pub since: Timestamp,
}

/// A step passed: the "why it moved" of a contact's journey.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// The step's id.
    pub step: u32,
    /// When (logical time).
    pub at: Timestamp,
    /// What happened, in words.
    pub why: String,
    /// The step, when passing it acts (a message, a webhook…).
    pub act: Option<StepKind>,
}

/// Where an entry stands after [`advance`].
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// At a wait that ends at `until` unless an awaited or exit event comes first.
    Waiting {
        /// Where.
        at: Position,
        /// The wait's deadline.
        until: Timestamp,
    },
    /// Passed the last step.
    Completed {
        /// When.
        at: Timestamp,
    },
    /// Left by an exit step, an exit condition or a branch.
    Exited {
        /// When.
        at: Timestamp,
        /// Why, in words.
        why: String,
    },
}

/// The result of [`advance`]: the steps passed, in order, and where the entry now stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Advance {
    /// Steps passed.
    pub moves: Vec<Move>,
    /// Where it stands.
    pub status: Status,
}

fn same_value(entry: &Map<String, Value>, event: &Seen, same: Option<&str>) -> bool {
    same.is_none_or(|key| match entry.get(key) {
        // The entry carried no such value: nothing can match it.
        None | Some(Value::Null) => false,
        Some(value) => event.properties.get(key) == Some(value),
    })
}

fn value_matches(actual: Option<&Value>, expected: Option<&Value>) -> bool {
    let actual = actual.filter(|v| !v.is_null());
    match (actual, expected) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(actual), Some(Value::Array(choices))) => choices.contains(actual),
        (Some(actual), Some(expected)) => actual == expected,
    }
}

fn holds(condition: &Condition, facts: &Facts) -> bool {
    match condition {
        Condition::Trait { key, equals } => value_matches(facts.traits.get(key), equals.as_ref()),
        Condition::Audience { key } => facts.audiences.iter().any(|audience| audience == key),
        Condition::Property { key, equals } => value_matches(facts.entry.get(key), equals.as_ref()),
    }
}

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

/// Moves an entry as far as the events known up to `now` take it. Passing an action step
/// yields a [`Move`] with `act` set; the caller performs it at most once per entry and step.
pub fn advance(spec: &JourneySpec, from: Position, facts: &Facts, now: Timestamp) -> Advance {
    let mut moves = Vec::new();
    // The first exit event after the entry (events at the entry's instant are the entry's own).
    let exit = facts
        .events
        .iter()
        .filter(|event| event.time > facts.entered_at && event.time <= now)
        .find(|event| {
            spec.exit_when
                .iter()
                .any(|exit| exit.event == event.name && same_value(facts.entry, event, exit.same.as_deref()))
        })
        .map(|event| (event.time, format!("{} happened", event.name)));
    let exited = |at: Timestamp, why: &str, moves: Vec<Move>| Advance {
        moves,
        status: Status::Exited { at, why: why.to_owned() },
    };
    // The event that started an event-triggered entry is not something the contact did after
    // entering: a wait for the same event waits for the next one.
    let own = match spec.when {
        Trigger::Event { .. } => facts.events.iter().position(|seen| {
            seen.time == facts.entered_at
                && spec.when.matches_track(&seen.name, &seen.properties)
                && seen.properties == *facts.entry
        }),
        _ => None,
    };
    let Some(mut index) = spec.index_of(from.step) else {
        return exited(from.since, "its step was removed from the journey", moves);
    };
    let mut t = from.since;
    loop {
        if let Some((x, why)) = exit.as_ref().filter(|(x, _)| *x <= t) {
            return exited(*x, why, moves);
        }
        let step = &spec.steps[index];
        let go = |next: Next| -> Option<usize> {
            match next {
                Next::Continue => Some(index + 1),
                Next::Exit => None,
                Next::Step(id) => spec.index_of(id),
            }
        };
        let (next, why) = match &step.kind {
            StepKind::Wait { hours: h } => {
                let until = t + hours(*h);
                if let Some((x, why)) = exit.as_ref().filter(|(x, _)| *x <= until) {
                    return exited(*x, why, moves);
                }
                if until > now {
                    return Advance {
                        moves,
                        status: Status::Waiting { at: Position { step: step.id, since: t }, until },
                    };
                }
                t = until;
                (Some(index + 1), format!("waited {h} h"))
            }
            StepKind::WaitUntil { event, same, hours: h, then, timeout } => {
                let until = t + hours(*h);
                let awaited = facts
                    .events
                    .iter()
                    .enumerate()
                    .filter(|(i, seen)| Some(*i) != own && seen.time >= t && seen.time <= until && seen.time <= now)
                    .map(|(_, seen)| seen)
                    .find(|seen| seen.name == *event && same_value(facts.entry, seen, same.as_deref()));
                let decided = awaited.map_or(until, |seen| seen.time);
                if let Some((x, why)) = exit.as_ref().filter(|(x, _)| *x <= decided) {
                    return exited(*x, why, moves);
                }
                match awaited {
                    Some(seen) => {
                        t = seen.time;
                        let matched = same
                            .as_deref()
                            .and_then(|key| facts.entry.get(key).map(|value| format!(" with the same {key} ({value})")))
                            .unwrap_or_default();
                        (go(*then), format!("{event} happened{matched}"))
                    }
                    None if until <= now => {
                        t = until;
                        (go(*timeout), format!("no {event} within {h} h"))
                    }
                    None => {
                        return Advance {
                            moves,
                            status: Status::Waiting { at: Position { step: step.id, since: t }, until },
                        }
                    }
                }
            }
            StepKind::Branch { condition, otherwise } => {
                if holds(condition, facts) {
                    (Some(index + 1), "the condition held".to_owned())
                } else {
                    (go(*otherwise), "the condition did not hold".to_owned())
                }
            }
            StepKind::Exit {} => {
                moves.push(Move { step: step.id, at: t, why: "reached an exit step".into(), act: None });
                return exited(t, "reached an exit step", moves);
            }
            kind => (Some(index + 1), format!("{} done", kind.kind())),
        };
        let left = format!("left: {why}");
        moves.push(Move { step: step.id, at: t, why, act: step.kind.acts().then(|| step.kind.clone()) });
        match next {
            None => return exited(t, &left, moves),
            Some(next) if next >= spec.steps.len() => return Advance { moves, status: Status::Completed { at: t } },
            Some(next) => index = next,
        }
    }
}

/// One contact's events in a backtest window, with what branches read of it now.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Track events in time order.
    pub events: Vec<Seen>,
    /// For a trigger other than an event, what started entries in the window, in time order,
    /// named as people read it and with what steps read as the entry event's properties (an
    /// account's health for a health change).
    pub starts: Vec<Seen>,
    /// Traits now.
    pub traits: Map<String, Value>,
    /// Audiences now.
    pub audiences: Vec<String>,
}

/// One entry a backtest found.
#[derive(Debug, Clone)]
pub struct ReplayedEntry {
    /// The contact.
    pub contact: i64,
    /// When it entered.
    pub entered_at: Timestamp,
    /// Where it went.
    pub advance: Advance,
}

/// Runs a journey over the past without acting: every event of the window that matches an
/// event trigger (for other triggers, every start the history holds) that the entry policy
/// admits is an entry (the policy counts only entries inside the window), and each entry goes
/// through [`advance`] as of `now`, exactly as the live job moves it.
pub fn replay(spec: &JourneySpec, histories: &BTreeMap<i64, History>, now: Timestamp) -> Vec<ReplayedEntry> {
    let mut out = Vec::new();
    for (&contact, history) in histories {
        let mut last: Option<Timestamp> = None;
        let starts: Vec<&Seen> = match spec.when {
            Trigger::Event { .. } => {
                history.events.iter().filter(|seen| spec.when.matches_track(&seen.name, &seen.properties)).collect()
            }
            _ => history.starts.iter().collect(),
        };
        for seen in starts {
            if seen.time > now || !spec.entry.admits(last, seen.time) {
                continue;
            }
            last = Some(seen.time);
            let facts = Facts {
                events: &history.events[history.events.partition_point(|e| e.time < seen.time)..],
                traits: &history.traits,
                audiences: &history.audiences,
                entry: &seen.properties,
                entered_at: seen.time,
            };
            let advance = advance(spec, spec.start(seen.time), &facts, now);
            out.push(ReplayedEntry { contact, entered_at: seen.time, advance });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(hours_in: i64) -> Timestamp {
        "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_hours(hours_in)
    }

    fn seen(name: &str, h: i64, properties: Value) -> Seen {
        Seen { name: name.into(), time: at(h), properties: properties.as_object().cloned().unwrap_or_default() }
    }

    fn journey(value: Value) -> JourneySpec {
        let mut spec: JourneySpec = serde_json::from_value(value).unwrap();
        spec.assign_ids(None);
        spec.validate().unwrap();
        spec
    }

    fn onboarding() -> JourneySpec {
        journey(json!({
            "name": "Onboarding",
            "when": {"event": {"name": "Signed Up"}},
            "steps": [
                {"message": {"template": 1}},
                {"wait_until": {"event": "Project Created", "hours": 48, "then": "exit"}},
                {"message": {"template": 2}},
                {"wait_until": {"event": "Project Created", "hours": 72, "then": "exit"}},
                {"webhook": {"url": "https://hooks.example.com/team"}}
            ],
            "exit_when": [{"event": "Subscription Started"}]
        }))
    }

    fn run(spec: &JourneySpec, events: &[Seen], entry: Value, now: i64) -> Advance {
        let traits = Map::new();
        let entry = entry.as_object().cloned().unwrap_or_default();
        let facts = Facts { events, traits: &traits, audiences: &[], entry: &entry, entered_at: at(0) };
        advance(spec, spec.start(at(0)), &facts, at(now))
    }

    fn acted(advance: &Advance) -> Vec<u32> {
        advance.moves.iter().filter(|m| m.act.is_some()).map(|m| m.step).collect()
    }

    #[test]
    fn journeys_read_as_a_person_writes_them() {
        let spec = onboarding();
        assert_eq!(spec.steps.iter().map(|s| s.id).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert_eq!(spec.entry, EntryPolicy::Once);
        let every: JourneySpec = serde_json::from_value(json!({"name":"x","when":{"becomes_due":{}},
            "entry":{"once_per_days":7},"steps":[{"exit":{}}]}))
        .unwrap();
        assert_eq!(every.entry, EntryPolicy::OncePerDays(7));
        let mut backwards = onboarding();
        backwards.steps[3].kind = StepKind::WaitUntil {
            event: "x".into(),
            same: None,
            hours: 1,
            then: Next::Step(2),
            timeout: Next::Continue,
        };
        assert!(backwards.validate().unwrap_err().contains("not a later step"));
        let mut no_wait = onboarding();
        no_wait.steps[1].kind = StepKind::Wait { hours: 0 };
        assert!(no_wait.validate().unwrap_err().contains("step 2"));
        let mut no_steps = onboarding();
        no_steps.steps.clear();
        assert!(no_steps.validate().is_err());
    }

    #[test]
    fn new_steps_never_reuse_the_id_of_a_removed_one() {
        let old = onboarding();
        let mut edited = old.clone();
        edited.steps.remove(4);
        edited.steps.push(Step { id: 0, kind: StepKind::Exit {} });
        edited.assign_ids(Some(&old));
        assert_eq!(edited.steps.last().unwrap().id, 6);
    }

    #[test]
    fn onboarding_for_a_contact_who_does_nothing() {
        let spec = onboarding();
        let now = run(&spec, &[], json!({}), 0);
        assert_eq!(acted(&now), vec![1], "welcome at once");
        assert_eq!(now.status, Status::Waiting { at: Position { step: 2, since: at(0) }, until: at(48) });
        let day3 = run(&spec, &[], json!({}), 60);
        assert_eq!(acted(&day3), vec![1, 3], "the tip after two days");
        let day5 = run(&spec, &[], json!({}), 120);
        assert_eq!(acted(&day5), vec![1, 3, 5], "the team alert after five days");
        assert_eq!(day5.status, Status::Completed { at: at(120) });
    }

    #[test]
    fn onboarding_for_a_contact_who_acts() {
        let spec = onboarding();
        let events = [seen("Project Created", 20, json!({}))];
        let day5 = run(&spec, &events, json!({}), 200);
        assert_eq!(acted(&day5), vec![1], "no tip and no alert");
        assert_eq!(day5.status, Status::Exited { at: at(20), why: "left: Project Created happened".into() });
        assert!(day5.moves[1].why.contains("Project Created happened"));
    }

    #[test]
    fn exit_conditions_end_the_journey_wherever_the_contact_is() {
        let spec = onboarding();
        let events = [seen("Subscription Started", 60, json!({}))];
        let later = run(&spec, &events, json!({}), 200);
        assert_eq!(acted(&later), vec![1, 3]);
        assert_eq!(later.status, Status::Exited { at: at(60), why: "Subscription Started happened".into() });
        let before = run(&spec, &events, json!({}), 50);
        assert!(matches!(before.status, Status::Waiting { .. }), "an exit not yet known changes nothing");
    }

    #[test]
    fn inaction_is_matched_to_the_same_object() {
        let spec = journey(json!({
            "name": "Abandoned cart",
            "when": {"event": {"name": "Product Added"}},
            "entry": "every_time",
            "steps": [
                {"wait_until": {"event": "Order Completed", "same": "cartId", "hours": 24, "then": "exit"}},
                {"message": {"template": 7}}
            ]
        }));
        let events = [seen("Order Completed", 5, json!({"cartId": "a"}))];
        let cart_a = run(&spec, &events, json!({"cartId": "a"}), 30);
        assert!(acted(&cart_a).is_empty(), "cart a was checked out");
        let cart_b = run(&spec, &events, json!({"cartId": "b"}), 30);
        assert_eq!(acted(&cart_b), vec![2], "cart b was not: another cart's checkout does not count");
        let no_cart = run(&spec, &events, json!({}), 30);
        assert_eq!(acted(&no_cart), vec![2], "an entry without the property matches nothing");
    }

    #[test]
    fn branches_read_traits_audiences_and_entry_properties() {
        let spec = journey(json!({
            "name": "b", "when": {"event": {"name": "Signed Up"}},
            "steps": [
                {"branch": {"condition": {"property": {"key": "plan", "equals": ["pro", "team"]}}, "otherwise": {"step": 3}}},
                {"note": {"text": "pro"}},
                {"branch": {"condition": {"audience": {"key": "vip"}}}},
                {"cadence": {"days": 14}}
            ]
        }));
        let traits = Map::new();
        let pro = json!({"plan": "pro"});
        let facts = Facts {
            events: &[],
            traits: &traits,
            audiences: &["vip".to_owned()],
            entry: pro.as_object().unwrap(),
            entered_at: at(0),
        };
        assert_eq!(acted(&advance(&spec, spec.start(at(0)), &facts, at(0))), vec![2, 4]);
        let free = json!({"plan": "free"});
        let facts = Facts { entry: free.as_object().unwrap(), audiences: &[], ..facts };
        let out = advance(&spec, spec.start(at(0)), &facts, at(0));
        assert!(acted(&out).is_empty());
        assert!(matches!(out.status, Status::Exited { .. }), "not in the audience: out by default");
    }

    #[test]
    fn advancing_in_small_passes_equals_one_big_pass() {
        let spec = onboarding();
        let events = [seen("Subscription Started", 100, json!({}))];
        let once = run(&spec, &events, json!({}), 200);
        let traits = Map::new();
        let entry = Map::new();
        let facts = Facts { events: &events, traits: &traits, audiences: &[], entry: &entry, entered_at: at(0) };
        let mut position = spec.start(at(0));
        let mut moves = Vec::new();
        let mut status = None;
        for hour in (0..=200).step_by(7) {
            let step = advance(&spec, position, &facts, at(hour));
            moves.extend(step.moves);
            match step.status {
                Status::Waiting { at: next, .. } => position = next,
                done => {
                    status = Some(done);
                    break;
                }
            }
        }
        assert_eq!(moves, once.moves);
        assert_eq!(status, Some(once.status));
    }

    #[test]
    fn an_edit_cannot_give_a_new_step_the_id_of_a_removed_one() {
        let first = onboarding();
        let mut previous = first.clone();
        previous.steps.remove(1);
        assert!(previous.check_new_ids(&first).is_ok(), "kept ids are fine");
        let mut edited = previous.clone();
        edited.steps.push(Step { id: 2, kind: StepKind::Note { text: "again".into() } });
        assert!(edited.check_new_ids(&previous).unwrap_err().contains("step id 2"));
        edited.steps.last_mut().unwrap().id = 0;
        assert!(edited.check_new_ids(&previous).is_ok(), "a new step without an id gets a fresh one");
    }

    #[test]
    fn texts_are_of_sensible_length_without_control_characters() {
        let mut spec = onboarding();
        spec.name = "é".repeat(150);
        assert!(spec.validate().is_ok(), "characters, not bytes");
        spec.name = "é".repeat(201);
        assert!(spec.validate().unwrap_err().contains("1 to 200"));
        spec.name = "ok".into();
        spec.exit_when[0].event = "Subscription\0Started".into();
        assert!(spec.validate().unwrap_err().contains("control character"));
        spec.exit_when[0].event = "x".repeat(201);
        assert!(spec.validate().unwrap_err().contains("longer than 200"));
        spec.exit_when[0].event = "Subscription Started".into();
        spec.steps.push(Step { id: 99, kind: StepKind::Note { text: "line one\nline two".into() } });
        assert!(spec.validate().is_ok(), "a note may hold line breaks");
    }

    #[test]
    fn a_step_is_one_kind_and_nothing_else() {
        let step = |value: Value| serde_json::from_value::<Step>(value);
        assert_eq!(step(json!({"id": 3, "exit": {}})).unwrap(), Step { id: 3, kind: StepKind::Exit {} });
        assert_eq!(step(json!({"wait": {"hours": 2}})).unwrap().id, 0);
        let two = step(json!({"wait": {"hours": 1}, "note": {"text": "x"}})).unwrap_err().to_string();
        assert!(two.contains("one of"), "{two}");
        assert!(step(json!({"exit": {}, "extra": 1})).is_err());
        assert!(step(json!({"note": {"text": "x", "colour": "red"}})).is_err(), "unknown fields of a kind");
        assert!(step(json!({"id": -1, "exit": {}})).is_err());
        assert!(step(json!({})).is_err());
    }

    #[test]
    fn a_wait_for_the_entry_event_waits_for_the_next_one() {
        let spec = journey(json!({
            "name": "Pings", "when": {"event": {"name": "Ping"}}, "entry": "every_time",
            "steps": [{"wait_until": {"event": "Ping", "hours": 24, "then": "exit"}}, {"note": {"text": "quiet"}}]
        }));
        let (entry, traits) = (Map::new(), Map::new());
        let events = [seen("Ping", 0, json!({}))];
        let facts = |events| Facts { events, traits: &traits, audiences: &[], entry: &entry, entered_at: at(0) };
        let alone = advance(&spec, spec.start(at(0)), &facts(&events), at(1));
        assert!(matches!(alone.status, Status::Waiting { .. }), "{alone:?}");
        let again = [seen("Ping", 0, json!({})), seen("Ping", 2, json!({}))];
        let advanced = advance(&spec, spec.start(at(0)), &facts(&again), at(3));
        assert_eq!(advanced.status, Status::Exited { at: at(2), why: "left: Ping happened".into() });
    }

    #[test]
    fn ids_past_the_largest_are_refused_not_overflowed() {
        let mut spec: JourneySpec = serde_json::from_value(json!({
            "name": "x", "when": {"event": {"name": "X"}},
            "steps": [{"id": u32::MAX, "exit": {}}, {"exit": {}}]
        }))
        .unwrap();
        spec.assign_ids(None);
        assert!(spec.validate().unwrap_err().contains("unique and positive"));
    }

    #[test]
    fn a_removed_step_lets_its_contacts_out() {
        let spec = onboarding();
        let traits = Map::new();
        let facts = Facts { events: &[], traits: &traits, audiences: &[], entry: &traits, entered_at: at(0) };
        let out = advance(&spec, Position { step: 99, since: at(0) }, &facts, at(1));
        assert!(matches!(out.status, Status::Exited { ref why, .. } if why.contains("removed")));
    }

    #[test]
    fn entry_policies() {
        assert!(EntryPolicy::Once.admits(None, at(0)));
        assert!(!EntryPolicy::Once.admits(Some(at(0)), at(10_000)));
        assert!(EntryPolicy::EveryTime.admits(Some(at(0)), at(0)));
        assert!(!EntryPolicy::OncePerDays(7).admits(Some(at(0)), at(24 * 7 - 1)));
        assert!(EntryPolicy::OncePerDays(7).admits(Some(at(0)), at(24 * 7)));
    }

    #[test]
    fn replay_applies_the_trigger_and_the_policy() {
        let spec = onboarding();
        let mut histories = BTreeMap::new();
        histories.insert(
            1,
            History {
                events: vec![seen("Signed Up", 0, json!({})), seen("Signed Up", 10, json!({}))],
                ..History::default()
            },
        );
        histories.insert(2, History { events: vec![seen("Logged In", 0, json!({}))], ..History::default() });
        let entries = replay(&spec, &histories, at(100));
        assert_eq!(entries.len(), 1, "once ever, and only on the trigger");
        assert_eq!(acted(&entries[0].advance), vec![1, 3]);
    }
}
