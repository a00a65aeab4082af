//! Journeys: what a journey must be before it is saved, saving it (step ids kept across
//! edits), pausing and resuming, and the backtests of journeys and rules. A backtest runs the
//! same `kith_core::journeys::advance` the live job runs, over the stored events of a past
//! window, and sends nothing.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use kith_core::journeys::{replay, History, JourneySpec, Seen, Status, StepKind};
use kith_core::rules::{Action, RuleSpec, Trigger};
use kith_store::{ContactKey, Journey, JourneyCounts, JourneyEntry, StepCount, WorkspaceId};
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::outbound::Policy;
use crate::AppState;

/// The window a backtest covers unless told otherwise.
pub const DEFAULT_BACKTEST_DAYS: i64 = 30;
/// The longest window a backtest may cover.
pub const MAX_BACKTEST_DAYS: i64 = 365;

/// Refuses a journey that does not hold together, or whose webhook is an internal address
/// written literally.
pub fn check_journey(policy: &Policy, spec: &JourneySpec) -> ApiResult<()> {
    spec.validate().map_err(|message| ApiError::bad_request("invalid_journey", "body", message))?;
    for step in &spec.steps {
        if let StepKind::Webhook { url, .. } = &step.kind {
            policy.check_url(url).map_err(|refused| {
                ApiError::bad_request("address_not_allowed", "body", format!("webhook url {url:?}: {refused}"))
            })?;
        }
    }
    Ok(())
}

/// Refuses a journey whose message step names a template the workspace does not have.
pub async fn check_templates(state: &AppState, workspace: WorkspaceId, spec: &JourneySpec) -> ApiResult<()> {
    for step in &spec.steps {
        if let StepKind::Message { template } = step.kind {
            if state.store.template(workspace, template).await?.is_none() {
                return Err(ApiError::bad_request(
                    "unknown_template",
                    "body",
                    format!("the workspace has no template {template}; see GET /api/templates"),
                ));
            }
        }
    }
    Ok(())
}

/// Gives the steps their ids and checks the journey, as a draft or before saving.
pub async fn prepare(
    state: &AppState,
    workspace: WorkspaceId,
    mut spec: JourneySpec,
    previous: Option<&JourneySpec>,
) -> ApiResult<JourneySpec> {
    spec.assign_ids(previous);
    check_journey(state.outbound.policy(), &spec)?;
    check_templates(state, workspace, &spec).await?;
    Ok(spec)
}

/// Creates a journey.
pub async fn create(state: &AppState, workspace: WorkspaceId, spec: JourneySpec) -> ApiResult<Journey> {
    let spec = prepare(state, workspace, spec, None).await?;
    Ok(state.store.create_journey(workspace, spec).await?)
}

/// Replaces a journey. Contacts mid-way keep their place: a step they passed is never taken
/// again (its record stays, keyed by the step's id), a contact waiting at a step that still
/// exists goes on from it under the new definition, and one waiting at a removed step leaves
/// the journey. New steps get ids never used before, so none inherits another's record.
pub async fn update(state: &AppState, workspace: WorkspaceId, id: i64, spec: JourneySpec) -> ApiResult<Journey> {
    let previous = find(state, workspace, id).await?;
    let spec = prepare(state, workspace, spec, Some(&previous.spec)).await?;
    state.store.update_journey(workspace, id, spec).await?.ok_or_else(|| missing(id))
}

/// Pauses (nobody enters, nobody moves; contacts wait where they are) or resumes a journey.
pub async fn set_enabled(state: &AppState, workspace: WorkspaceId, id: i64, enabled: bool) -> ApiResult<Journey> {
    let mut spec = find(state, workspace, id).await?.spec;
    spec.enabled = enabled;
    state.store.update_journey(workspace, id, spec).await?.ok_or_else(|| missing(id))
}

fn missing(id: i64) -> ApiError {
    ApiError::not_found(format!("no journey {id}"))
}

/// A journey of the workspace, else 404.
pub async fn find(state: &AppState, workspace: WorkspaceId, id: i64) -> ApiResult<Journey> {
    state.store.journey(workspace, id).await?.ok_or_else(|| missing(id))
}

