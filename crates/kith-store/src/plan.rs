//! The write planner: what a batch of events does to contacts, identities, timelines,
//! accounts and audiences, decided in memory before a backend writes it.
//!
//! Every backend runs the same steps inside one transaction:
//! 1. ask [`needs`] which emails, ids and message digests the batch mentions and look them up;
//! 2. [`Planner::plan_identities`]: identifies and aliases, which create contacts and link ids;
//! 3. while [`Planner::take_new_links`] returns ids, fetch the events that were pending for them
//!    and [`Planner::attach_pending`] (which may link more ids: a pending alias);
//! 4. [`Planner::plan_activity`]: track, page, screen, group and delete;
//! 5. write the resulting [`Plan`].
//!
//! Identifies and aliases go first so that an event whose user is identified later in the
//! same batch lands exactly where it would have landed had it waited as pending: the result
//! does not depend on the order events arrive in. Per contact-day the plan keeps the earliest
//! event's description and the count of hits, so a batch costs one write per contact-day, not
//! one per event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use jiff::tz::TimeZone;
use kith_core::envelope::Item;
use kith_core::event::{parse_event, EventType, ParseContext, Parsed};
use kith_core::journeys::{EntryPolicy, JourneySpec};
use kith_core::rules::{event_properties, RuleSpec, Trigger};
use kith_core::{AudienceChange, Code, Event, EventKind, Rejection};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::records::{Activity, ContactId, Incoming, Outcome, Stored, WorkspaceId};

/// A contact a plan refers to: one that exists, or the n-th it creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContactRef {
    /// Already stored.
    Existing(ContactId),
    /// Index into [`Plan::new_contacts`].
    New(usize),
}

/// What the planner needs to know about a workspace.
#[derive(Debug, Clone)]
pub struct WorkspaceRules {
    /// Days are counted in this zone.
    pub tz: TimeZone,
    /// Enabled nudge rules triggered by events or audience changes, by id.
    pub rules: Vec<(i64, RuleSpec)>,
    /// Whether kith reports audience changes to an outbound Segment host.
    pub outbound: bool,
    /// Enabled journeys events or audience changes start, by id.
    pub journeys: Vec<(i64, JourneySpec)>,
}

impl WorkspaceRules {
    /// Rules for a workspace: only those the planner can trigger are kept.
    pub fn new(tz: TimeZone, rules: Vec<(i64, RuleSpec)>, outbound: bool) -> Self {
        let rules = rules
            .into_iter()
            .filter(|(_, rule)| {
                rule.enabled
                    && matches!(
                        rule.when,
                        Trigger::Event { .. } | Trigger::AudienceEntered { .. } | Trigger::AudienceExited { .. }
                    )
            })
            .collect();
        WorkspaceRules { tz, rules, outbound, journeys: Vec::new() }
    }

    /// The workspace's journeys: only enabled ones the planner can start are kept.
    pub fn with_journeys(mut self, journeys: Vec<(i64, JourneySpec)>) -> Self {
        self.journeys = journeys
            .into_iter()
            .filter(|(_, journey)| {
                journey.enabled
                    && matches!(
                        journey.when,
                        Trigger::Event { .. } | Trigger::AudienceEntered { .. } | Trigger::AudienceExited { .. }
                    )
            })
            .collect();
        self
    }
}

/// What the store already holds that a batch refers to.
#[derive(Debug, Default, Clone)]
pub struct Lookups {
    /// `(workspace, email)` → contact.
    pub contacts_by_email: HashMap<(WorkspaceId, String), ContactId>,
    /// `(workspace, id)` → contact, for userIds, anonymousIds and aliases.
    pub contacts_by_identity: HashMap<(WorkspaceId, String), ContactId>,
    /// Suppressed emails.
    pub suppressed: HashSet<(WorkspaceId, String)>,
    /// Message digests already stored.
    pub seen_messages: HashSet<[u8; 16]>,
}

impl Lookups {
    /// Adds what another lookup found.
    pub fn extend(&mut self, other: Lookups) {
        self.contacts_by_email.extend(other.contacts_by_email);
        self.contacts_by_identity.extend(other.contacts_by_identity);
        self.suppressed.extend(other.suppressed);
        self.seen_messages.extend(other.seen_messages);
    }
}

