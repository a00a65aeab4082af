//! Accounts, audiences, cadence rules and alias conflicts.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use kith_core::health::Band;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::owners::{owner_param, UserRef};
use super::views::*;
use super::{workspace_of, Body};
use crate::auth::SecretKey;
use crate::error::{ApiError, ApiResult};
use crate::service::contacts::check_cadence;
use crate::service::{encode_cursor, groups, health, owners};
use crate::AppState;
use kith_store::OwnerSubject;

/// How many members and events an account or audience page shows.
const MEMBERS_SHOWN: usize = 100;

/// How an account list is filtered and ordered.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct AccountListParams {
    /// Only accounts of this health band: `at_risk`, `needs_attention` or `healthy`.
    pub band: Option<String>,
    /// `members` (most members first, the default), `health` (healthiest first) or
    /// `health_asc` (least healthy first).
    pub sort: Option<String>,
    /// Only accounts of this owner: `me` (the user the `Kith-User` header names), `none`, or a
    /// user's email or id.
    pub owner: Option<String>,
}

/// Accounts with their health, most members first unless sorted by health.
#[utoipa::path(get, path = "/api/accounts", tag = "accounts", params(AccountListParams),
    responses((status = 200, body = Vec<AccountView>), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn accounts(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    headers: axum::http::HeaderMap,
    Query(params): Query<AccountListParams>,
) -> ApiResult<Json<Vec<AccountView>>> {
    let band = params
        .band
        .map(|name| {
            Band::parse(&name).ok_or_else(|| {
                ApiError::bad_request("invalid_band", "band", "band is at_risk, needs_attention or healthy")
            })
        })
        .transpose()?;
    let sort = params.sort.unwrap_or_else(|| "members".into());
    if !matches!(sort.as_str(), "members" | "health" | "health_asc") {
        return Err(ApiError::bad_request("invalid_sort", "sort", "sort is members, health or health_asc"));
    }
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let now = state.clock.now();
    let model = workspace.model();
    let mut scored = health::accounts(&state, &workspace, band, now).await?;
    if let Some(filter) = owner_param(&state, workspace.id, &headers, params.owner.as_deref()).await? {
        let owned = state.store.owners(workspace.id, OwnerSubject::Account).await?;
        let owner = |id: i64| owned.iter().find(|(account, _)| *account == id).map(|(_, user)| *user);
        scored.retain(|(account, _)| owners::keeps(filter, owner(account.id)));
    }
    // Stable sorts: accounts of equal health stay in member order.
    match sort.as_str() {
        "health" => scored.sort_by_key(|(_, health)| std::cmp::Reverse(health.score)),
        "health_asc" => scored.sort_by_key(|(_, health)| health.score),
        _ => {}
    }
    Ok(Json(
        scored.into_iter().map(|(account, health)| AccountView::with_health(account, health, &model, now)).collect(),
    ))
}

/// A member's latest activity.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberActivity {
    /// The member.
    pub contact_id: i64,
    /// Their email.
    pub email: String,
    /// Their latest interaction.
    pub interaction: InteractionView,
}

/// An account with its members and their recent activity.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDetail {
    /// The account.
    #[serde(flatten)]
    pub account: AccountView,
    /// Members, closest first.
    pub members: Vec<ContactView>,
    /// The members' latest interactions, newest first.
    pub recent_activity: Vec<MemberActivity>,
    /// The CSM's rating, 1 to 5, if set (`PUT /api/accounts/{group_id}/rating`).
    pub rating: Option<i64>,
    /// The health the daily pass recorded, newest day first (the last 90 days).
    pub health_history: Vec<HealthDay>,
    /// The user who owns the account (`PUT /api/accounts/{group_id}/owner`).
    pub owner: Option<UserRef>,
}

/// An account's recorded health of one day.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthDay {
    /// The day (`YYYY-MM-DD`, in the workspace's time zone).
    pub date: String,
    /// 0 to 100.
    pub score: i64,
    /// The band.
    pub band: String,
}

/// Days of recorded health an account shows.
const HISTORY_SHOWN: usize = 90;