/// A contact's entries, newest first, each with its journey's name.
pub async fn contact_journeys(
    state: &AppState,
    workspace: WorkspaceId,
    contact: i64,
) -> ApiResult<Vec<(String, JourneyEntry)>> {
    let names: BTreeMap<i64, String> =
        state.store.journeys(workspace).await?.into_iter().map(|journey| (journey.id, journey.spec.name)).collect();
    let entries = state.store.contact_journeys(workspace, contact).await?;
    Ok(entries.into_iter().map(|entry| (names.get(&entry.journey_id).cloned().unwrap_or_default(), entry)).collect())
}

/// Every step of a journey with its counts, in the journey's order (steps nobody reached
/// count zero).
pub fn step_counts(spec: &JourneySpec, counts: &JourneyCounts) -> Vec<StepCount> {
    spec.steps
        .iter()
        .map(|step| {
            counts.steps.iter().find(|count| count.step == step.id).copied().unwrap_or(StepCount {
                step: step.id,
                waiting: 0,
                done: 0,
            })
        })
        .collect()
}

/// A send a backtest found: what would have gone to whom.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WouldSend {
    /// The contact.
    pub contact_id: i64,
    /// Its email.
    pub email: String,
    /// The journey step's id (journeys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// `message`, `webhook`, `segment`, `email`, `note` or `cadence`.
    pub kind: String,
    /// The template's id, for a message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<i64>,
    /// When it would have been sent (the journey's logical time).
    pub at: Timestamp,
}

/// What a journey would have done over a past window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JourneyBacktest {
    /// The window.
    pub since: Timestamp,
    /// Its end: now.
    pub until: Timestamp,
    /// Entries by state at the end of the window, and every step's counts.
    pub counts: JourneyCounts,
    /// What would have been sent, in time order.
    pub sends: Vec<WouldSend>,
}

/// What a rule would have done over a past window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuleBacktest {
    /// The window.
    pub since: Timestamp,
    /// Its end: now.
    pub until: Timestamp,
    /// Times the rule was triggered.
    pub triggered: i64,
    /// Firings that would have acted.
    pub fired: i64,
    /// Firings the unless event cancelled.
    pub cancelled: i64,
    /// Firings still waiting for their delay at the end of the window.
    pub waiting: i64,
    /// What would have been sent, in time order.
    pub sends: Vec<WouldSend>,
}

/// The window of a backtest of `days` ending now.
fn window(state: &AppState, days: Option<i64>) -> ApiResult<(Timestamp, Timestamp)> {
    let days = days.unwrap_or(DEFAULT_BACKTEST_DAYS);
    if !(1..=MAX_BACKTEST_DAYS).contains(&days) {
        return Err(ApiError::bad_request("invalid_days", "days", format!("`days` is 1 to {MAX_BACKTEST_DAYS}")));
    }
    let until = state.clock.now();
    Ok((until - SignedDuration::from_hours(24 * days), until))
}

fn event_trigger_only(when: &Trigger) -> ApiResult<()> {
    match when {
        Trigger::Event { .. } => Ok(()),
        _ => Err(ApiError::bad_request(
            "backtest_unsupported",
            "when",
            "a backtest replays stored track events, so it needs an event trigger",
        )),
    }
}

/// Each contact's track events of the window, with its traits and audiences now (what
/// branches read), for the contacts `relevant` keeps.
async fn histories(
    state: &AppState,
    workspace: WorkspaceId,
    since: Timestamp,
    until: Timestamp,
    relevant: impl Fn(&[Seen]) -> bool,
) -> ApiResult<BTreeMap<i64, (String, History)>> {
    let mut events: BTreeMap<i64, Vec<Seen>> = BTreeMap::new();
    for record in state.store.track_history(workspace, since, until).await? {
        events.entry(record.contact_id).or_default().push(Seen {
            name: record.name,
            time: record.time,
            properties: record.properties,
        });
    }
    let mut out = BTreeMap::new();
    for (contact_id, events) in events.into_iter().filter(|(_, events)| relevant(events)) {
        let Some(contact) = state.store.contact(workspace, ContactKey::Id(contact_id)).await? else { continue };
        let audiences = state
            .store
            .contact_audiences(workspace, contact_id)
            .await?
            .into_iter()
            .filter(|membership| membership.is_member)
            .map(|membership| membership.key)
            .collect();
        out.insert(contact_id, (contact.email, History { events, traits: contact.traits, audiences }));
    }
    Ok(out)
}