/// The keys a batch mentions, to look up before planning.
#[derive(Debug, Default, Clone)]
pub struct Needs {
    /// Emails (identify emails and emails that may reach a contact).
    pub emails: Vec<(WorkspaceId, String)>,
    /// userIds, anonymousIds and alias previousIds.
    pub identities: Vec<(WorkspaceId, String)>,
    /// Message digests.
    pub digests: Vec<[u8; 16]>,
}

/// The keys `events` mention, each once, sorted (backends that lock take them in this order).
pub fn needs<'a>(events: impl IntoIterator<Item = (WorkspaceId, &'a Event, Option<&'a [u8; 16]>)>) -> Needs {
    let mut emails = Vec::new();
    let mut identities = Vec::new();
    let mut digests = Vec::new();
    for (workspace, event, digest) in events {
        if let Some(email) = &event.email {
            emails.push((workspace, email.clone()));
        }
        for id in [&event.user_id, &event.anonymous_id].into_iter().flatten() {
            identities.push((workspace, id.clone()));
        }
        if let EventKind::Alias { previous_id } = &event.kind {
            identities.push((workspace, previous_id.clone()));
        }
        digests.extend(digest.copied());
    }
    for list in [&mut emails, &mut identities] {
        list.sort_unstable();
        list.dedup();
    }
    digests.sort_unstable();
    digests.dedup();
    Needs { emails, identities, digests }
}

/// A contact the plan creates.
#[derive(Debug, Clone, PartialEq)]
pub struct NewContact {
    pub workspace_id: WorkspaceId,
    /// Normalised email.
    pub email: String,
    /// Time of the event that created it.
    pub first_seen_at: i64,
}

/// Changes to one contact's row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactChange {
    pub workspace_id: WorkspaceId,
    /// Traits to merge in order; `null` removes a trait.
    pub traits_patch: Map<String, Value>,
    /// Traits to mark as computed by Engage.
    pub computed: Vec<String>,
    /// Earliest event time in the batch.
    pub first_seen_at: Option<i64>,
    /// Latest event time in the batch.
    pub last_seen_at: Option<i64>,
    /// Latest activity time in the batch.
    pub last_interaction_at: Option<i64>,
}

/// An id to link to a contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub workspace_id: WorkspaceId,
    /// The id.
    pub value: String,
    /// `user_id`, `anonymous_id` or `alias`.
    pub kind: &'static str,
    /// Its contact.
    pub contact: ContactRef,
}

/// The activity of one contact-day within the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct DayActivity {
    pub workspace_id: WorkspaceId,
    /// The earliest event time of the day seen in the batch.
    pub occurred_at: i64,
    /// That event's description.
    pub description: String,
    /// Events of the day in the batch.
    pub hits: i64,
}

impl DayActivity {
    /// A day seen through one event.
    pub fn first(workspace_id: WorkspaceId, time: i64, description: &str) -> DayActivity {
        DayActivity { workspace_id, occurred_at: time, description: description.to_owned(), hits: 1 }
    }

    /// Counts another event of the same contact-day.
    pub fn add(&mut self, time: i64, description: &str) {
        self.hits += 1;
        if first_event_of_day(time, description, self.occurred_at, &self.description) {
            self.occurred_at = time;
            self.description = description.to_owned();
        }
    }
}

/// The activity days of one contact's stored events in the zone `tz`, built at once: what
/// ingest builds batch by batch, for a reprojection. Events that add no activity are skipped.
pub fn activity_days<'a>(
    workspace_id: WorkspaceId,
    events: impl IntoIterator<Item = &'a Event>,
    tz: &TimeZone,
) -> BTreeMap<i32, DayActivity> {
    let mut days: BTreeMap<i32, DayActivity> = BTreeMap::new();
    for event in events {
        let Some(description) = &event.description else { continue };
        let time = event.time.as_millisecond();
        days.entry(kith_core::time::day_key(event.time, tz))
            .and_modify(|activity| activity.add(time, description))
            .or_insert_with(|| DayActivity::first(workspace_id, time, description));
    }
    days
}

/// An event row to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub workspace_id: WorkspaceId,
    /// The contact, or `None` while pending.
    pub contact: Option<ContactRef>,
    /// messageId.
    pub message_id: String,
    /// Segment call type.
    pub event_type: &'static str,
    /// Event/page/screen name, group id or alias previousId.
    pub name: Option<String>,
    /// userId.
    pub user_id: Option<String>,
    /// anonymousId.
    pub anonymous_id: Option<String>,
    /// Event time.
    pub occurred_at: i64,
    /// Receive time.
    pub received_at: i64,
    /// The event's JSON.
    pub payload: String,
}

