//! Account health: the workspace's health model and CSM ratings. Scores are in the account
//! views (`groups.rs`).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::Body;
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
