//! Nudge rules: what a rule must be before it is saved.

use kith_core::rules::{Action, RuleSpec};

use crate::error::{ApiError, ApiResult};
use crate::outbound::Policy;

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