/// Account changes from group calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountChange {
    /// Traits to merge.
    pub traits_patch: Map<String, Value>,
    /// Latest group call time.
    pub seen_at: i64,
}

/// A contact joining an account.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    pub workspace_id: WorkspaceId,
    /// The account's groupId.
    pub group_id: String,
    /// The member.
    pub contact: ContactRef,
    /// The group call's event time, in milliseconds since the Unix epoch.
    pub at: i64,
}

/// An Engage audience change for a contact.
#[derive(Debug, Clone, PartialEq)]
pub struct AudienceEvent {
    pub workspace_id: WorkspaceId,
    /// The change.
    pub change: AudienceChange,
    /// The contact.
    pub contact: ContactRef,
    /// Event time: a membership only moves forward in time.
    pub at: i64,
}

/// An alias whose two ids already belong to two different contacts: nothing is merged; the conflict
/// is recorded for a person to merge by hand.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasConflict {
    pub workspace_id: WorkspaceId,
    /// The alias's previousId.
    pub previous_id: String,
    /// The alias's userId.
    pub user_id: String,
    /// The contact of `user_id`.
    pub contact: ContactRef,
    /// The contact `previous_id` already belongs to (perhaps created by the same batch).
    pub other: ContactRef,
}

/// A rule triggered for a contact.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFiring {
    pub workspace_id: WorkspaceId,
    /// The rule.
    pub rule_id: i64,
    /// The contact.
    pub contact: ContactRef,
    /// What identifies this occurrence (a messageId, an audience change).
    pub occurrence: String,
    /// What occurred, for people.
    pub trigger: String,
    /// When it occurred.
    pub triggered_at: i64,
    /// When the rule acts: after its inaction delay.
    pub due_at: i64,
}

/// A contact entering a journey, if the journey's entry policy lets it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJourneyEntry {
    pub workspace_id: WorkspaceId,
    /// The journey.
    pub journey_id: i64,
    /// Who may enter, how often.
    pub policy: EntryPolicy,
    /// The id of the journey's first step.
    pub first_step: u32,
    /// The contact.
    pub contact: ContactRef,
    /// What identifies this occurrence (a messageId, an audience change).
    pub occurrence: String,
    /// What occurred, for people.
    pub trigger: String,
    /// The entry event's properties.
    pub properties: Map<String, Value>,
    /// When it occurred.
    pub at: i64,
}

/// A track call kith reports to the workspace's outbound Segment host.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundTrack {
    pub workspace_id: WorkspaceId,
    /// The contact.
    pub contact: ContactRef,
    /// The event name.
    pub event: String,
    /// Its properties.
    pub properties: Map<String, Value>,
    /// When it happened.
    pub at: i64,
}

/// An outcome waiting for the contact ids the write assigns.
#[derive(Debug, Clone, PartialEq)]
pub enum PlannedOutcome {
    /// Will be stored.
    Stored {
        /// The contact reached.
        contact: Option<ContactRef>,
        /// Its contact-day, if it is activity.
        day: Option<(ContactRef, i32)>,
        /// Whether it is the first event of that contact-day in the batch.
        first_of_day: bool,
    },
    /// Final already.
    Done(Outcome),
}

/// Everything one batch writes.
#[derive(Debug, Default)]
pub struct Plan {
    /// One per input event, in input order.
    pub outcomes: Vec<PlannedOutcome>,
    /// Contacts to create.
    pub new_contacts: Vec<NewContact>,
    /// Row changes per contact.
    pub contacts: BTreeMap<ContactRef, ContactChange>,
    /// Ids to link.
    pub links: Vec<Link>,
    /// Activity per contact-day.
    pub days: BTreeMap<(ContactRef, i32), DayActivity>,
    /// Event rows to insert.
    pub events: Vec<NewEvent>,
    /// Message digests to claim (every stored event, including deletions).
    pub claims: Vec<[u8; 16]>,
    /// Pending events (by row id) that now reach a contact.
    pub attached: Vec<(i64, ContactRef)>,
    /// Account changes by `(workspace, groupId)`.
    pub accounts: BTreeMap<(WorkspaceId, String), AccountChange>,
    /// Account memberships.
    pub memberships: Vec<Membership>,
    /// Audience changes.
    pub audiences: Vec<AudienceEvent>,
    /// Alias conflicts to record.
    pub conflicts: Vec<AliasConflict>,
    /// Contacts to erase, after everything else.
    pub deletions: Vec<(WorkspaceId, ContactRef)>,
    /// Rules triggered.
    pub firings: Vec<NewFiring>,
    /// Track calls for the outbound Segment host.
    pub outbound: Vec<OutboundTrack>,
    /// Journeys entered.
    pub journey_entries: Vec<NewJourneyEntry>,
    /// Contacts whose track events may move their journeys on, with the event's time: their
    /// active entries are due again from then.
    pub journey_wakes: Vec<(ContactRef, i64)>,
}

