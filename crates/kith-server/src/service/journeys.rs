//! Journeys: what a journey must be before it is saved, saving it (step ids kept across
//! edits), pausing and resuming, and the backtests of journeys and rules. A backtest runs the
//! same `kith_core::journeys::advance` the live job runs, over the stored events of a past
//! window, and sends nothing.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use kith_core::backtest::{self, HealthChange, HealthDay};
use kith_core::closeness::{days_of_millis, InteractionKind};
use kith_core::health::Band;
use kith_core::journeys::{replay, History, JourneySpec, Seen, Status, StepKind};
use kith_core::rules::{Action, RuleSpec, Trigger};
use kith_core::time::from_millis;
use kith_store::{Account, ContactKey, Journey, JourneyCounts, JourneyEntry, StepCount, Workspace, WorkspaceId};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::outbound::Policy;
use crate::service::health;
use crate::AppState;

/// The window a backtest covers unless told otherwise.
pub const DEFAULT_BACKTEST_DAYS: i64 = 30;
/// The longest window a backtest may cover.
pub const MAX_BACKTEST_DAYS: i64 = 365;
/// The sends a backtest lists, the first in time; `sends_total` counts them all.
pub const MAX_SENDS_LISTED: usize = 1000;

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
    if let Some(previous) = previous {
        spec.check_new_ids(previous).map_err(|message| ApiError::bad_request("invalid_journey", "body", message))?;
    }
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
    /// The contact (absent for a rule about an account).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<i64>,
    /// Its email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The account's groupId, for a rule about accounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The journey step's id (journeys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// `message`, `webhook`, `segment`, `email`, `email_owner`, `note` or `cadence`.
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
    /// What would have been sent, in time order: the first [`MAX_SENDS_LISTED`].
    pub sends: Vec<WouldSend>,
    /// How many sends there were in all.
    pub sends_total: usize,
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
    /// What would have been sent, in time order: the first [`MAX_SENDS_LISTED`].
    pub sends: Vec<WouldSend>,
    /// How many sends there were in all.
    pub sends_total: usize,
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

/// What started entries of a trigger other than an event in the window, by contact, found
/// again in what the store keeps: the audience history, the interactions (closeness and due
/// dates follow from them) and the accounts' daily health record.
async fn starts(
    state: &AppState,
    workspace: &Workspace,
    when: &Trigger,
    since: Timestamp,
    until: Timestamp,
) -> ApiResult<BTreeMap<i64, Vec<Seen>>> {
    let mut starts: BTreeMap<i64, Vec<Seen>> = BTreeMap::new();
    let mut start = |contact: i64, name: String, time: Timestamp, properties: Map<String, Value>| {
        starts.entry(contact).or_default().push(Seen { name, time, properties });
    };
    match when {
        Trigger::Event { .. } => {}
        Trigger::AudienceEntered { audience } | Trigger::AudienceExited { audience } => {
            let entered = matches!(when, Trigger::AudienceEntered { .. });
            let verb = if entered { "entered" } else { "exited" };
            for change in state.store.audience_changes(workspace.id, audience, since, until).await? {
                if change.entered == entered {
                    start(change.contact_id, format!("{verb} audience {audience}"), change.at, Map::new());
                }
            }
        }
        Trigger::BecomesDue {} => {
            let interactions = interaction_times(state, workspace.id, until).await?;
            for cadence in state.store.cadences(workspace.id).await? {
                let times: Vec<i64> = interactions
                    .get(&cadence.contact_id)
                    .map(|times| times.iter().map(|(_, t)| t.as_millisecond()).collect())
                    .unwrap_or_default();
                let created = cadence.created_at.as_millisecond();
                let window = (since.as_millisecond(), until.as_millisecond());
                for due in backtest::due_dates(created, cadence.days, &times, window.0, window.1) {
                    start(cadence.contact_id, "became due".into(), from_millis(due), Map::new());
                }
            }
        }
        Trigger::BucketChanged { .. } => {
            let model = workspace.model();
            let (from_days, until_days) =
                (days_of_millis(since.as_millisecond()), days_of_millis(until.as_millisecond()));
            for (contact, interactions) in interaction_times(state, workspace.id, until).await? {
                let interactions: Vec<(InteractionKind, f64)> =
                    interactions.iter().map(|(kind, t)| (*kind, days_of_millis(t.as_millisecond()))).collect();
                for (t, from, to) in backtest::bucket_changes(&model, &interactions, until_days) {
                    if t >= from_days && when.matches_bucket(Some(from), to) {
                        let time = from_millis((t * 86_400_000.0).round() as i64);
                        start(contact, format!("became {}", to.as_str()), time, Map::new());
                    }
                }
            }
        }
        Trigger::HealthBandChanged { .. } | Trigger::HealthDropped { .. } => {
            for (account, members, changes) in health_changes(state, workspace, when, since, until).await? {
                let shown = account.name.as_deref().unwrap_or(&account.group_id);
                for change in changes {
                    let (before, now) = (change.before, change.now);
                    let properties = health::account_properties(&account, now.score, now.band, Some(before.band));
                    for &contact in &members {
                        start(contact, format!("{shown} {}", change.text), from_millis(now.at), properties.clone());
                    }
                }
            }
        }
    }
    Ok(starts)
}

