//! Account health: the workspace's model (stored, else kith-core's default), changing it, CSM
//! ratings, an account's score computed on read, and the record of every account's score of
//! the day that the daily pass keeps.
//!
//! The arithmetic is `kith_core::health`; this module only gathers what it needs: members'
//! closeness from the account row, the account's traits and rating, and the event counts of
//! the windows the model asks for.

use jiff::Timestamp;
use kith_core::closeness::{days_of_millis, score_of_raw};
use kith_core::health::{AccountFacts, AtRisk, Band, Counts, Health, HealthModel};
use kith_core::journeys::JourneySpec;
use kith_core::rules::{RuleSpec, Trigger};
use kith_store::deliveries::{for_account_firing, AccountFired};
use kith_store::journeys::JourneyStart;
use kith_store::{
    Account, HealthObservation, HealthRecord, NewAccountFiring, OwnerSubject, StoreError, User, Workspace, WorkspaceId,
};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Ratings a CSM gives, from worst to best.
pub const RATINGS: std::ops::RangeInclusive<i64> = 1..=5;
/// Accounts scored per workspace by the list and the daily pass (as many as the list shows).
pub const ACCOUNTS_SCORED: usize = 500;

/// The workspace's model: the one it stored, else the default. A stored model this version
/// cannot read (written by a newer kith) is logged and replaced by the default on read.
pub async fn model(state: &AppState, workspace: WorkspaceId) -> Result<HealthModel, StoreError> {
    let Some(text) = state.store.health_model(workspace).await? else { return Ok(HealthModel::default()) };
    match serde_json::from_str::<HealthModel>(&text) {
        Ok(model) => Ok(model),
        Err(error) => {
            tracing::warn!(%error, workspace, "the stored health model cannot be read; using the default");
            Ok(HealthModel::default())
        }
    }
}

/// Replaces the workspace's model with `value` once it reads and holds together; a 400 says
/// which field is wrong.
pub async fn set_model(state: &AppState, workspace: WorkspaceId, value: Value) -> ApiResult<HealthModel> {
    let model: HealthModel = serde_json::from_value(value).map_err(|error| {
        ApiError::bad_request(
            "invalid_health_model",
            "body",
            format!(
                "{error}; a model is {{\"factors\": [{{\"weight\": 2, \"factor\": {{\"closeness\": {{\"top\": 3}}}}}}, …], \
                 \"bands\": {{\"at_risk_below\": 40, \"healthy_from\": 70}}}} with factors closeness, active_members, \
                 trend, event_count, trait and csm_rating"
            ),
        )
    })?;
    model
        .validate()
        .map_err(|refused| ApiError::bad_request("invalid_health_model", &refused.field, refused.message))?;
    let text = serde_json::to_string(&model).map_err(ApiError::internal)?;
    state.store.set_health_model(workspace, &text).await?;
    Ok(model)
}

