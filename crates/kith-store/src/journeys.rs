//! One entry of a journey moved by the job, decided in memory and shared by both backends: the
//! backend loads the entry, the contact and its events, calls [`step_entry`], then records
//! each step passed (its unique key is the claim that the step acts once) with the deliveries
//! it queues, and stores the entry's new position.

use jiff::Timestamp;
use kith_core::journeys::{advance, EntryPolicy, Facts, JourneySpec, Position, Seen, Status, StepKind};
use kith_core::time::from_millis;
use serde_json::{json, Map, Value};

use crate::deliveries::{self, Fired, Origin, SegmentIdentity};
use crate::plan::{ContactRef, NewJourneyEntry};
use crate::records::{Contact, ContactId, NewDelivery, Workspace, WorkspaceId};

/// Entries moved per pass.
pub const ENTRIES_PER_PASS: usize = 200;

/// A journey an occurrence starts, before the contacts that enter are known: an account's
/// health change enters each of the account's members.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyStart {
    /// The journey.
    pub journey_id: i64,
    /// Who may enter, how often.
    pub policy: EntryPolicy,
    /// The id of the journey's first step.
    pub first_step: u32,
    /// What identifies this occurrence; an entry is created once per contact and occurrence.
    pub occurrence: String,
    /// What occurred, for people.
    pub trigger: String,
    /// What the steps may read as the entry event's properties.
    pub properties: Map<String, Value>,
    /// When it occurred.
    pub at: i64,
}

impl JourneyStart {
    /// The start of `journey` by an occurrence.
    pub fn of(journey_id: i64, journey: &JourneySpec, occurrence: String, trigger: String, at: i64) -> JourneyStart {
        JourneyStart {
            journey_id,
            policy: journey.entry,
            first_step: journey.steps.first().map_or(0, |step| step.id),
            occurrence,
            trigger,
            properties: Map::new(),
            at,
        }
    }

    /// The entry of one contact.
    pub fn for_contact(&self, workspace: WorkspaceId, contact: ContactId) -> NewJourneyEntry {
        NewJourneyEntry {
            workspace_id: workspace,
            journey_id: self.journey_id,
            policy: self.policy,
            first_step: self.first_step,
            contact: ContactRef::Existing(contact),
            occurrence: self.occurrence.clone(),
            trigger: self.trigger.clone(),
            properties: self.properties.clone(),
            at: self.at,
        }
    }
}

/// An active entry as the job loads it.
#[derive(Debug, Clone)]
pub struct ActiveEntry {
    pub id: i64,
    pub workspace_id: WorkspaceId,
    pub journey_id: i64,
    pub contact_id: ContactId,
    /// What started it.
    pub trigger: String,
    /// The entry event's properties.
    pub properties: Map<String, Value>,
    pub entered_at: i64,
    /// The step it is at.
    pub step: u32,
    /// Since when (logical time).
    pub step_since: i64,
}

/// A step passed, with what it queues.
#[derive(Debug)]
pub struct Passed {
    pub step: u32,
    /// Logical time.
    pub at: i64,
    pub why: String,
    /// Queued only if the step's record is new.
    pub deliveries: Vec<NewDelivery>,
}

/// The entry's new state.
#[derive(Debug, PartialEq)]
pub struct EntryUpdate {
    /// `active`, `completed` or `exited`.
    pub state: &'static str,
    pub step: Option<u32>,
    pub step_since: i64,
    pub next_due_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub reason: Option<String>,
}

/// What the job does with one entry.
#[derive(Debug)]
pub struct Stepped {
    pub passed: Vec<Passed>,
    pub update: EntryUpdate,
}

/// The entry ends because its contact is gone (erased or merged away).
pub fn contact_gone(entry: &ActiveEntry, now: i64) -> EntryUpdate {
    EntryUpdate {
        state: "exited",
        step: None,
        step_since: entry.step_since,
        next_due_at: None,
        ended_at: Some(now),
        reason: Some("the contact no longer exists".into()),
    }
}

/// Decides where an entry goes as of `now` and what the steps it passes send.
#[allow(clippy::too_many_arguments)]
pub fn step_entry(
    spec: &JourneySpec,
    entry: &ActiveEntry,
    contact: &Contact,
    who: SegmentIdentity,
    workspace: &Workspace,
    events: &[Seen],
    audiences: &[String],
    now: Timestamp,
) -> Stepped {
    let facts = Facts {
        events,
        traits: &contact.traits,
        audiences,
        entry: &entry.properties,
        entered_at: from_millis(entry.entered_at),
    };
    let position = Position { step: entry.step, since: from_millis(entry.step_since) };
    let advanced = advance(spec, position, &facts, now);
    let passed = advanced
        .moves
        .into_iter()
        .map(|moved| {
            let fired = Fired {
                origin: Origin::Journey {
                    journey_id: entry.journey_id,
                    entry_id: entry.id,
                    step: moved.step,
                    event: &entry.properties,
                },
                name: &spec.name,
                contact,
                who: who.clone(),
                trigger: &entry.trigger,
                workspace,
                at: now,
            };
            let deliveries = moved.act.as_ref().and_then(|kind| for_step(&fired, kind)).into_iter().collect();
            Passed { step: moved.step, at: moved.at.as_millisecond(), why: moved.why, deliveries }
        })
        .collect();
    let update = match advanced.status {
        Status::Waiting { at, until } => EntryUpdate {
            state: "active",
            step: Some(at.step),
            step_since: at.since.as_millisecond(),
            next_due_at: Some(until.as_millisecond()),
            ended_at: None,
            reason: None,
        },
        Status::Completed { at } => EntryUpdate {
            state: "completed",
            step: None,
            step_since: at.as_millisecond(),
            next_due_at: None,
            ended_at: Some(at.as_millisecond()),
            reason: None,
        },
        Status::Exited { at, why } => EntryUpdate {
            state: "exited",
            step: None,
            step_since: at.as_millisecond(),
            next_due_at: None,
            ended_at: Some(at.as_millisecond()),
            reason: Some(why),
        },
    };
    Stepped { passed, update }
}

/// What an acting step queues: a message, webhook or track call as a rule's action would, a
/// note or a cadence as a delivery the job applies to the contact.
pub fn for_step(fired: &Fired, kind: &StepKind) -> Option<NewDelivery> {
    if let Some(action) = kind.action() {
        return deliveries::for_action(fired, &action);
    }
    let contact = fired.contact;
    match kind {
        StepKind::Note { text } => Some(NewDelivery {
            kind: "note".into(),
            target: contact.email.clone(),
            payload: json!({"contact_id": contact.id, "text": text, "journey": fired.name}),
        }),
        StepKind::Cadence { days } => Some(NewDelivery {
            kind: "cadence".into(),
            target: contact.email.clone(),
            payload: json!({"contact_id": contact.id, "days": days, "journey": fired.name}),
        }),
        _ => None,
    }
}