/// Each contact's interactions that count (for closeness and the due timer) up to `until`.
async fn interaction_times(
    state: &AppState,
    workspace: WorkspaceId,
    until: Timestamp,
) -> ApiResult<BTreeMap<i64, Vec<(InteractionKind, Timestamp)>>> {
    let mut by_contact: BTreeMap<i64, Vec<(InteractionKind, Timestamp)>> = BTreeMap::new();
    for record in state.store.interaction_history(workspace, until).await? {
        if record.kind.counts() {
            by_contact.entry(record.contact_id).or_default().push((record.kind, record.occurred_at));
        }
    }
    Ok(by_contact)
}

/// The health changes `when` matches in the window, by account, with the account's members.
async fn health_changes(
    state: &AppState,
    workspace: &Workspace,
    when: &Trigger,
    since: Timestamp,
    until: Timestamp,
) -> ApiResult<Vec<(Account, Vec<i64>, Vec<HealthChange>)>> {
    let lookback = match when {
        Trigger::HealthDropped { within_days, .. } => i32::try_from(*within_days).unwrap_or(0),
        _ => 0,
    };
    let since_day = kith_core::time::day_key(since, &workspace.tz()) - lookback - 1;
    let mut records: BTreeMap<i64, Vec<HealthDay>> = BTreeMap::new();
    for record in state.store.health_records(workspace.id, since_day).await? {
        let Some(band) = Band::parse(&record.band) else { continue };
        let day = HealthDay { day: record.day, score: record.score, band, at: record.recorded_at.as_millisecond() };
        records.entry(record.account_id).or_default().push(day);
    }
    let mut members: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (account, contact) in state.store.account_memberships(workspace.id).await? {
        members.entry(account).or_default().push(contact);
    }
    let window = since.as_millisecond()..=until.as_millisecond();
    let mut out = Vec::new();
    // The daily pass records the first `ACCOUNTS_SCORED` accounts of this list.
    for account in state.store.accounts(workspace.id, health::ACCOUNTS_SCORED).await? {
        let Some(days) = records.get(&account.id) else { continue };
        let changes: Vec<HealthChange> =
            backtest::health_changes(when, days).into_iter().filter(|change| window.contains(&change.now.at)).collect();
        if !changes.is_empty() {
            let members = members.remove(&account.id).unwrap_or_default();
            out.push((account, members, changes));
        }
    }
    Ok(out)
}

/// Each contact's track events of the window and what started its entries, with its traits
/// and audiences now (what branches read), for the contacts the trigger reaches.
async fn histories(
    state: &AppState,
    workspace: &Workspace,
    when: &Trigger,
    since: Timestamp,
    until: Timestamp,
) -> ApiResult<BTreeMap<i64, (String, History)>> {
    let mut events: BTreeMap<i64, Vec<Seen>> = BTreeMap::new();
    for record in state.store.track_history(workspace.id, since, until).await? {
        events.entry(record.contact_id).or_default().push(Seen {
            name: record.name,
            time: record.time,
            properties: record.properties,
        });
    }
    let mut starts = starts(state, workspace, when, since, until).await?;
    let reached: Vec<i64> = match when {
        Trigger::Event { .. } => events
            .iter()
            .filter(|(_, events)| events.iter().any(|seen| when.matches_track(&seen.name, &seen.properties)))
            .map(|(contact, _)| *contact)
            .collect(),
        _ => starts.keys().copied().collect(),
    };
    let mut out = BTreeMap::new();
    for contact_id in reached {
        let Some(contact) = state.store.contact(workspace.id, ContactKey::Id(contact_id)).await? else { continue };
        let audiences = state
            .store
            .contact_audiences(workspace.id, contact_id)
            .await?
            .into_iter()
            .filter(|membership| membership.is_member)
            .map(|membership| membership.key)
            .collect();
        let mut starts = starts.remove(&contact_id).unwrap_or_default();
        starts.sort_by_key(|seen| seen.time);
        let history = History {
            events: events.remove(&contact_id).unwrap_or_default(),
            starts,
            traits: contact.traits,
            audiences,
        };
        out.insert(contact_id, (contact.email, history));
    }
    Ok(out)
}

