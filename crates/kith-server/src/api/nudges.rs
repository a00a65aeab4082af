//! `/api/rules` and `/api/deliveries`: nudge rules, their firings, and the outbox.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use kith_core::rules::RuleSpec;
use kith_store::{Delivery, Firing, Rule};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::Body;
use crate::auth::SecretKey;
use crate::error::{ApiError, ApiResult};
use crate::outbound::Policy;
use crate::service::nudges::{check_rule, check_templates};
use crate::AppState;

/// A rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    /// The rule's id, as in `/api/rules/{id}`.
    pub id: i64,
    /// The rule as written: `name`, `enabled`, `when`, `unless`, `then`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub spec: Value,
    /// When the rule was created (RFC 3339, UTC).
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
}

impl From<Rule> for RuleView {
    fn from(rule: Rule) -> Self {
        RuleView {
            id: rule.id,
            spec: serde_json::to_value(rule.spec).unwrap_or(Value::Null),
            created_at: rule.created_at.to_string(),
            updated_at: rule.updated_at.to_string(),
        }
    }
}

/// One firing.
#[derive(Debug, Serialize, ToSchema)]
pub struct FiringView {
    /// The firing's id.
    pub id: i64,
    /// The rule.
    pub rule_id: i64,
    /// The contact.
    pub contact_id: i64,
    /// What occurred.
    pub trigger: String,
    /// When the trigger occurred (RFC 3339, UTC).
    pub triggered_at: String,
    /// When the rule acts.
    pub due_at: String,
    /// `waiting`, `fired` or `cancelled`.
    pub state: String,
    /// When it fired or was cancelled.
    pub decided_at: Option<String>,
}

impl From<Firing> for FiringView {
    fn from(firing: Firing) -> Self {
        FiringView {
            id: firing.id,
            rule_id: firing.rule_id,
            contact_id: firing.contact_id,
            trigger: firing.trigger,
            triggered_at: firing.triggered_at.to_string(),
            due_at: firing.due_at.to_string(),
            state: firing.state,
            decided_at: firing.decided_at.map(|t| t.to_string()),
        }
    }
}

/// A firing of a rule about an account's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountFiringView {
    pub id: i64,
    pub rule_id: i64,
    /// The account's internal id.
    pub account_id: i64,
    /// What happened, e.g. `became at risk (was healthy)`.
    pub trigger: String,
    /// When (RFC 3339, UTC); its deliveries were queued then.
    pub triggered_at: String,
}

/// A rule with its latest firings.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleDetail {
    /// The rule.
    #[serde(flatten)]
    pub rule: RuleView,
    /// Latest firings about contacts, newest first.
    pub firings: Vec<FiringView>,
    /// Latest firings about accounts (rules on account health), newest first.
    pub account_firings: Vec<AccountFiringView>,
}

/// The rule in a request body, once it is one kith can run.
fn read_spec(policy: &Policy, value: Value) -> ApiResult<RuleSpec> {
    let spec: RuleSpec = serde_json::from_value(value).map_err(|error| {
        ApiError::bad_request(
            "invalid_rule",
            "body",
            format!("{error}; a rule is {{\"name\", \"when\", \"unless\"?, \"then\": [...]}} (see the README)"),
        )
    })?;
    check_rule(policy, &spec)?;
    Ok(spec)
}

/// The workspace's rules.
#[utoipa::path(get, path = "/api/rules", tag = "nudges",
    responses((status = 200, body = Vec<RuleView>)), security(("secret_key" = [])))]
pub async fn list(State(state): State<AppState>, SecretKey(key): SecretKey) -> ApiResult<Json<Vec<RuleView>>> {
    Ok(Json(state.store.rules(key.workspace_id).await?.into_iter().map(Into::into).collect()))
}

/// Creates a rule: *when* (an event with property conditions, entering or exiting an
/// audience, becoming due, changing bucket; or an account's health changing band or falling),
/// optionally *unless* another event follows within some hours, *then* webhooks, emails,
/// messages, Segment track calls, or an email to the account's owner.
#[utoipa::path(post, path = "/api/rules", tag = "nudges", request_body(content = Object, description = "A rule"),
    responses((status = 201, body = RuleView), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Body(body): Body<Value>,
) -> ApiResult<(StatusCode, Json<RuleView>)> {
    let spec = read_spec(state.outbound.policy(), body)?;
    check_templates(&state, key.workspace_id, &spec).await?;
    let rule = state.store.create_rule(key.workspace_id, spec).await?;
    Ok((StatusCode::CREATED, Json(rule.into())))
}