/// Sets (1–5) or clears (`None`) the CSM rating of the account `group_id`.
pub async fn set_rating(
    state: &AppState,
    workspace: WorkspaceId,
    group_id: &str,
    rating: Option<i64>,
) -> ApiResult<()> {
    if let Some(rating) = rating {
        if !RATINGS.contains(&rating) {
            return Err(ApiError::bad_request("invalid_rating", "rating", "a rating is 1 to 5, or null to clear it"));
        }
    }
    let account = state
        .store
        .account(workspace, group_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no account {group_id:?} in this workspace")))?;
    state.store.set_account_rating(workspace, account.id, rating).await?;
    Ok(())
}

/// The account's health at `now` under `model`.
pub async fn health(
    state: &AppState,
    workspace: &Workspace,
    model: &HealthModel,
    account: &Account,
    now: Timestamp,
) -> Result<Health, StoreError> {
    let closeness = workspace.model();
    let now_days = days_of_millis(now.as_millisecond());
    let member_scores = account.member_keys.iter().map(|key| score_of_raw(closeness.raw(*key, now_days))).collect();
    let rating = state.store.account_rating(workspace.id, account.id).await?;
    let mut counts = Vec::new();
    for window in model.windows(now.as_millisecond()) {
        let counted = state
            .store
            .member_event_counts(workspace.id, account.id, window.since_ms, window.until_ms, window.event.as_deref())
            .await?;
        counts.push(Counts { events: counted.events, members: counted.members });
    }
    let facts = AccountFacts { member_scores, traits: account.traits.clone(), rating };
    Ok(model.score(&facts, &counts))
}

/// The workspace's accounts (most members first) with their health at `now`, only those of
/// `band` when given.
pub async fn accounts(
    state: &AppState,
    workspace: &Workspace,
    band: Option<Band>,
    now: Timestamp,
) -> Result<Vec<(Account, Health)>, StoreError> {
    let model = model(state, workspace.id).await?;
    let mut scored = Vec::new();
    for account in state.store.accounts(workspace.id, ACCOUNTS_SCORED).await? {
        let health = health(state, workspace, &model, &account, now).await?;
        if band.is_none_or(|band| band == health.band) {
            scored.push((account, health));
        }
    }
    Ok(scored)
}

/// Records every account's health of today (in each workspace's time zone); a second run the
/// same day replaces that day's record. On the way, each account's score is compared with the
/// one the pass saw before, and the workspace's rules about a change of band or a fall fire.
/// Returns how many accounts were recorded.
pub async fn record_all(state: &AppState) -> Result<u64, StoreError> {
    let now = state.clock.now();
    let mut recorded = 0;
    for workspace in state.store.workspaces().await? {
        let day = kith_core::time::day_key(now, &workspace.tz());
        let alerts = Alerts::of(state, &workspace).await?;
        for (account, health) in accounts(state, &workspace, None, now).await? {
            alerts.observe(state, &account, &health, day, now).await?;
            let record = HealthRecord {
                account_id: account.id,
                day,
                score: i64::from(health.score),
                band: health.band.as_str().to_owned(),
                factors: serde_json::to_string(&health.factors).unwrap_or_default(),
                recorded_at: now,
            };
            state.store.record_health(workspace.id, record).await?;
            recorded += 1;
        }
    }
    Ok(recorded)
}

/// The workspace's accounts at risk at `now`, each with why: its band is at risk, or its score
/// fell by the model's `at_risk.drop_points` from one recorded within `at_risk.drop_days`.
pub async fn at_risk(
    state: &AppState,
    workspace: &Workspace,
    now: Timestamp,
) -> Result<Vec<(Account, Health, AtRisk)>, StoreError> {
    let model = model(state, workspace.id).await?;
    let today = kith_core::time::day_key(now, &workspace.tz());
    let days = model.at_risk.drop_days as usize + 1;
    let mut found = Vec::new();
    for account in state.store.accounts(workspace.id, ACCOUNTS_SCORED).await? {
        let health = health(state, workspace, &model, &account, now).await?;
        let recorded: Vec<(i32, i64)> = if health.band == Band::AtRisk {
            Vec::new()
        } else {
            let history = state.store.health_history(workspace.id, account.id, days).await?;
            history.iter().map(|record| (record.day, record.score)).collect()
        };
        if let Some(reason) = model.at_risk(&health, &recorded, today) {
            found.push((account, health, reason));
        }
    }
    Ok(found)
}

/// A workspace's rules and journeys about account health, and its users (owners are alerted
/// by email).
struct Alerts {
    workspace: WorkspaceId,
    rules: Vec<(i64, RuleSpec)>,
    /// Enabled journeys an account's health change starts: each member enters.
    journeys: Vec<(i64, JourneySpec)>,
    users: Vec<User>,
    /// The longest window of a rule or journey about a fall, in days: how much history to read.
    drop_days: Option<i64>,
}

impl Alerts {
    async fn of(state: &AppState, workspace: &Workspace) -> Result<Alerts, StoreError> {
        let rules: Vec<(i64, RuleSpec)> = state
            .store
            .rules(workspace.id)
            .await?
            .into_iter()
            .filter(|rule| rule.spec.enabled && rule.spec.when.is_about_accounts())
            .map(|rule| (rule.id, rule.spec))
            .collect();
        let journeys: Vec<(i64, JourneySpec)> = state
            .store
            .journeys(workspace.id)
            .await?
            .into_iter()
            .filter(|journey| journey.spec.enabled && journey.spec.when.is_about_accounts())
            .map(|journey| (journey.id, journey.spec))
            .collect();
        let drop_days = rules
            .iter()
            .map(|(_, rule)| &rule.when)
            .chain(journeys.iter().map(|(_, journey)| &journey.when))
            .filter_map(|when| match when {
                Trigger::HealthDropped { within_days, .. } => Some(*within_days),
                _ => None,
            })
            .max();
        let users = if rules.is_empty() { Vec::new() } else { state.store.users(workspace.id).await? };
        Ok(Alerts { workspace: workspace.id, rules, journeys, users, drop_days })
    }

    /// Records what the pass sees of an account, fires the rules its change starts and enters
    /// the account's members into the journeys it starts. The store hands the previous
    /// observation to one pass only, and a firing's or entry's occurrence is recorded once, so
    /// a change acts once however often the score is computed again.
    async fn observe(
        &self,
        state: &AppState,
        account: &Account,
        health: &Health,
        today: i32,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let observation = HealthObservation { score: i64::from(health.score), band: health.band.as_str().to_owned() };
        let previous = state.store.observe_health(self.workspace, account.id, observation.clone()).await?;
        // The first sight of an account is no change.
        let Some(previous) = previous else { return Ok(()) };
        if self.rules.is_empty() && self.journeys.is_empty() {
            return Ok(());
        }
        let recorded: Vec<(i32, i64)> = match self.drop_days {
            Some(days) => state
                .store
                .health_history(self.workspace, account.id, usize::try_from(days).unwrap_or(0) + 1)
                .await?
                .iter()
                .map(|record| (record.day, record.score))
                .collect(),
            None => Vec::new(),
        };
        let from_band = Band::parse(&previous.band);
        let change = |when: &Trigger| {
            let current = (health.band, observation.score);
            when.health_change((from_band, previous.score), current, &recorded, today, now.as_millisecond())
        };
        let starts: Vec<JourneyStart> = self
            .journeys
            .iter()
            .filter_map(|(id, journey)| {
                let (occurrence, trigger) = change(&journey.when)?;
                let shown = account.name.as_deref().unwrap_or(&account.group_id);
                let mut start =
                    JourneyStart::of(*id, journey, occurrence, format!("{shown} {trigger}"), now.as_millisecond());
                start.properties = account_properties(account, observation.score, health.band, from_band);
                Some(start)
            })
            .collect();
        if !starts.is_empty() {
            state.store.enter_account_members(self.workspace, account.id, starts).await?;
        }
        let fired: Vec<_> = self
            .rules
            .iter()
            .filter_map(|(rule_id, rule)| change(&rule.when).map(|occurrence| (*rule_id, rule, occurrence)))
            .collect();
        if fired.is_empty() {
            return Ok(());
        }
        let owner = state.store.owner(self.workspace, OwnerSubject::Account, account.id).await?;
        let owner_email =
            owner.and_then(|owner| self.users.iter().find(|user| user.id == owner)).map(|user| user.email.as_str());
        for (rule_id, rule, (occurrence, trigger)) in fired {
            let deliveries = for_account_firing(&AccountFired {
                rule_id,
                rule,
                account,
                score: observation.score,
                band: &observation.band,
                trigger: &trigger,
                owner_email,
                at: now,
            });
            let firing = NewAccountFiring { rule_id, account_id: account.id, occurrence, trigger };
            state.store.fire_for_account(self.workspace, firing, deliveries).await?;
        }
        Ok(())
    }
}

/// What a journey an account's health started reads as its entry event's properties: the
/// account and its health, so a step can branch on the band or a template name the account.
pub fn account_properties(account: &Account, score: i64, band: Band, from: Option<Band>) -> Map<String, Value> {
    let mut properties = Map::new();
    properties.insert("account".into(), Value::from(account.group_id.clone()));
    properties.insert("account_name".into(), Value::from(account.name.clone()));
    properties.insert("score".into(), Value::from(score));
    properties.insert("band".into(), Value::from(band.as_str()));
    if let Some(from) = from {
        properties.insert("from_band".into(), Value::from(from.as_str()));
    }
    properties
}
