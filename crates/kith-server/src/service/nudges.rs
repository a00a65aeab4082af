//! Nudge rules: what a rule must be before it is saved.

use kith_core::rules::{Action, RuleSpec};

use kith_store::WorkspaceId;

use crate::error::{ApiError, ApiResult};
use crate::outbound::Policy;
use crate::AppState;

/// Refuses a rule that does not hold together, or whose webhook is an internal address written
/// literally (names are checked when connecting): saving it would only fail every delivery, or
/// reach inside.
pub fn check_rule(policy: &Policy, spec: &RuleSpec) -> ApiResult<()> {
    spec.validate().map_err(|message| ApiError::bad_request("invalid_rule", "body", message))?;
    for action in &spec.then {
        if let Action::Webhook { url, .. } = action {
            policy.check_url(url).map_err(|refused| {
                ApiError::bad_request("address_not_allowed", "body", format!("webhook url {url:?}: {refused}"))
            })?;
        }
    }
    Ok(())
}

/// Refuses a rule whose message action names a template the workspace does not have: every
/// firing would fail.
pub async fn check_templates(state: &AppState, workspace: WorkspaceId, spec: &RuleSpec) -> ApiResult<()> {
    for action in &spec.then {
        if let Action::Message { template } = action {
            if state.store.template(workspace, *template).await?.is_none() {
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
