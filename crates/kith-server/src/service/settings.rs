//! Workspace settings and API keys: what a settings change may hold, and the changes
//! themselves, whether the API or a settings form asks.

use kith_core::closeness::Weights;
use kith_store::{ApiKey, KeyKind, Store, StoreError, Workspace, WorkspacePatch};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::generate_key_in;
use crate::error::{ApiError, ApiResult};
use crate::outbound::Policy;
use crate::AppState;

/// Settings to change; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceChange {
    /// A display name, shown in the web app.
    pub name: Option<String>,
    /// IANA time zone, e.g. `Europe/Paris`.
    pub time_zone: Option<String>,
    /// Closeness half-life in days (1–3650); every closeness key is recomputed.
    pub half_life_days: Option<f64>,
    /// Interaction weights, e.g. `{"call": 4}`; unnamed kinds keep theirs.
    #[schema(value_type = Object)]
    pub weights: Option<Value>,
    /// Days an unknown user's events wait for an identify (1–365).
    pub pending_days: Option<i64>,
    /// Requires `X-Signature` on ingest; `""` or `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    pub signing_secret: Option<Option<String>>,
    /// While a signing secret is set, refuse JSON-array bodies: Segment signs only their first
    /// event, so events appended to a captured request would pass. For senders that can send
    /// one event per request (or a `{"batch": [...]}` object, which is signed whole).
    pub refuse_array_bodies: Option<bool>,
    /// A Segment-compatible host (e.g. `api.segment.io`) kith sends its own track calls to.
    #[serde(default, deserialize_with = "double_option")]
    pub segment_host: Option<Option<String>>,
    /// The write key for that host.
    #[serde(default, deserialize_with = "double_option")]
    pub segment_write_key: Option<Option<String>>,
    /// The daily digest's local time, "HH:MM"; `null` turns it off.
    #[serde(default, deserialize_with = "double_option")]
    pub digest_time: Option<Option<String>>,
    /// Where the digest is posted.
    #[serde(default, deserialize_with = "double_option")]
    pub digest_webhook_url: Option<Option<String>>,
    /// Who the digest is emailed to.
    #[serde(default, deserialize_with = "double_option")]
    pub digest_email: Option<Option<String>>,
}

/// A text setting that may be removed: trimmed, empty means removed.
fn optional_text(value: Option<Option<String>>) -> Option<Option<String>> {
    value.map(|value| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()))
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

fn double_option<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(deserializer)?))
}

/// Validates a settings change into a store patch.
fn patch_of(change: WorkspaceChange, current: Weights) -> ApiResult<WorkspacePatch> {
    let mut patch = WorkspacePatch::default();
    if let Some(name) = change.name {
        let name = name.trim().to_owned();
        if name.is_empty() || name.len() > 200 {
            return Err(ApiError::bad_request("invalid_name", "name", "a name has 1 to 200 characters"));
        }
        patch.name = Some(name);
    }
    if let Some(zone) = change.time_zone {
        let zone = zone.trim().to_owned();
        if kith_core::time::time_zone(&zone).is_none() {
            return Err(ApiError::bad_request(
                "invalid_time_zone",
                "time_zone",
                format!("{zone:?} is not an IANA time zone; use a name like Europe/Paris or America/New_York"),
            ));
        }
        patch.time_zone = Some(zone);
    }
    if let Some(days) = change.half_life_days {
        if !(1.0..=3650.0).contains(&days) {
            return Err(ApiError::bad_request(
                "invalid_half_life",
                "half_life_days",
                "the half-life is 1 to 3650 days",
            ));
        }
        patch.half_life_days = Some(days);
    }
    if let Some(weights) = change.weights {
        let mut merged = serde_json::to_value(current).unwrap_or(Value::Null);
        let (Some(target), Some(given)) = (merged.as_object_mut(), weights.as_object()) else {
            return Err(ApiError::bad_request("invalid_weights", "weights", "weights is an object like {\"call\": 3}"));
        };
        for (kind, value) in given {
            let valid = value.as_f64().is_some_and(|w| w > 0.0 && w <= 100.0);
            if !target.contains_key(kind) || !valid {
                return Err(ApiError::bad_request(
                    "invalid_weights",
                    "weights",
                    "weights name activity, note, email, call or meeting, each above 0 and at most 100",
                ));
            }
            target.insert(kind.clone(), value.clone());
        }
        patch.weights = serde_json::from_value(merged).ok();
    }
    if let Some(days) = change.pending_days {
        if !(1..=365).contains(&days) {
            return Err(ApiError::bad_request(
                "invalid_pending_days",
                "pending_days",
                "pending events are kept 1 to 365 days",
            ));
        }
        patch.pending_days = Some(days);
    }
    patch.signing_secret = optional_text(change.signing_secret);
    patch.refuse_array_bodies = change.refuse_array_bodies;
    patch.segment_host = optional_text(change.segment_host);
    patch.segment_write_key = optional_text(change.segment_write_key);
    patch.digest_time = optional_text(change.digest_time);
    if let Some(Some(time)) = &patch.digest_time {
        let valid = time.len() == 5 && time.parse::<jiff::civil::Time>().is_ok();
        if !valid {
            return Err(ApiError::bad_request(
                "invalid_digest_time",
                "digest_time",
                "the digest time is \"HH:MM\", e.g. \"09:00\"",
            ));
        }
    }
    patch.digest_webhook_url = optional_text(change.digest_webhook_url);
    if let Some(Some(url)) = &patch.digest_webhook_url {
        if !is_http_url(url) {
            return Err(ApiError::bad_request(
                "invalid_url",
                "digest_webhook_url",
                "the webhook url starts with http:// or https://",
            ));
        }
    }
    patch.digest_email = optional_text(change.digest_email)
        .map(|email| email.and_then(|e| kith_core::identity::normalize_email(&e).or(Some(e))));
    if let Some(Some(email)) = &patch.digest_email {
        if kith_core::identity::normalize_email(email).is_none() {
            return Err(ApiError::bad_request(
                "invalid_email",
                "digest_email",
                format!("{email:?} is not an email address"),
            ));
        }
    }
    Ok(patch)
}

