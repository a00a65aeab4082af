//! Sessions and CSRF: who a request comes from, and proof that a form came from their page.
//!
//! - A session is 32 random bytes in an `HttpOnly`, `SameSite=Lax` cookie; the store keeps
//!   only its SHA-256 and an expiry, so a copy of the database holds no live session.
//! - The CSRF token of a session is derived from its secret token, so it needs no storage and
//!   cannot be computed by a page that cannot read the (HttpOnly) cookie. Every POST form
//!   sends it as `_csrf`; [`Posted`] checks it in constant time before the handler runs.
//! - A session ends 30 days after sign-in, or sooner when unused for the configured idle
//!   time ([`super::WebConfig::session_idle`]); cookies are `Secure` when kith's public URL is
//!   https or a proxy says the request came over https.
//!
//! Signing in, which starts a session, is in `signin.rs`; this file renders nothing, so the
//! page shell (`layout.rs`) can name [`Signed`] without a circle.

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::{SignedDuration, Timestamp};
use kith_store::{key_hash, User, Workspace};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{WebError, WebResult};
use crate::AppState;

/// The session cookie.
const SESSION_COOKIE: &str = "kith_session";
/// How long a session lasts at most.
const SESSION_DAYS: i64 = 30;
/// How stale a session's last use may be before it is recorded again: one write per session
/// per minute at most, however many pages are opened.
const TOUCH_EVERY: SignedDuration = SignedDuration::from_secs(60);
/// The largest form body read: a template's three parts of up to 64 KB each, which URL
/// encoding may triple, are the longest thing a form sends.
const MAX_FORM_BYTES: usize = 640 * 1024;

/// A request from someone signed in: who, their workspace, and the token their forms carry.
pub struct Signed {
    /// The user.
    pub user: User,
    /// Their workspace (the only one they see).
    pub workspace: Workspace,
    /// The session's CSRF token, for hidden form fields.
    pub csrf: String,
}

impl Signed {
    fn csrf_matches(&self, sent: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(sent.as_bytes()))
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let sign_in = || WebError::SignIn {
            next: parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else { return Err(sign_in()) };
        let hash = key_hash(&token);
        let now = state.clock.now();
        let Some(session) = state.store.session(hash, now).await? else {
            return Err(sign_in());
        };
        let unused = now.duration_since(session.last_seen_at);
        if unused >= state.web.config.session_idle {
            state.store.delete_session(hash).await?;
            return Err(sign_in());
        }
        if unused >= TOUCH_EVERY {
            state.store.touch_session(hash, now).await?;
        }
        let workspace = state
            .store
            .workspace(session.user.workspace_id)
            .await?
            .ok_or_else(|| WebError::not_found("your workspace no longer exists"))?;
        Ok(Signed { user: session.user, workspace, csrf: csrf_token(&token) })
    }
}

impl OptionalFromRequestParts<AppState> for Signed {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        match <Signed as FromRequestParts<AppState>>::from_request_parts(parts, state).await {
            Ok(signed) => Ok(Some(signed)),
            Err(WebError::SignIn { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

/// A form POSTed by someone signed in, whose CSRF token matched: the only way a handler gets
/// a form, so no handler can forget the check.
pub struct Posted<T>(pub Signed, pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = WebError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let signed = <Signed as FromRequestParts<AppState>>::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| WebError::bad_request("this form is larger than kith accepts; shorten the text"))?;
        if !signed.csrf_matches(&form_field(&bytes, "_csrf").unwrap_or_default()) {
            return Err(WebError::Page {
                status: StatusCode::FORBIDDEN,
                message: "this form was not sent from your kith session (it may be from an old tab); \
                          reload the page and try again"
                    .to_owned(),
            });
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|error| WebError::bad_request(format!("this form could not be read: {error}")))?;
        Ok(Posted(signed, form))
    }
}

/// One field of a urlencoded body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    pairs.into_iter().find(|(key, _)| key == name).map(|(_, value)| value)
}

/// The CSRF token of a session token.
fn csrf_token(session_token: &str) -> String {
    let digest = Sha256::new().chain_update(b"kith csrf\0").chain_update(session_token.as_bytes()).finalize();
    hex::encode(&digest[..16])
}

/// A cookie's value from the request's `Cookie` headers.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// A `Set-Cookie` value: HttpOnly and SameSite always; Secure when kith's public URL is
/// https or a proxy says the request came over https. `max_age` 0 deletes the cookie.
pub(super) fn set_cookie(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
) -> HeaderValue {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let secure = if forwarded_https || state.web.config.is_https() { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Starts a session for `user` and sets its cookie on `response`.
pub(super) async fn start_session(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
    response: &mut Response,
) -> WebResult<()> {
    let mut token_bytes = [0u8; 32];
    rand::rng().fill(&mut token_bytes);
    let token = hex::encode(token_bytes);
    let now = state.clock.now();
    let expires_at: Timestamp = now + SignedDuration::from_hours(24 * SESSION_DAYS);
    state.store.create_session(user.id, key_hash(&token), expires_at).await?;
    // The store stamps a new session with the system's time; its idle time is counted on
    // kith's clock, which tests and replays may set elsewhere.
    state.store.touch_session(key_hash(&token), now).await?;
    let cookie = set_cookie(state, headers, SESSION_COOKIE, &token, "/", 24 * 3600 * SESSION_DAYS);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(())
}

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Empty {}

/// `POST /logout`: ends the session here and in the store.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, _: Posted<Empty>) -> WebResult<Response> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.store.delete_session(key_hash(&token)).await?;
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&state, &headers, SESSION_COOKIE, "", "/", 0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_from_every_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; kith_session=abc"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, "kith_session").as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn csrf_tokens_follow_the_session() {
        assert_eq!(csrf_token("a"), csrf_token("a"));
        assert_ne!(csrf_token("a"), csrf_token("b"));
    }
}
