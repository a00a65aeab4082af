//! `/api/journeys`: journeys, their steps' counts, the contacts at a step, pausing and
//! resuming, backtests of journeys and rules, and a contact's journeys.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use kith_core::journeys::JourneySpec;
use kith_core::rules::RuleSpec;
use kith_store::{Journey, JourneyEntry, StepCount};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::Body;
use crate::auth::SecretKey;
use crate::error::{ApiError, ApiResult};
use crate::service::contacts::find_contact;
use crate::service::journeys::{self, JourneyBacktest, RuleBacktest};
use crate::AppState;

/// A journey.
#[derive(Debug, Serialize, ToSchema)]
pub struct JourneyView {
    /// The journey's id, as in `/api/journeys/{id}`.
    pub id: i64,
    /// The journey as written: `name`, `enabled`, `when`, `entry`, `steps` (each with its
    /// `id`), `exit_when`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub spec: Value,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
}

impl From<Journey> for JourneyView {
    fn from(journey: Journey) -> Self {
        JourneyView {
            id: journey.id,
            spec: serde_json::to_value(journey.spec).unwrap_or(Value::Null),
            created_at: journey.created_at.to_string(),
            updated_at: journey.updated_at.to_string(),
        }
    }
}

/// A journey with its entries by state and each step's counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct JourneyDetail {
    /// The journey.
    #[serde(flatten)]
    pub journey: JourneyView,
    /// Entries ever.
    pub entered: i64,
    /// Still in it.
    pub active: i64,
    /// Passed the last step.
    pub completed: i64,
    /// Left early.
    pub exited: i64,
    /// Per step, in order: `{step, waiting, done}`.
    #[schema(value_type = Vec<Object>)]
    pub step_counts: Vec<StepCount>,
}

fn read_spec(value: Value) -> ApiResult<JourneySpec> {
    serde_json::from_value(value).map_err(|error| {
        ApiError::bad_request(
            "invalid_journey",
            "body",
            format!("{error}; a journey is {{\"name\", \"when\", \"entry\"?, \"steps\": [...], \"exit_when\"?: [...]}} (see the README)"),
        )
    })
}

/// The workspace's journeys.
#[utoipa::path(get, path = "/api/journeys", tag = "journeys",
    responses((status = 200, body = Vec<JourneyView>)), security(("secret_key" = [])))]
pub async fn list(State(state): State<AppState>, SecretKey(key): SecretKey) -> ApiResult<Json<Vec<JourneyView>>> {
    Ok(Json(state.store.journeys(key.workspace_id).await?.into_iter().map(Into::into).collect()))
}

/// Creates a journey: an entry trigger, an entry policy, steps top to bottom and exit
/// conditions. Steps without an `id` get the next free one (1, 2, 3… in a new journey).
#[utoipa::path(post, path = "/api/journeys", tag = "journeys", request_body(content = Object, description = "A journey"),
    responses((status = 201, body = JourneyView), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Body(body): Body<Value>,
) -> ApiResult<(StatusCode, Json<JourneyView>)> {
    let journey = journeys::create(&state, key.workspace_id, read_spec(body)?).await?;
    Ok((StatusCode::CREATED, Json(journey.into())))
}

/// One journey with its counts.
#[utoipa::path(get, path = "/api/journeys/{id}", tag = "journeys", params(("id" = i64, Path)),
    responses((status = 200, body = JourneyDetail), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn show(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<JourneyDetail>> {
    let journey = journeys::find(&state, key.workspace_id, id).await?;
    let counts = state.store.journey_counts(key.workspace_id, id).await?;
    Ok(Json(JourneyDetail {
        step_counts: journeys::step_counts(&journey.spec, &counts),
        journey: journey.into(),
        entered: counts.entered,
        active: counts.active,
        completed: counts.completed,
        exited: counts.exited,
    }))
}

/// Replaces a journey. Contacts mid-way keep their place and never take a step twice; one
/// waiting at a removed step leaves the journey. Without `enabled`, the journey stays paused
/// or running as it was.
#[utoipa::path(put, path = "/api/journeys/{id}", tag = "journeys", params(("id" = i64, Path)),
    request_body(content = Object, description = "A journey"),
    responses((status = 200, body = JourneyView), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
    Body(body): Body<Value>,
) -> ApiResult<Json<JourneyView>> {
    // Without `enabled`, a paused journey stays paused: pausing is its own action.
    let keeps_state = body.get("enabled").is_none();
    let mut spec = read_spec(body)?;
    if keeps_state {
        spec.enabled = journeys::find(&state, key.workspace_id, id).await?.spec.enabled;
    }
    Ok(Json(journeys::update(&state, key.workspace_id, id, spec).await?.into()))
}

/// Deletes a journey with its entries.
#[utoipa::path(delete, path = "/api/journeys/{id}", tag = "journeys", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)), security(("secret_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    if state.store.delete_journey(key.workspace_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no journey {id}")))
    }
}