/// One account.
#[utoipa::path(get, path = "/api/accounts/{group_id}", tag = "accounts", params(("group_id" = String, Path)),
    responses((status = 200, body = AccountDetail), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn account(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(group_id): Path<String>,
) -> ApiResult<Json<AccountDetail>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let now = state.clock.now();
    let model = workspace.model();
    let shown = groups::account(&state, workspace.id, &group_id, MEMBERS_SHOWN, MEMBERS_SHOWN)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no account {group_id:?} in this workspace")))?;
    let recent_activity = shown
        .recent
        .into_iter()
        .map(|(member, interaction)| MemberActivity {
            contact_id: member.id,
            email: member.email,
            interaction: interaction.into(),
        })
        .collect();
    let health_model = health::model(&state, workspace.id).await?;
    let scored = health::health(&state, &workspace, &health_model, &shown.account, now).await?;
    let rating = state.store.account_rating(workspace.id, shown.account.id).await?;
    let health_history = state
        .store
        .health_history(workspace.id, shown.account.id, HISTORY_SHOWN)
        .await?
        .into_iter()
        .map(|record| HealthDay {
            date: kith_core::time::date_of_day_key(record.day).to_string(),
            score: record.score,
            band: record.band,
        })
        .collect();
    let owner = owners::owner_of(&state, workspace.id, OwnerSubject::Account, shown.account.id).await?;
    Ok(Json(AccountDetail {
        owner: owner.map(Into::into),
        rating,
        health_history,
        account: AccountView::with_health(shown.account, scored, &model, now),
        members: shown.members.into_iter().map(|c| ContactView::new(c, &model, now)).collect(),
        recent_activity,
    }))
}

/// An audience with counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AudienceView {
    /// The Engage `computation_key`.
    pub key: String,
    /// Engage computation id.
    pub computation_id: Option<String>,
    /// Engage space id.
    pub space_id: Option<String>,
    /// Members now.
    pub member_count: i64,
    /// Entries recorded.
    pub entered_count: i64,
    /// Exits recorded.
    pub exited_count: i64,
    /// First seen.
    pub created_at: String,
}

impl From<kith_store::Audience> for AudienceView {
    fn from(audience: kith_store::Audience) -> Self {
        AudienceView {
            key: audience.key,
            computation_id: audience.computation_id,
            space_id: audience.space_id,
            member_count: audience.member_count,
            entered_count: audience.entered_count,
            exited_count: audience.exited_count,
            created_at: audience.created_at.to_string(),
        }
    }
}

/// Lists the workspace's Engage audiences with their member, entry and exit counts.
#[utoipa::path(get, path = "/api/audiences", tag = "audiences",
    responses((status = 200, body = Vec<AudienceView>)), security(("secret_key" = [])))]
pub async fn audiences(State(state): State<AppState>, SecretKey(key): SecretKey) -> ApiResult<Json<Vec<AudienceView>>> {
    let audiences = state.store.audiences(key.workspace_id).await?;
    Ok(Json(audiences.into_iter().map(Into::into).collect()))
}

/// An entry or exit.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryView {
    /// The contact.
    pub contact_id: i64,
    /// Entered (true) or exited.
    pub entered: bool,
    /// When the contact entered or exited (RFC 3339, UTC).
    pub at: String,
}

/// An audience with members and history.
#[derive(Debug, Serialize, ToSchema)]
pub struct AudienceDetail {
    /// The audience.
    #[serde(flatten)]
    pub audience: AudienceView,
    /// Current members, closest first (first page).
    pub members: Vec<ContactView>,
    /// Pass to `/api/contacts?audience=…&sort=closeness&cursor=…` for more members.
    pub next_cursor: Option<String>,
    /// Entries and exits, newest first.
    pub history: Vec<HistoryView>,
}