impl Plan {
    /// The final outcomes once the write has assigned ids to new contacts and reported which
    /// contact-days it created.
    pub fn resolve_outcomes(
        &self,
        contact_id: impl Fn(ContactRef) -> ContactId,
        day_created: impl Fn(&(ContactRef, i32)) -> bool,
    ) -> Vec<Outcome> {
        self.outcomes
            .iter()
            .map(|outcome| match outcome {
                PlannedOutcome::Done(outcome) => outcome.clone(),
                PlannedOutcome::Stored { contact, day, first_of_day } => Outcome::Stored(Stored {
                    contact_id: contact.map(&contact_id),
                    activity: match day {
                        None => Activity::None,
                        Some(day) if *first_of_day && day_created(day) => Activity::Added,
                        Some(_) => Activity::Merged,
                    },
                    pending: contact.is_none(),
                }),
            })
            .collect()
    }
}

/// An event stored as pending, read back to be attached.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    /// Row id.
    pub id: i64,
    pub workspace_id: WorkspaceId,
    /// Segment call type.
    pub event_type: String,
    /// Stored JSON.
    pub payload: String,
    /// Event time as recorded.
    pub occurred_at: i64,
    /// Receive time.
    pub received_at: i64,
}

/// Builds a [`Plan`]; see the module documentation for the order of calls.
pub struct Planner<'a> {
    rules: &'a HashMap<WorkspaceId, WorkspaceRules>,
    lookups: Lookups,
    plan: Plan,
    by_email: HashMap<(WorkspaceId, String), ContactRef>,
    by_identity: HashMap<(WorkspaceId, String), ContactRef>,
    claimed: HashSet<[u8; 16]>,
    new_links: Vec<(WorkspaceId, String)>,
    attached: HashSet<i64>,
}

/// The phase an event type is planned in.
/// Whether an event starts a trigger, and if so what identifies the occurrence (so replaying
/// it starts nothing twice) and how to tell it to people.
fn occurrence_of(when: &Trigger, event: &Event) -> Option<(String, String)> {
    if when.matches_event(event) {
        return Some((format!("event:{}", event.message_id), event.kind.name().unwrap_or_default().to_owned()));
    }
    let change = event
        .audience
        .as_ref()
        .filter(|change| when.matches_audience(&change.key, change.entered, event.time, event.received_at))?;
    let verb = if change.entered { "entered" } else { "exited" };
    let time = event.time.as_millisecond();
    Some((format!("audience:{}:{verb}:{time}", change.key), format!("{verb} audience {}", change.key)))
}

fn is_identity_call(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Identify { .. } | EventKind::Alias { .. })
}

impl<'a> Planner<'a> {
    /// A planner for a batch of `len` events.
    pub fn new(rules: &'a HashMap<WorkspaceId, WorkspaceRules>, lookups: Lookups, len: usize) -> Self {
        let by_email =
            lookups.contacts_by_email.iter().map(|(key, id)| (key.clone(), ContactRef::Existing(*id))).collect();
        let by_identity =
            lookups.contacts_by_identity.iter().map(|(key, id)| (key.clone(), ContactRef::Existing(*id))).collect();
        let plan = Plan { outcomes: vec![PlannedOutcome::Done(Outcome::Duplicate); len], ..Plan::default() };
        Planner {
            rules,
            lookups,
            plan,
            by_email,
            by_identity,
            claimed: HashSet::new(),
            new_links: Vec::new(),
            attached: HashSet::new(),
        }
    }