/// Pauses a journey: nobody enters or moves; contacts wait where they are.
#[utoipa::path(post, path = "/api/journeys/{id}/pause", tag = "journeys", params(("id" = i64, Path)),
    responses((status = 200, body = JourneyView), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<JourneyView>> {
    Ok(Json(journeys::set_enabled(&state, key.workspace_id, id, false).await?.into()))
}

/// Resumes a journey: waiting contacts go on from where they are.
#[utoipa::path(post, path = "/api/journeys/{id}/resume", tag = "journeys", params(("id" = i64, Path)),
    responses((status = 200, body = JourneyView), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<JourneyView>> {
    Ok(Json(journeys::set_enabled(&state, key.workspace_id, id, true).await?.into()))
}

/// How many contacts to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LimitQuery {
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The contacts waiting at a step now, with the steps each passed.
#[utoipa::path(get, path = "/api/journeys/{id}/steps/{step}/contacts", tag = "journeys",
    params(("id" = i64, Path), ("step" = u32, Path), LimitQuery),
    responses((status = 200, body = Vec<Object>), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn step_contacts(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path((id, step)): Path<(i64, u32)>,
    Query(query): Query<LimitQuery>,
) -> ApiResult<Json<Vec<JourneyEntry>>> {
    let journey = journeys::find(&state, key.workspace_id, id).await?;
    if !journey.spec.steps.iter().any(|s| s.id == step) {
        return Err(ApiError::not_found(format!("journey {id} has no step {step}")));
    }
    let limit = query.limit.unwrap_or(100);
    Ok(Json(state.store.journey_step_entries(key.workspace_id, id, step, limit).await?))
}

/// A backtest's window.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestBody {
    /// Days back from now (default 30, at most 365).
    pub days: Option<i64>,
}

/// The days of an optional `{"days": n}` body.
fn window_days(body: &[u8]) -> ApiResult<Option<i64>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let body: BacktestBody = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request("invalid_json", "body", format!("{error}; the body is {{\"days\": n}}"))
    })?;
    Ok(body.days)
}

/// A draft journey to backtest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftBacktest {
    /// The journey, as for `POST /api/journeys`.
    #[schema(value_type = Object)]
    pub journey: Value,
    /// Days back from now (default 30, at most 365).
    pub days: Option<i64>,
}

/// Runs a stored journey over the stored events of a past window, sending nothing: how many
/// contacts would have entered, reached each step, completed or exited, and what would have
/// been sent to whom.
#[utoipa::path(post, path = "/api/journeys/{id}/backtest", tag = "journeys", params(("id" = i64, Path)),
    request_body(content = BacktestBody, description = "The window (optional)"),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn backtest(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
    body: Bytes,
) -> ApiResult<Json<JourneyBacktest>> {
    let journey = journeys::find(&state, key.workspace_id, id).await?;
    let days = window_days(&body)?;
    Ok(Json(journeys::backtest(&state, key.workspace_id, &journey.spec, days).await?))
}

/// Backtests a draft journey before it is saved.
#[utoipa::path(post, path = "/api/journeys/backtest", tag = "journeys",
    request_body(content = DraftBacktest, description = "The draft and the window"),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn backtest_draft(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Body(body): Body<DraftBacktest>,
) -> ApiResult<Json<JourneyBacktest>> {
    let spec = journeys::prepare(&state, key.workspace_id, read_spec(body.journey)?, None).await?;
    Ok(Json(journeys::backtest(&state, key.workspace_id, &spec, body.days).await?))
}

/// Runs a stored rule over the stored events of a past window, sending nothing.
#[utoipa::path(post, path = "/api/rules/{id}/backtest", tag = "nudges", params(("id" = i64, Path)),
    request_body(content = BacktestBody, description = "The window (optional)"),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn backtest_rule(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
    body: Bytes,
) -> ApiResult<Json<RuleBacktest>> {
    let rule: RuleSpec =
        state.store.rule(key.workspace_id, id).await?.ok_or_else(|| ApiError::not_found(format!("no rule {id}")))?.spec;
    let days = window_days(&body)?;
    Ok(Json(journeys::backtest_rule(&state, key.workspace_id, &rule, days).await?))
}

/// The journeys a contact is in or was in, newest first, each with the steps it passed and why.
#[utoipa::path(get, path = "/api/contacts/{id}/journeys", tag = "journeys", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Object>), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn contact_journeys(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<JourneyEntry>>> {
    let contact = find_contact(&state, key.workspace_id, &id).await?;
    Ok(Json(state.store.contact_journeys(key.workspace_id, contact.id).await?))
}