/// One audience.
#[utoipa::path(get, path = "/api/audiences/{key}", tag = "audiences", params(("key" = String, Path)),
    responses((status = 200, body = AudienceDetail), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn audience(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(audience_key): Path<String>,
) -> ApiResult<Json<AudienceDetail>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let now = state.clock.now();
    let model = workspace.model();
    let shown = groups::audience(&state, workspace.id, &audience_key, None, MEMBERS_SHOWN, MEMBERS_SHOWN)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no audience {audience_key:?} in this workspace")))?;
    Ok(Json(AudienceDetail {
        audience: shown.audience.into(),
        members: shown.members.items.into_iter().map(|c| ContactView::new(c, &model, now)).collect(),
        next_cursor: encode_cursor(shown.members.next),
        history: shown
            .history
            .into_iter()
            .map(|h| HistoryView { contact_id: h.contact_id, entered: h.entered, at: h.at.to_string() })
            .collect(),
    }))
}

/// A cadence rule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CadenceRuleView {
    /// Id (ignored when setting).
    #[serde(default)]
    pub id: i64,
    /// `audience` or `account`.
    pub target: String,
    /// The audience key or account groupId.
    pub key: String,
    /// Every N days.
    pub days: i64,
}

impl From<kith_store::CadenceRule> for CadenceRuleView {
    fn from(rule: kith_store::CadenceRule) -> Self {
        CadenceRuleView { id: rule.id, target: rule.target, key: rule.target_key, days: rule.days }
    }
}

/// Cadence rules.
#[utoipa::path(get, path = "/api/cadence-rules", tag = "contacts",
    responses((status = 200, body = Vec<CadenceRuleView>)), security(("secret_key" = [])))]
pub async fn cadence_rules(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
) -> ApiResult<Json<Vec<CadenceRuleView>>> {
    let rules = state.store.cadence_rules(key.workspace_id).await?;
    Ok(Json(rules.into_iter().map(Into::into).collect()))
}

/// Gives every member of an audience or account a cadence (their own cadence still wins).
#[utoipa::path(put, path = "/api/cadence-rules", tag = "contacts", request_body = CadenceRuleView,
    responses((status = 200, body = CadenceRuleView), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn set_cadence_rule(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Body(rule): Body<CadenceRuleView>,
) -> ApiResult<Json<CadenceRuleView>> {
    if rule.target != "audience" && rule.target != "account" {
        return Err(ApiError::bad_request("invalid_target", "target", "target is `audience` or `account`"));
    }
    if rule.key.trim().is_empty() {
        return Err(ApiError::bad_request("invalid_key", "key", "name the audience key or account groupId"));
    }
    let days = check_cadence(Some(rule.days))?.unwrap_or(1);
    let saved = state.store.set_cadence_rule(key.workspace_id, &rule.target, rule.key.trim(), days).await?;
    Ok(Json(saved.into()))
}

/// Deletes a cadence rule.
#[utoipa::path(delete, path = "/api/cadence-rules/{id}", tag = "contacts", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)), security(("secret_key" = [])))]
pub async fn delete_cadence_rule(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    if state.store.delete_cadence_rule(key.workspace_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no cadence rule {id}")))
    }
}

/// An alias conflict.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictView {
    /// The conflict's id.
    pub id: i64,
    /// The alias's previousId.
    pub previous_id: String,
    /// The alias's userId.
    pub user_id: String,
    /// The contact of the userId.
    pub contact_id: i64,
    /// The contact the previousId already belongs to; merge it with `POST /api/contacts/{contact_id}/merge`.
    pub other_contact_id: i64,
    /// When the conflicting alias arrived (RFC 3339, UTC).
    pub created_at: String,
    /// When a merge resolved it.
    pub resolved_at: Option<String>,
}

/// Alias conflicts: aliases whose two ids belong to two different contacts, unresolved first.
#[utoipa::path(get, path = "/api/alias-conflicts", tag = "contacts",
    responses((status = 200, body = Vec<ConflictView>)), security(("secret_key" = [])))]
pub async fn alias_conflicts(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
) -> ApiResult<Json<Vec<ConflictView>>> {
    let conflicts = state.store.alias_conflicts(key.workspace_id).await?;
    Ok(Json(
        conflicts
            .into_iter()
            .map(|c| ConflictView {
                id: c.id,
                previous_id: c.previous_id,
                user_id: c.user_id,
                contact_id: c.contact_id,
                other_contact_id: c.other_contact_id,
                created_at: c.created_at.to_string(),
                resolved_at: c.resolved_at.map(|t| t.to_string()),
            })
            .collect(),
    ))
}