    /// Adds lookups made after the planner was created (for pending events).
    pub fn extend_lookups(&mut self, lookups: Lookups) {
        for (key, id) in &lookups.contacts_by_email {
            self.by_email.entry(key.clone()).or_insert(ContactRef::Existing(*id));
        }
        for (key, id) in &lookups.contacts_by_identity {
            self.by_identity.entry(key.clone()).or_insert(ContactRef::Existing(*id));
        }
        self.lookups.extend(lookups);
    }

    /// Step 2: identifies, then aliases. An alias whose userId an identify (or another alias)
    /// of the same batch links waits for that link: planned first, it would be held as pending,
    /// and the pending events attached after this step are only those stored by earlier batches.
    pub fn plan_identities(&mut self, batch: &[Incoming]) {
        let mut aliases = Vec::new();
        for (index, incoming) in batch.iter().enumerate() {
            match incoming.event.kind {
                EventKind::Identify { .. } => self.plan_new(index, incoming),
                EventKind::Alias { .. } => aliases.push(index),
                _ => {}
            }
        }
        loop {
            let waiting = aliases.len();
            aliases.retain(|&index| {
                let incoming = &batch[index];
                if self.resolve(incoming.workspace_id, &incoming.event).is_none() {
                    return true;
                }
                self.plan_new(index, incoming);
                false
            });
            if aliases.len() == waiting {
                break;
            }
        }
        for index in aliases {
            self.plan_new(index, &batch[index]);
        }
    }

    /// Step 4: everything else, deletions last (a user's events before their deletion go with
    /// them): callers cut batches with [`deletion_runs`] so that nothing follows a deletion.
    pub fn plan_activity(&mut self, batch: &[Incoming]) {
        for (index, incoming) in batch.iter().enumerate() {
            if !is_identity_call(&incoming.event.kind) && !matches!(incoming.event.kind, EventKind::Delete) {
                self.plan_new(index, incoming);
            }
        }
        for (index, incoming) in batch.iter().enumerate() {
            if matches!(incoming.event.kind, EventKind::Delete) {
                self.plan_new(index, incoming);
            }
        }
    }

    /// Ids linked since the last call, whose pending events should now be attached.
    pub fn take_new_links(&mut self) -> Vec<(WorkspaceId, String)> {
        std::mem::take(&mut self.new_links)
    }

    /// What reading `pending` needs looked up (alias previousIds, emails).
    pub fn pending_needs(&self, pending: &[PendingEvent]) -> Needs {
        let events: Vec<(WorkspaceId, Event)> =
            pending.iter().filter_map(|row| reparse(row).map(|event| (row.workspace_id, event))).collect();
        let mut needs = needs(events.iter().map(|(ws, event)| (*ws, event, None)));
        needs.emails.retain(|key| !self.by_email.contains_key(key));
        needs.identities.retain(|key| !self.by_identity.contains_key(key));
        needs
    }

    /// Step 3: attaches events that were pending for ids linked in this batch.
    pub fn attach_pending(&mut self, mut pending: Vec<PendingEvent>) {
        pending.sort_by_key(|row| (row.occurred_at, row.id));
        for row in pending {
            if self.attached.contains(&row.id) {
                continue;
            }
            let Some(event) = reparse(&row) else { continue };
            let workspace_id = row.workspace_id;
            let Some(contact) = self.resolve(workspace_id, &event) else { continue };
            self.attached.insert(row.id);
            self.plan.attached.push((row.id, contact));
            self.apply_to_contact(workspace_id, &event, contact, true);
        }
    }

    /// The finished plan.
    pub fn finish(self) -> Plan {
        self.plan
    }

    fn plan_new(&mut self, index: usize, incoming: &Incoming) {
        let workspace_id = incoming.workspace_id;
        let event = &incoming.event;
        if self.lookups.seen_messages.contains(&incoming.digest) || !self.claimed.insert(incoming.digest) {
            self.plan.outcomes[index] = PlannedOutcome::Done(Outcome::Duplicate);
            return;
        }
        let outcome = self.plan_event(workspace_id, event);
        if matches!(outcome, PlannedOutcome::Stored { .. }) {
            self.plan.claims.push(incoming.digest);
        } else {
            self.claimed.remove(&incoming.digest);
        }
        self.plan.outcomes[index] = outcome;
    }

