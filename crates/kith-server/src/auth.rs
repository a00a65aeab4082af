//! API keys: where a request carries one, checking it against the store, and the extractor
//! that guards the read API.
//!
//! Keys are looked up by their SHA-256 hash, so comparing the hash of what was sent with what
//! is stored never compares secrets byte by byte. Lookups are cached for a second to keep the
//! ingest path off the database; revoking through this node clears the cache at once, and
//! another node sharing the database stops accepting the key within that second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use base64::Engine;
use kith_core::Code;
use kith_store::{key_hash, ApiKey, KeyKind, Store, WorkspaceId};
use rand::Rng;

use crate::error::ApiError;
use crate::AppState;

const CACHE_TTL: Duration = Duration::from_secs(1);

/// A lookup result and when it was made.
type Cached<T> = (Option<T>, Instant);

/// Cached key lookups and signing secrets.
#[derive(Default)]
pub struct AuthCache {
    keys: Mutex<HashMap<[u8; 32], Cached<ApiKey>>>,
    secrets: Mutex<HashMap<WorkspaceId, Cached<Signing>>>,
}

/// A workspace's signing requirement.
#[derive(Debug, Clone)]
pub struct Signing {
    /// The shared secret `X-Signature` is computed with.
    pub secret: String,
    /// Whether JSON-array bodies are refused (Segment signs only their first event).
    pub refuse_array_bodies: bool,
}

impl AuthCache {
    /// The live (unrevoked) key with this text, if any.
    pub async fn key(&self, store: &dyn Store, key: &str) -> Result<Option<ApiKey>, ApiError> {
        let hash = key_hash(key);
        if let Some((found, at)) = lock(&self.keys).get(&hash) {
            if at.elapsed() < CACHE_TTL {
                return Ok(found.clone());
            }
        }
        let found = store.find_key(hash).await?.filter(|key| key.revoked_at.is_none());
        let mut keys = lock(&self.keys);
        if keys.len() > 10_000 {
            keys.clear();
        }
        keys.insert(hash, (found.clone(), Instant::now()));
        Ok(found)
    }

    /// The workspace's signing requirement, if a secret is set.
    pub async fn signing(&self, store: &dyn Store, workspace: WorkspaceId) -> Result<Option<Signing>, ApiError> {
        if let Some((signing, at)) = lock(&self.secrets).get(&workspace) {
            if at.elapsed() < CACHE_TTL {
                return Ok(signing.clone());
            }
        }
        let signing = match store.signing_secret(workspace).await? {
            None => None,
            Some(secret) => {
                let refuse_array_bodies =
                    store.workspace(workspace).await?.is_some_and(|workspace| workspace.refuse_array_bodies);
                Some(Signing { secret, refuse_array_bodies })
            }
        };
        lock(&self.secrets).insert(workspace, (signing.clone(), Instant::now()));
        Ok(signing)
    }

    /// Forgets everything, after a key is revoked or a secret changes on this node.
    pub fn clear(&self) {
        lock(&self.keys).clear();
        lock(&self.secrets).clear();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The key in an `Authorization` header: `Basic base64(key:)` (password ignored) or `Bearer key`.
pub fn key_from_headers(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let key = decoded.split_once(':').map_or(decoded.as_str(), |(user, _)| user);
        (!key.is_empty()).then(|| key.to_owned())
    } else if scheme.eq_ignore_ascii_case("bearer") {
        (!rest.is_empty()).then(|| rest.to_owned())
    } else {
        None
    }
}

/// Generates a new key of `kind` that names no region (a node without one).
pub fn generate_key(kind: KeyKind) -> String {
    generate_key_in(kind, None)
}

/// Generates a new key of `kind` for a workspace of `region`: its prefix, the region and `_`
/// if there is one (so every node can tell where it belongs, see `region.rs`), and 32 random
/// alphanumerics (190 bits).
pub fn generate_key_in(kind: KeyKind, region: Option<&str>) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let random: String = (0..32).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    match region {
        Some(region) => format!("{}{region}_{random}", kind.prefix()),
        None => format!("{}{random}", kind.prefix()),
    }
}

/// A request authenticated with a secret key: the read and admin API.
pub struct SecretKey(pub ApiKey);

impl FromRequestParts<AppState> for SecretKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let text = key_from_headers(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "send a secret key as `Authorization: Bearer kith_sk_…` (or Basic with the key as user)",
            )
        })?;
        // Another region's key is refused on its text alone: this node has no record of it.
        state.regions.check_key(&text).inspect_err(|_| state.metrics.request_refused(crate::region::WRONG_REGION))?;
        let key = state
            .auth
            .key(state.store.as_ref(), &text)
            .await?
            .ok_or_else(|| ApiError::unauthorized("this key is unknown or revoked"))?;
        if key.kind != KeyKind::Secret {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                Code::Forbidden.as_str(),
                "a write key can only send events; use a secret key (kith_sk_…) for the read API",
            ));
        }
        Ok(SecretKey(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn keys_come_from_basic_or_bearer() {
        let basic = base64::engine::general_purpose::STANDARD.encode("kith_wk_abc:");
        assert_eq!(key_from_headers(&headers(&format!("Basic {basic}"))).as_deref(), Some("kith_wk_abc"));
        let with_password = base64::engine::general_purpose::STANDARD.encode("kith_wk_abc:ignored");
        assert_eq!(key_from_headers(&headers(&format!("basic {with_password}"))).as_deref(), Some("kith_wk_abc"));
        assert_eq!(key_from_headers(&headers("Bearer kith_sk_x")).as_deref(), Some("kith_sk_x"));
        assert_eq!(key_from_headers(&headers("Token x")), None);
        assert_eq!(key_from_headers(&HeaderMap::new()), None);
    }

    #[test]
    fn generated_keys_have_their_prefix_and_differ() {
        let a = generate_key(KeyKind::Secret);
        assert!(a.starts_with("kith_sk_") && a.len() == 40);
        assert_ne!(a, generate_key(KeyKind::Secret));
        assert!(generate_key(KeyKind::Write).starts_with("kith_wk_"));
        let regional = generate_key_in(KeyKind::Write, Some("eu"));
        assert!(regional.starts_with("kith_wk_eu_") && regional.len() == 43);
        assert_eq!(crate::region::key_region(&regional), Some("eu"));
        assert_eq!(crate::region::key_region(&a), None);
    }
}
