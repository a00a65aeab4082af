//! Workspace settings and API keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kith_store::KeyKind;
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{KeyView, ReprojectionView, WorkspaceView};
use super::{workspace_of, Body};
use crate::auth::SecretKey;
use crate::error::{ApiError, ApiResult};
use crate::service::history;
use crate::service::settings::{self, WorkspaceChange};
use crate::AppState;

/// The workspace of the key.
#[utoipa::path(get, path = "/api/workspace", tag = "settings",
    responses((status = 200, body = WorkspaceView)), security(("secret_key" = [])))]
pub async fn workspace(State(state): State<AppState>, SecretKey(key): SecretKey) -> ApiResult<Json<WorkspaceView>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    Ok(Json(WorkspaceView::of(workspace, &state.regions)))
}

/// Changes workspace settings.
#[utoipa::path(patch, path = "/api/workspace", tag = "settings", request_body = WorkspaceChange,
    responses((status = 200, body = WorkspaceView), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn update_workspace(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Body(change): Body<WorkspaceChange>,
) -> ApiResult<Json<WorkspaceView>> {
    let current = workspace_of(&state, key.workspace_id).await?;
    let updated = settings::update_workspace(&state, &current, change).await?;
    Ok(Json(WorkspaceView::of(updated, &state.regions)))
}

/// The latest rebuild of the workspace's history from its stored events, and how far it has
/// come. A time zone change starts one by itself.
#[utoipa::path(get, path = "/api/workspace/reprojection", tag = "settings",
    responses((status = 200, body = ReprojectionView)), security(("secret_key" = [])))]
pub async fn reprojection(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
) -> ApiResult<Json<ReprojectionView>> {
    Ok(Json(ReprojectionView::of(state.store.reprojection(key.workspace_id).await?)))
}

/// Starts rebuilding the workspace's history from its stored events (one under way starts
/// over); it runs in the background, and `GET` shows its progress.
#[utoipa::path(post, path = "/api/workspace/reprojection", tag = "settings",
    responses((status = 202, body = ReprojectionView)), security(("secret_key" = [])))]
pub async fn reproject(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
) -> ApiResult<(StatusCode, Json<ReprojectionView>)> {
    let started = history::request(state.store.as_ref(), key.workspace_id).await?;
    Ok((StatusCode::ACCEPTED, Json(ReprojectionView::of(Some(started)))))
}

/// The workspace's keys (never their secret part).
#[utoipa::path(get, path = "/api/keys", tag = "settings",
    responses((status = 200, body = Vec<KeyView>)), security(("secret_key" = [])))]
pub async fn keys(State(state): State<AppState>, SecretKey(key): SecretKey) -> ApiResult<Json<Vec<KeyView>>> {
    let keys = state.store.keys(key.workspace_id).await?;
    Ok(Json(keys.into_iter().map(Into::into).collect()))
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewKey {
    /// `write` (ingest only) or `secret` (ingest and this API).
    pub kind: String,
    /// A label.
    pub name: Option<String>,
}

/// Creates a key; the answer is the only time its full text is shown.
#[utoipa::path(post, path = "/api/keys", tag = "settings", request_body = NewKey,
    responses((status = 201, body = KeyView), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Body(body): Body<NewKey>,
) -> ApiResult<(StatusCode, Json<KeyView>)> {
    let kind = KeyKind::parse(&body.kind)
        .ok_or_else(|| ApiError::bad_request("invalid_kind", "kind", "kind is `write` or `secret`"))?;
    let (created, text) = settings::create_key(&state, key.workspace_id, kind, body.name).await?;
    let mut view = KeyView::from(created);
    view.key = Some(text);
    Ok((StatusCode::CREATED, Json(view)))
}

/// Revokes a key; it stops working at once.
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "settings", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)), security(("secret_key" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    if !settings::revoke_key(&state, key.workspace_id, id).await? {
        return Err(ApiError::not_found(format!("no key {id} in this workspace")));
    }
    Ok(StatusCode::NO_CONTENT)
}