    fn plan_event(&mut self, workspace_id: WorkspaceId, event: &Event) -> PlannedOutcome {
        let contact = match &event.kind {
            EventKind::Identify { .. } => match &event.email {
                Some(email) => {
                    if self.lookups.suppressed.contains(&(workspace_id, email.clone())) {
                        return PlannedOutcome::Done(Outcome::Suppressed);
                    }
                    let contact = self.contact_for_email(workspace_id, email, event);
                    for (id, kind) in [(&event.user_id, "user_id"), (&event.anonymous_id, "anonymous_id")] {
                        if let Some(id) = id {
                            self.link(workspace_id, id, kind, contact);
                        }
                    }
                    Some(contact)
                }
                None => match self.resolve(workspace_id, event) {
                    Some(contact) => Some(contact),
                    None => {
                        return PlannedOutcome::Done(Outcome::Rejected(Rejection::new(
                            Code::MissingEmail,
                            "traits.email",
                            "an identify needs an email in `traits.email`, `context.traits.email` or `email` \
                             unless its userId or anonymousId already belongs to a contact",
                        )))
                    }
                },
            },
            EventKind::Delete => {
                let contact = self.resolve(workspace_id, event);
                if let Some(contact) = contact {
                    self.plan.deletions.push((workspace_id, contact));
                }
                return PlannedOutcome::Stored { contact, day: None, first_of_day: false };
            }
            _ => {
                let contact = self.resolve(workspace_id, event);
                // An event nobody's id claims, naming a suppressed email, is that person's:
                // kept out like their identifies, not held as pending.
                let suppressed = event
                    .email
                    .as_ref()
                    .is_some_and(|email| self.lookups.suppressed.contains(&(workspace_id, email.clone())));
                if contact.is_none() && suppressed {
                    return PlannedOutcome::Done(Outcome::Suppressed);
                }
                contact
            }
        };
        let (day, first_of_day) = match contact {
            Some(contact) => self.apply_to_contact(workspace_id, event, contact, false),
            None => {
                if let EventKind::Group { group_id, traits } = &event.kind {
                    self.merge_account(workspace_id, group_id, traits, event.time.as_millisecond());
                }
                (None, false)
            }
        };
        self.plan.events.push(NewEvent {
            workspace_id,
            contact,
            message_id: event.message_id.clone(),
            event_type: event.kind.event_type().as_str(),
            name: event.kind.name().map(str::to_owned),
            user_id: event.user_id.clone(),
            anonymous_id: event.anonymous_id.clone(),
            occurred_at: event.time.as_millisecond(),
            received_at: event.received_at.as_millisecond(),
            payload: event.payload.clone(),
        });
        PlannedOutcome::Stored { contact, day, first_of_day }
    }

    /// What an event does to the contact it reached: traits, ids, account, audience, activity.
    /// A pending group call merged its account traits when it arrived; attaching it later only
    /// adds the membership.
    fn apply_to_contact(
        &mut self,
        workspace_id: WorkspaceId,
        event: &Event,
        contact: ContactRef,
        attaching: bool,
    ) -> (Option<(ContactRef, i32)>, bool) {
        let time = event.time.as_millisecond();
        match &event.kind {
            EventKind::Identify { traits, computed } => {
                let change = self.change(workspace_id, contact);
                for (key, value) in traits {
                    change.traits_patch.insert(key.clone(), value.clone());
                }
                change.computed.extend(computed.iter().cloned());
            }
            EventKind::Group { group_id, traits } => {
                let traits = if attaching { &Map::new() } else { traits };
                self.merge_account(workspace_id, group_id, traits, time);
                self.plan.memberships.push(Membership { workspace_id, group_id: group_id.clone(), contact, at: time });
            }
            EventKind::Alias { previous_id } => {
                let user_id = event.user_id.clone().unwrap_or_default();
                match self.by_identity.get(&(workspace_id, previous_id.clone())).copied() {
                    None => self.link(workspace_id, previous_id, "alias", contact),
                    Some(owner) if owner == contact => {}
                    // Recorded whether or not the two contacts arrived in the same batch: how
                    // events were batched must not change what they mean.
                    Some(other) => {
                        self.plan.conflicts.push(AliasConflict {
                            workspace_id,
                            previous_id: previous_id.clone(),
                            user_id,
                            contact,
                            other,
                        });
                    }
                }
            }
            _ => {}
        }
        if let Some(change) = &event.audience {
            self.plan.audiences.push(AudienceEvent { workspace_id, change: change.clone(), contact, at: time });
        }
        self.trigger_rules(workspace_id, event, contact);
        let change = self.change(workspace_id, contact);
        change.first_seen_at = Some(change.first_seen_at.map_or(time, |t| t.min(time)));
        change.last_seen_at = Some(change.last_seen_at.map_or(time, |t| t.max(time)));
        let Some(description) = &event.description else { return (None, false) };
        change.last_interaction_at = Some(change.last_interaction_at.map_or(time, |t| t.max(time)));
        let tz = self.rules.get(&workspace_id).map_or(TimeZone::UTC, |rules| rules.tz.clone());
        let day = kith_core::time::day_key(event.time, &tz);
        let key = (contact, day);
        let mut first_of_day = false;
        self.plan.days.entry(key).and_modify(|activity| activity.add(time, description)).or_insert_with(|| {
            first_of_day = true;
            DayActivity::first(workspace_id, time, description)
        });
        (Some(key), first_of_day)
    }