/// Refuses outbound targets that are internal addresses written literally; names are
/// checked again, resolved, at every connection.
fn check_outbound(policy: &Policy, patch: &WorkspacePatch) -> ApiResult<()> {
    if let Some(Some(host)) = &patch.segment_host {
        policy
            .check_segment_host(host)
            .map_err(|refused| ApiError::bad_request("address_not_allowed", "segment_host", refused.0))?;
    }
    if let Some(Some(url)) = &patch.digest_webhook_url {
        policy
            .check_url(url)
            .map_err(|refused| ApiError::bad_request("address_not_allowed", "digest_webhook_url", refused.0))?;
    }
    Ok(())
}

/// Applies a settings change to `workspace` once it is valid and names no internal address;
/// keys and signing secrets are read again afterwards.
pub async fn update_workspace(
    state: &AppState,
    workspace: &Workspace,
    change: WorkspaceChange,
) -> ApiResult<Workspace> {
    let patch = patch_of(change, workspace.weights)?;
    check_outbound(state.outbound.policy(), &patch)?;
    let updated = state.store.update_workspace(workspace.id, patch).await?;
    state.auth.clear();
    Ok(updated)
}

/// Creates a key of `kind` named `name` (by default "write key" or "secret key"); returns it
/// with its full text, which exists nowhere else.
pub async fn create_key(
    state: &AppState,
    workspace: i64,
    kind: KeyKind,
    name: Option<String>,
) -> ApiResult<(ApiKey, String)> {
    let region = match state.store.workspace(workspace).await? {
        Some(found) => state.regions.of_workspace(&found),
        None => return Err(ApiError::not_found(format!("workspace {workspace} does not exist"))),
    };
    let text = generate_key_in(kind, region.as_deref());
    let name = name.unwrap_or_else(|| format!("{} key", kind.as_str()));
    let created = state.store.create_key(workspace, kind, &name, &text).await?;
    Ok((created, text))
}

/// A new workspace of `region` (the region of the node that creates it, if it has one) with a
/// write key and a secret key that carry that region; returns the workspace and the two key
/// texts, which exist nowhere else.
pub async fn create_workspace(
    store: &dyn Store,
    region: Option<&str>,
    name: &str,
) -> Result<(Workspace, String, String), StoreError> {
    let mut workspace = store.create_workspace(name).await?;
    if let Some(region) = region {
        let patch = WorkspacePatch { region: Some(region.to_owned()), ..WorkspacePatch::default() };
        workspace = store.update_workspace(workspace.id, patch).await?;
    }
    let write = generate_key_in(KeyKind::Write, region);
    let secret = generate_key_in(KeyKind::Secret, region);
    store.create_key(workspace.id, KeyKind::Write, "default write key", &write).await?;
    store.create_key(workspace.id, KeyKind::Secret, "default secret key", &secret).await?;
    Ok((workspace, write, secret))
}

/// Revokes a key so that it stops working at once; `false` if the workspace has no key `id`.
pub async fn revoke_key(state: &AppState, workspace: i64, id: i64) -> ApiResult<bool> {
    let revoked = state.store.revoke_key(workspace, id).await?;
    if revoked {
        state.auth.clear();
    }
    Ok(revoked)
}