async fn workspace_of(state: &AppState, workspace: WorkspaceId) -> ApiResult<Workspace> {
    state.store.workspace(workspace).await?.ok_or_else(|| ApiError::not_found(format!("no workspace {workspace}")))
}

/// Runs a journey (stored or a draft) over the last `days` days without sending anything.
pub async fn backtest(
    state: &AppState,
    workspace: WorkspaceId,
    spec: &JourneySpec,
    days: Option<i64>,
) -> ApiResult<JourneyBacktest> {
    let (since, until) = window(state, days)?;
    let workspace = workspace_of(state, workspace).await?;
    let found = histories(state, &workspace, &spec.when, since, until).await?;
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
                    contact_id: Some(entry.contact),
                    email: emails.get(&entry.contact).cloned(),
                    account: None,
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
    let (sends, sends_total) = listed(sends);
    Ok(JourneyBacktest { since, until, counts, sends, sends_total })
}

/// What each action of a rule would send, as a backtest lists it.
fn action_kind(action: &Action) -> (&'static str, Option<i64>) {
    match action {
        Action::Webhook { .. } => ("webhook", None),
        Action::Email { .. } => ("email", None),
        Action::Message { template } => ("message", Some(*template)),
        Action::Segment { .. } => ("segment", None),
        Action::EmailOwner { .. } => ("email_owner", None),
    }
}

/// Runs a rule over the last `days` days without sending anything: each start of its trigger
/// is a firing, cancelled if the unless event followed in time, still waiting if its delay
/// has not passed. A rule about accounts fires once per account change.
pub async fn backtest_rule(
    state: &AppState,
    workspace: WorkspaceId,
    spec: &RuleSpec,
    days: Option<i64>,
) -> ApiResult<RuleBacktest> {
    let (since, until) = window(state, days)?;
    let workspace = workspace_of(state, workspace).await?;
    let mut report = RuleBacktest {
        since,
        until,
        triggered: 0,
        fired: 0,
        cancelled: 0,
        waiting: 0,
        sends: Vec::new(),
        sends_total: 0,
    };
    if spec.when.is_about_accounts() {
        for (account, _, changes) in health_changes(state, &workspace, &spec.when, since, until).await? {
            for change in changes {
                report.triggered += 1;
                report.fired += 1;
                for action in &spec.then {
                    let (kind, template) = action_kind(action);
                    report.sends.push(WouldSend {
                        contact_id: None,
                        email: None,
                        account: Some(account.group_id.clone()),
                        step: None,
                        kind: kind.into(),
                        template,
                        at: from_millis(change.now.at),
                    });
                }
            }
        }
        (report.sends, report.sends_total) = listed(report.sends);
        return Ok(report);
    }
    for (contact_id, (email, history)) in histories(state, &workspace, &spec.when, since, until).await? {
        let starts: Vec<&Seen> = match spec.when {
            Trigger::Event { .. } => {
                history.events.iter().filter(|seen| spec.when.matches_track(&seen.name, &seen.properties)).collect()
            }
            _ => history.starts.iter().collect(),
        };
        for seen in starts {
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
                let (kind, template) = action_kind(action);
                report.sends.push(WouldSend {
                    contact_id: Some(contact_id),
                    email: Some(email.clone()),
                    account: None,
                    step: None,
                    kind: kind.into(),
                    template,
                    at: due,
                });
            }
        }
    }
    (report.sends, report.sends_total) = listed(report.sends);
    Ok(report)
}

/// The sends a backtest lists, in time order, and how many there were.
fn listed(mut sends: Vec<WouldSend>) -> (Vec<WouldSend>, usize) {
    sends.sort_by_key(|send| (send.at, send.contact_id));
    let total = sends.len();
    sends.truncate(MAX_SENDS_LISTED);
    (sends, total)
}