    /// Rules an event triggers for the contact it reached, and the audience change kith reports
    /// to an outbound Segment host.
    fn trigger_rules(&mut self, workspace_id: WorkspaceId, event: &Event, contact: ContactRef) {
        let Some(rules) = self.rules.get(&workspace_id).filter(|_| !event.from_kith) else { return };
        let time = event.time.as_millisecond();
        for (rule_id, rule) in &rules.rules {
            let Some((occurrence, trigger)) = occurrence_of(&rule.when, event) else { continue };
            self.plan.firings.push(NewFiring {
                workspace_id,
                rule_id: *rule_id,
                contact,
                occurrence,
                trigger,
                triggered_at: time,
                due_at: time + rule.delay().as_millis() as i64,
            });
        }
        for (journey_id, journey) in &rules.journeys {
            let Some((occurrence, trigger)) = occurrence_of(&journey.when, event) else { continue };
            let properties = if matches!(event.kind, EventKind::Track { .. }) {
                event_properties(&event.payload)
            } else {
                Map::new()
            };
            self.plan.journey_entries.push(NewJourneyEntry {
                workspace_id,
                journey_id: *journey_id,
                policy: journey.entry,
                first_step: journey.steps.first().map_or(0, |step| step.id),
                contact,
                occurrence,
                trigger,
                properties,
                at: time,
            });
        }
        if !rules.journeys.is_empty() && matches!(event.kind, EventKind::Track { .. }) {
            self.plan.journey_wakes.push((contact, time));
        }
        if let Some(change) = event.audience.as_ref().filter(|_| rules.outbound) {
            let mut properties = Map::new();
            properties.insert("audience_key".into(), Value::from(change.key.clone()));
            if let Some(id) = &change.computation_id {
                properties.insert("computation_id".into(), Value::from(id.clone()));
            }
            if let Some(space) = &change.space_id {
                properties.insert("space_id".into(), Value::from(space.clone()));
            }
            let event = if change.entered { "Audience Entered" } else { "Audience Exited" };
            self.plan.outbound.push(OutboundTrack {
                workspace_id,
                contact,
                event: event.to_owned(),
                properties,
                at: time,
            });
        }
    }

    fn change(&mut self, workspace_id: WorkspaceId, contact: ContactRef) -> &mut ContactChange {
        self.plan.contacts.entry(contact).or_insert_with(|| ContactChange { workspace_id, ..ContactChange::default() })
    }

    fn merge_account(&mut self, workspace_id: WorkspaceId, group_id: &str, traits: &Map<String, Value>, time: i64) {
        let account = self.plan.accounts.entry((workspace_id, group_id.to_owned())).or_default();
        for (key, value) in traits {
            account.traits_patch.insert(key.clone(), value.clone());
        }
        account.seen_at = account.seen_at.max(time);
    }

    fn contact_for_email(&mut self, workspace_id: WorkspaceId, email: &str, event: &Event) -> ContactRef {
        let key = (workspace_id, email.to_owned());
        if let Some(contact) = self.by_email.get(&key) {
            return *contact;
        }
        let contact = ContactRef::New(self.plan.new_contacts.len());
        self.plan.new_contacts.push(NewContact {
            workspace_id,
            email: email.to_owned(),
            first_seen_at: event.time.as_millisecond(),
        });
        self.by_email.insert(key, contact);
        contact
    }