/// One rule and its latest firings.
#[utoipa::path(get, path = "/api/rules/{id}", tag = "nudges", params(("id" = i64, Path)),
    responses((status = 200, body = RuleDetail), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn show(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<RuleDetail>> {
    let rule =
        state.store.rule(key.workspace_id, id).await?.ok_or_else(|| ApiError::not_found(format!("no rule {id}")))?;
    let firings = state.store.firings(key.workspace_id, Some(id), None, 100).await?;
    let account_firings = state.store.account_firings(key.workspace_id, Some(id), None, 100).await?;
    Ok(Json(RuleDetail {
        rule: rule.into(),
        firings: firings.into_iter().map(Into::into).collect(),
        account_firings: account_firings
            .into_iter()
            .map(|firing| AccountFiringView {
                id: firing.id,
                rule_id: firing.rule_id,
                account_id: firing.account_id,
                trigger: firing.trigger,
                triggered_at: firing.triggered_at.to_string(),
            })
            .collect(),
    }))
}

/// Replaces a rule (e.g. to disable it with `"enabled": false`).
#[utoipa::path(put, path = "/api/rules/{id}", tag = "nudges", params(("id" = i64, Path)),
    request_body(content = Object, description = "A rule"),
    responses((status = 200, body = RuleView), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
    Body(body): Body<Value>,
) -> ApiResult<Json<RuleView>> {
    let spec = read_spec(state.outbound.policy(), body)?;
    check_templates(&state, key.workspace_id, &spec).await?;
    let rule = state
        .store
        .update_rule(key.workspace_id, id, spec)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no rule {id}")))?;
    Ok(Json(rule.into()))
}

/// Deletes a rule; its waiting firings are cancelled.
#[utoipa::path(delete, path = "/api/rules/{id}", tag = "nudges", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)), security(("secret_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    if state.store.delete_rule(key.workspace_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no rule {id}")))
    }
}

/// An outbound message.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The delivery's id, as in `/api/deliveries/{id}/retry`.
    pub id: i64,
    /// `webhook`, `email` or `segment`.
    pub kind: String,
    /// The url, recipient or Segment host.
    pub target: String,
    /// What is sent.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// `pending`, `sent`, `failed` or `skipped` (a message its contact's consent did not allow).
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// Next attempt, while pending.
    pub next_attempt_at: Option<String>,
    /// The last error.
    pub last_error: Option<String>,
    /// When the message was queued (RFC 3339, UTC).
    pub created_at: String,
    /// When the receiver took it; `None` until then.
    pub sent_at: Option<String>,
}

impl From<Delivery> for DeliveryView {
    fn from(delivery: Delivery) -> Self {
        DeliveryView {
            next_attempt_at: (delivery.status == "pending").then(|| delivery.next_attempt_at.to_string()),
            id: delivery.id,
            kind: delivery.kind,
            target: delivery.target,
            payload: delivery.payload,
            status: delivery.status,
            attempts: delivery.attempts,
            last_error: delivery.last_error,
            created_at: delivery.created_at.to_string(),
            sent_at: delivery.sent_at.map(|t| t.to_string()),
        }
    }
}

/// Delivery list parameters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeliveryParams {
    /// `pending`, `sent` or `failed`.
    pub status: Option<String>,
    /// Only deliveries with a smaller id (the last id of the previous page).
    pub before: Option<i64>,
    /// Page size (default 50).
    pub limit: Option<usize>,
}

/// Outbound deliveries, newest first.
#[utoipa::path(get, path = "/api/deliveries", tag = "nudges", params(DeliveryParams),
    responses((status = 200, body = Vec<DeliveryView>), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Query(params): Query<DeliveryParams>,
) -> ApiResult<Json<Vec<DeliveryView>>> {
    if let Some(status) = params.status.as_deref() {
        if !["pending", "sent", "failed", "skipped"].contains(&status) {
            return Err(ApiError::bad_request(
                "invalid_status",
                "status",
                "status is pending, sent, failed or skipped",
            ));
        }
    }
    let list = state
        .store
        .deliveries(key.workspace_id, params.status.as_deref(), params.before, params.limit.unwrap_or(50))
        .await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Puts a failed delivery back in the queue.
#[utoipa::path(post, path = "/api/deliveries/{id}/retry", tag = "nudges", params(("id" = i64, Path)),
    responses((status = 202), (status = 404, body = crate::error::ErrorBody)), security(("secret_key" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    if state.store.retry_delivery(key.workspace_id, id, state.clock.now()).await? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::not_found(format!("no failed delivery {id}")))
    }
}