/// Runs a journey (stored or a draft) over the stored events of the last `days` days
/// without sending anything.
pub async fn backtest(
    state: &AppState,
    workspace: WorkspaceId,
    spec: &JourneySpec,
    days: Option<i64>,
) -> ApiResult<JourneyBacktest> {
    event_trigger_only(&spec.when)?;
    let (since, until) = window(state, days)?;
    let found = histories(state, workspace, since, until, |events| {
        events.iter().any(|seen| spec.when.matches_track(&seen.name, &seen.properties))
    })
    .await?;
    let emails: BTreeMap<i64, String> = found.iter().map(|(id, (email, _))| (*id, email.clone())).collect();
    let histories: BTreeMap<i64, History> = found.into_iter().map(|(id, (_, history))| (id, history)).collect();
    let mut counts = JourneyCounts::default();
    let mut steps: BTreeMap<u32, StepCount> = BTreeMap::new();
    let mut sends = Vec::new();
    for entry in replay(spec, &histories, until) {
        counts.entered += 1;
        for moved in &entry.advance.moves {
            steps.entry(moved.step).or_insert(StepCount { step: moved.step, waiting: 0, done: 0 }).done += 1;
            if let Some(kind) = &moved.act {
                sends.push(WouldSend {
                    contact_id: entry.contact,
                    email: emails.get(&entry.contact).cloned().unwrap_or_default(),
                    step: Some(moved.step),
                    kind: kind.kind().to_owned(),
                    template: match kind {
                        StepKind::Message { template } => Some(*template),
                        _ => None,
                    },
                    at: moved.at,
                });
            }
        }
        match entry.advance.status {
            Status::Waiting { at, .. } => {
                counts.active += 1;
                steps.entry(at.step).or_insert(StepCount { step: at.step, waiting: 0, done: 0 }).waiting += 1;
            }
            Status::Completed { .. } => counts.completed += 1,
            Status::Exited { .. } => counts.exited += 1,
        }
    }
    counts.steps = steps.into_values().collect();
    sends.sort_by_key(|send| (send.at, send.contact_id));
    Ok(JourneyBacktest { since, until, counts, sends })
}

/// Runs a rule over the stored events of the last `days` days without sending anything: each
/// matching event is a firing, cancelled if the unless event followed in time, still waiting
/// if its delay has not passed.
pub async fn backtest_rule(
    state: &AppState,
    workspace: WorkspaceId,
    spec: &RuleSpec,
    days: Option<i64>,
) -> ApiResult<RuleBacktest> {
    event_trigger_only(&spec.when)?;
    let (since, until) = window(state, days)?;
    let found = histories(state, workspace, since, until, |events| {
        events.iter().any(|seen| spec.when.matches_track(&seen.name, &seen.properties))
    })
    .await?;
    let mut report = RuleBacktest { since, until, triggered: 0, fired: 0, cancelled: 0, waiting: 0, sends: Vec::new() };
    for (contact_id, (email, history)) in found {
        for seen in history.events.iter().filter(|seen| spec.when.matches_track(&seen.name, &seen.properties)) {
            report.triggered += 1;
            let due = seen.time + spec.delay();
            if due > until {
                report.waiting += 1;
                continue;
            }
            let names = history.events.iter().map(|event| (event.name.as_str(), event.time));
            if spec.unless.as_ref().is_some_and(|unless| unless.cancels(seen.time, names)) {
                report.cancelled += 1;
                continue;
            }
            report.fired += 1;
            for action in &spec.then {
                let (kind, template) = match action {
                    Action::Webhook { .. } => ("webhook", None),
                    Action::Email { .. } => ("email", None),
                    Action::Message { template } => ("message", Some(*template)),
                    Action::Segment { .. } => ("segment", None),
                    // Refused on the contact rules a backtest replays.
                    Action::EmailOwner { .. } => continue,
                };
                report.sends.push(WouldSend {
                    contact_id,
                    email: email.clone(),
                    step: None,
                    kind: kind.into(),
                    template,
                    at: due,
                });
            }
        }
    }
    report.sends.sort_by_key(|send| (send.at, send.contact_id));
    Ok(report)
}