    /// Links an id to a contact unless it already belongs to one (the first link wins).
    fn link(&mut self, workspace_id: WorkspaceId, id: &str, kind: &'static str, contact: ContactRef) {
        let key = (workspace_id, id.to_owned());
        if self.by_identity.contains_key(&key) {
            return;
        }
        self.by_identity.insert(key.clone(), contact);
        self.plan.links.push(Link { workspace_id, value: id.to_owned(), kind, contact });
        self.new_links.push(key);
    }

    /// The contact an event reaches: by userId, then anonymousId, then an existing email.
    fn resolve(&self, workspace_id: WorkspaceId, event: &Event) -> Option<ContactRef> {
        [&event.user_id, &event.anonymous_id]
            .into_iter()
            .flatten()
            .find_map(|id| self.by_identity.get(&(workspace_id, id.clone())).copied())
            .or_else(|| {
                let email = event.email.as_ref()?;
                self.by_email.get(&(workspace_id, email.clone())).copied()
            })
    }
}

/// Whether an event at `time` described `description` comes before the current first event
/// of its day. Equal times are broken by the smaller description, so that the result never
/// depends on which of two simultaneous events arrived first.
pub fn first_event_of_day(time: i64, description: &str, current_time: i64, current_description: &str) -> bool {
    (time, description) < (current_time, current_description)
}

/// For each event of `batch`, the refusal the planner gives it against `lookups`, what the
/// store holds of what the batch mentions ([`needs`]) in `workspaces`: an identify without
/// email whose ids belong to nobody. Read-only; rules and journeys play no part.
pub fn rejections(
    workspaces: &HashMap<WorkspaceId, crate::records::Workspace>,
    lookups: Lookups,
    batch: &[Incoming],
) -> Vec<Option<Rejection>> {
    let rules: HashMap<WorkspaceId, WorkspaceRules> = workspaces
        .iter()
        .map(|(id, workspace)| (*id, WorkspaceRules::new(workspace.tz(), Vec::new(), false)))
        .collect();
    let mut planner = Planner::new(&rules, lookups, batch.len());
    planner.plan_identities(batch);
    planner.plan_activity(batch);
    planner
        .finish()
        .outcomes
        .into_iter()
        .map(|outcome| match outcome {
            PlannedOutcome::Done(Outcome::Rejected(rejection)) => Some(rejection),
            _ => None,
        })
        .collect()
}

/// Whether an event is valid only for a user who already has a contact (an identify without
/// email), which depends on every event before it: the log decides it before answering.
pub fn needs_known_user(event: &Event) -> bool {
    matches!(event.kind, EventKind::Identify { .. }) && event.email.is_none()
}

/// The parts a batch is planned in, in order: each ends at a deletion or at the batch's end.
/// The planner plans a batch's deletion after all its other events, which is the deletion's
/// place in the stream only when no event follows it; planned in one part with what came
/// after, `delete u1` then `alias u1 → u2` would erase u2's contact.
pub fn deletion_runs(batch: &[Incoming]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for (index, incoming) in batch.iter().enumerate() {
        if matches!(incoming.event.kind, EventKind::Delete) {
            runs.push(start..index + 1);
            start = index + 1;
        }
    }
    if start < batch.len() || runs.is_empty() {
        runs.push(start..batch.len());
    }
    runs
}

/// Reads a stored pending event back into an [`Event`], keeping its recorded times.
/// Rebuilds a stored event from its payload, with its stored time.
pub fn reparse(row: &PendingEvent) -> Option<Event> {
    let received_at = kith_core::time::from_millis(row.received_at);
    let ctx = ParseContext { route_type: EventType::parse(&row.event_type), now: received_at, history: true };
    let raw: &RawValue = serde_json::from_str(&row.payload).ok()?;
    match parse_event(Item::alone(raw), &ctx) {
        Ok(Parsed::Event(mut event)) => {
            event.time = kith_core::time::from_millis(row.occurred_at);
            Some(*event)
        }
        _ => None,
    }
}

/// The events of event-log entries `(seq, entry)`, parsed again as they were when appended;
/// an entry that no longer parses is logged and skipped.
pub fn reparse_entries(rows: &[(i64, PendingEvent)]) -> Vec<(i64, Incoming)> {
    rows.iter()
        .filter_map(|(seq, row)| {
            let event = reparse(row);
            if event.is_none() {
                tracing::error!(seq, "an event in the log no longer parses; it is skipped");
            }
            event.map(|event| (*seq, Incoming::new(row.workspace_id, event)))
        })
        .collect()
}
