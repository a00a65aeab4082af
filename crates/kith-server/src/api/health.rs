//! Account health: the workspace's health model, CSM ratings and the accounts at risk. Scores
//! are in the account views (`groups.rs`).

use axum::extract::{Path, State};
use axum::Json;
use kith_core::health::AtRisk;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::views::AccountView;
use super::{workspace_of, Body};
use crate::auth::SecretKey;
use crate::error::{ApiError, ApiResult};
use crate::service::health;
use crate::AppState;

/// The workspace's health model (the default until one is set).
#[utoipa::path(get, path = "/api/health-model", tag = "accounts",
    responses((status = 200, body = Object)), security(("secret_key" = [])))]
pub async fn model(State(state): State<AppState>, SecretKey(key): SecretKey) -> ApiResult<Json<Value>> {
    let model = health::model(&state, key.workspace_id).await?;
    Ok(Json(serde_json::to_value(model).map_err(ApiError::internal)?))
}

/// Replaces the workspace's health model, e.g.
/// `{"factors": [{"weight": 2, "factor": {"closeness": {"top": 3}}}, {"weight": 1, "factor":
/// {"event_count": {"event": "Report Exported", "days": 30, "target": 5}}}], "bands":
/// {"at_risk_below": 40, "healthy_from": 70}}`.
#[utoipa::path(put, path = "/api/health-model", tag = "accounts", request_body = Object,
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn set_model(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Body(value): Body<Value>,
) -> ApiResult<Json<Value>> {
    let model = health::set_model(&state, key.workspace_id, value).await?;
    Ok(Json(serde_json::to_value(model).map_err(ApiError::internal)?))
}

/// A CSM rating.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rating {
    /// 1 (worst) to 5 (best); `null` clears it.
    pub rating: Option<i64>,
}

/// Sets or clears the CSM rating of an account (the `csm_rating` factor of the health model).
#[utoipa::path(put, path = "/api/accounts/{group_id}/rating", tag = "accounts", params(("group_id" = String, Path)),
    request_body = Rating,
    responses((status = 200, body = Rating), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn set_rating(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(group_id): Path<String>,
    Body(body): Body<Rating>,
) -> ApiResult<Json<Rating>> {
    health::set_rating(&state, key.workspace_id, &group_id, body.rating).await?;
    Ok(Json(body))
}

/// An account at risk and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct AtRiskAccount {
    /// The account, with its health.
    #[serde(flatten)]
    pub account: AccountView,
    /// `band` (its band is at risk) or `dropped` (its score fell from `dropped_from`).
    pub reason: String,
    /// The recorded score it fell from.
    pub dropped_from: Option<i64>,
    /// The day that score was recorded (`YYYY-MM-DD`).
    pub dropped_since: Option<String>,
}

/// Accounts at risk: in the at-risk band, or whose score fell by the model's
/// `at_risk.drop_points` (20) within `at_risk.drop_days` (7), least healthy first.
#[utoipa::path(get, path = "/api/accounts/at-risk", tag = "accounts",
    responses((status = 200, body = Vec<AtRiskAccount>)), security(("secret_key" = [])))]
pub async fn at_risk(State(state): State<AppState>, SecretKey(key): SecretKey) -> ApiResult<Json<Vec<AtRiskAccount>>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let now = state.clock.now();
    let model = workspace.model();
    let mut found = health::at_risk(&state, &workspace, now).await?;
    found.sort_by_key(|(_, health, _)| health.score);
    Ok(Json(
        found
            .into_iter()
            .map(|(account, health, reason)| {
                let (reason, dropped_from, dropped_since) = match reason {
                    AtRisk::Band => ("band", None, None),
                    AtRisk::Dropped { from, day } => {
                        ("dropped", Some(from), Some(kith_core::time::date_of_day_key(day).to_string()))
                    }
                };
                AtRiskAccount {
                    account: AccountView::with_health(account, health, &model, now),
                    reason: reason.to_owned(),
                    dropped_from,
                    dropped_since,
                }
            })
            .collect(),
    ))
}
