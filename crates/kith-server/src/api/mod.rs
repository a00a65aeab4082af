//! The read and admin API under `/api`, for secret keys: each handler reads the request, calls
//! the service layer (`service/`) and answers in JSON (the shapes are in `views.rs`, or beside
//! the handlers that alone use them).

pub mod contacts;
pub mod groups;
pub mod health;
pub mod journeys;
pub mod messages;
pub mod nudges;
pub mod owners;
pub mod settings;
pub mod validate;
pub mod views;

use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use kith_store::{Workspace, WorkspaceId};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The `/api` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/contacts", get(contacts::list))
        .route("/api/contacts/losing-touch", get(contacts::losing_touch))
        .route("/api/contacts/due", get(contacts::due))
        .route("/api/contacts/export.csv", get(contacts::export_csv))
        .route("/api/contacts/{id}", get(contacts::show).delete(contacts::delete))
        .route("/api/contacts/{id}/timeline", get(contacts::timeline))
        .route("/api/contacts/{id}/events", get(contacts::events))
        .route("/api/contacts/{id}/interactions", post(contacts::add_interaction))
        .route("/api/contacts/{id}/merge", post(contacts::merge))
        .route("/api/contacts/{id}/cadence", put(contacts::set_cadence))
        .route("/api/contacts/{id}/owner", put(owners::set_contact_owner))
        .route("/api/alias-conflicts", get(groups::alias_conflicts))
        .route("/api/accounts", get(groups::accounts))
        .route("/api/accounts/at-risk", get(health::at_risk))
        .route("/api/accounts/{group_id}", get(groups::account))
        .route("/api/accounts/{group_id}/rating", put(health::set_rating))
        .route("/api/accounts/{group_id}/owner", put(owners::set_account_owner))
        .route("/api/tasks", get(owners::tasks).post(owners::create_task))
        .route("/api/tasks/{id}", get(owners::task).put(owners::update_task).delete(owners::delete_task))
        .route("/api/tasks/{id}/complete", post(owners::complete_task))
        .route("/api/tasks/{id}/reopen", post(owners::reopen_task))
        .route("/api/today", get(owners::today))
        .route("/api/health-model", get(health::model).put(health::set_model))
        .route("/api/audiences", get(groups::audiences))
        .route("/api/audiences/{key}", get(groups::audience))
        .route("/api/cadence-rules", get(groups::cadence_rules).put(groups::set_cadence_rule))
        .route("/api/cadence-rules/{id}", delete(groups::delete_cadence_rule))
        .route("/api/workspace", get(settings::workspace).patch(settings::update_workspace))
        .route("/api/workspace/reprojection", get(settings::reprojection).post(settings::reproject))
        .route("/api/keys", get(settings::keys).post(settings::create_key))
        .route("/api/keys/{id}", delete(settings::revoke_key))
        .route("/api/validate", post(validate::validate))
        .route("/api/rules", get(nudges::list).post(nudges::create))
        .route("/api/rules/{id}", get(nudges::show).put(nudges::update).delete(nudges::delete))
        .route("/api/rules/{id}/backtest", post(journeys::backtest_rule))
        .route("/api/journeys", get(journeys::list).post(journeys::create))
        .route("/api/journeys/backtest", post(journeys::backtest_draft))
        .route("/api/journeys/{id}", get(journeys::show).put(journeys::update).delete(journeys::delete))
        .route("/api/journeys/{id}/pause", post(journeys::pause))
        .route("/api/journeys/{id}/resume", post(journeys::resume))
        .route("/api/journeys/{id}/backtest", post(journeys::backtest))
        .route("/api/journeys/{id}/steps/{step}/contacts", get(journeys::step_contacts))
        .route("/api/contacts/{id}/journeys", get(journeys::contact_journeys))
        .route("/api/deliveries", get(nudges::deliveries))
        .route("/api/deliveries/{id}/retry", post(nudges::retry))
        .route("/api/topics", get(messages::topics).post(messages::create_topic))
        .route("/api/topics/{id}", put(messages::update_topic).delete(messages::delete_topic))
        .route("/api/templates", get(messages::templates).post(messages::create_template))
        .route(
            "/api/templates/{id}",
            get(messages::template).put(messages::update_template).delete(messages::delete_template),
        )
        .route("/api/templates/{id}/preview", post(messages::preview))
        .route("/api/templates/{id}/stats", get(messages::template_stats))
        .route("/api/rules/{id}/stats", get(messages::rule_stats))
        .route("/api/workspace/sender", get(messages::sender).put(messages::set_sender))
        .route("/api/workspace/message-limits", get(messages::limits).put(messages::set_limits))
        .route("/api/contacts/{id}/messages", get(messages::contact_messages))
        .layer(axum::middleware::map_response(json_errors))
}

/// axum's own refusals — a path segment or a query string that does not parse, a wrong method —
/// come as plain text; the API answers every error in kith's JSON shape, so they are rewritten
/// here, in one place, with their status and text kept.
async fn json_errors(response: Response) -> Response {
    let plain = response.headers().get(CONTENT_TYPE).is_some_and(|value| value.as_bytes().starts_with(b"text/plain"));
    let status = response.status();
    if !(status.is_client_error() && plain) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        _ => "invalid_request",
    };
    ApiError::new(status, code, String::from_utf8_lossy(&text)).into_response()
}

/// The workspace of a key.
pub async fn workspace_of(state: &AppState, id: WorkspaceId) -> ApiResult<Workspace> {
    state.store.workspace(id).await?.ok_or_else(|| ApiError::not_found(format!("workspace {id}")))
}

/// A JSON request body; one that cannot be read is a 400 with what was wrong, in kith's error
/// shape rather than axum's plain text.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    _ => return Err(ApiError::bad_request("invalid_json", "body", rejection.body_text())),
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}
