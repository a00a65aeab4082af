//! Signing in and out, sessions and CSRF.
//!
//! - Passwords are hashed with argon2id (a PHC string with its own salt); an unknown email
//!   costs the same hash as a wrong password, so timing does not tell which emails exist.
//! - A session is 32 random bytes in an `HttpOnly`, `SameSite=Lax` cookie; the store keeps
//!   only its SHA-256 and an expiry, so a copy of the database holds no live session.
//! - The CSRF token of a session is derived from its secret token, so it needs no storage and
//!   cannot be computed by a page that cannot read the (HttpOnly) cookie. Every POST form
//!   sends it as `_csrf`; [`Posted`] checks it in constant time before the handler runs.
//! - The sign-in form, before any session exists, is protected the double-submit way: a
//!   random value in a cookie that must come back in the form.
//! - A session ends 30 days after sign-in, or sooner when unused for the configured idle
//!   time ([`super::WebConfig::session_idle`]); cookies are `Secure` when kith's public URL is
//!   https or a proxy says the request came over https.
//! - Failed sign-ins are throttled and password checks bounded ([`super::throttle`]).

use std::net::IpAddr;
use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::{SignedDuration, Timestamp};
use kith_store::{key_hash, Store, StoreError, User, Workspace, WorkspaceId};
use maud::html;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::layout;
use super::throttle::{ClientAddress, Refusal};
use super::{WebError, WebResult};
use crate::error::ApiError;
use crate::AppState;

/// The session cookie.
const SESSION_COOKIE: &str = "kith_session";
/// The sign-in form's double-submit cookie.
const LOGIN_COOKIE: &str = "kith_login";
/// How long a session lasts at most.
const SESSION_DAYS: i64 = 30;
/// How stale a session's last use may be before it is recorded again: one write per session
/// per minute at most, however many pages are opened.
const TOUCH_EVERY: SignedDuration = SignedDuration::from_secs(60);
/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The largest form body read (a note is the longest thing a form sends).
const MAX_FORM_BYTES: usize = 64 * 1024;

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
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
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
fn set_cookie(state: &AppState, headers: &HeaderMap, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let secure = if forwarded_https || state.web.config.is_https() { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `n` random characters from an alphabet without look-alikes (no 0/O, 1/l/I).
fn random_text(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// A password for a user created without one: 20 characters (~115 bits), in groups of 5.
pub fn generate_password() -> String {
    let text = random_text(20);
    text.as_bytes().chunks(5).map(|chunk| String::from_utf8_lossy(chunk).into_owned()).collect::<Vec<_>>().join("-")
}

/// The argon2id hash (PHC string) of a password.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    let mut salt = [0u8; 16];
    rand::rng().fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hash(e.to_string()))?;
    let hash =
        Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| UserError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `password` matches a PHC hash; a malformed hash matches nothing.
fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Verified against when the email is unknown, so that answer takes as long as a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_password(&random_text(24)).unwrap_or_default());

/// A sign-in email: trimmed and lower-cased; `local@domain` without spaces (no TLD required,
/// so `admin@localhost` works).
pub fn normalize_user_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let plausible = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    plausible.then_some(email)
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The email is not `local@domain`.
    #[error("{0:?} is not an email address")]
    InvalidEmail(String),
    /// The password is too short.
    #[error("a password has at least {MIN_PASSWORD_CHARS} characters")]
    ShortPassword,
    /// No user signs in with this email.
    #[error("no user signs in with {0}")]
    Unknown(String),
    /// Hashing failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The store refused (e.g. the email is taken, the workspace does not exist).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a user of `workspace` who signs in with `email` and `password`.
pub async fn create_user(
    store: &dyn Store,
    workspace: WorkspaceId,
    email: &str,
    password: &str,
) -> Result<User, UserError> {
    let email = normalize_user_email(email).ok_or_else(|| UserError::InvalidEmail(email.to_owned()))?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::ShortPassword);
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| UserError::Hash(e.to_string()))??;
    Ok(store.create_user(workspace, &email, &hash).await?)
}

/// Sets the password of the user with `email` (from the command line: no current password
/// asked) and ends all their sessions.
pub async fn set_user_password(store: &dyn Store, email: &str, password: &str) -> Result<User, UserError> {
    let user = find_user(store, email).await?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::ShortPassword);
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| UserError::Hash(e.to_string()))??;
    store.set_password(user.id, &hash).await?;
    Ok(user)
}

/// Removes the user with `email` and ends their sessions.
pub async fn remove_user(store: &dyn Store, email: &str) -> Result<User, UserError> {
    let user = find_user(store, email).await?;
    store.delete_user(user.id).await?;
    Ok(user)
}

async fn find_user(store: &dyn Store, email: &str) -> Result<User, UserError> {
    let normalised = normalize_user_email(email).ok_or_else(|| UserError::InvalidEmail(email.to_owned()))?;
    store.user_by_email(&normalised).await?.ok_or(UserError::Unknown(normalised))
}

/// Where to go after signing in: a path of this site only, never another origin.
///
/// Browsers do not read a `Location` as written: they drop tabs and line breaks anywhere,
/// trim control characters and spaces at the ends, and take a backslash for a slash. So
/// `/\t/evil.example` and `/\\evil.example` both mean `//evil.example`, another site. A path is
/// accepted only if it starts with one `/` followed by something other than `/`, and holds
/// no control character and no backslash, so that what the browser reads is what was checked.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path) if is_local_path(path) => path,
        _ => "/contacts",
    }
}

fn is_local_path(path: &str) -> bool {
    let mut bytes = path.bytes();
    bytes.next() == Some(b'/')
        && !matches!(bytes.next(), Some(b'/'))
        && !path.chars().any(|c| c.is_control() || c == '\\')
}

/// `?next=` of the sign-in page.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /login`.
pub async fn login_page(
    State(state): State<AppState>,
    signed: Option<Signed>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    if signed.is_some() {
        return Redirect::to(safe_next(query.next.as_deref())).into_response();
    }
    login_form(&state, &headers, StatusCode::OK, "", query.next.as_deref(), None)
}

/// The sign-in page with a fresh double-submit token.
fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    next: Option<&str>,
    error: Option<&str>,
) -> Response {
    let token = random_text(32);
    let body = html! {
        main.auth id="main" {
            div.auth-card {
                div.brand.brand-large { span.brand-mark aria-hidden="true" {} "kith" }
                h1 { "Sign in" }
                p.muted { "Your relationships, as your product sees them." }
                @if let Some(error) = error {
                    p.alert.alert-error role="alert" { (error) }
                }
                form method="post" action="/login" {
                    input type="hidden" name="_csrf" value=(token);
                    @if let Some(next) = next {
                        input type="hidden" name="next" value=(next);
                    }
                    label for="email" { "Email" }
                    input #email type="email" name="email" value=(email) autocomplete="username" required autofocus;
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    button.button.button-primary.button-block type="submit" { "Sign in" }
                }
                p.muted.small {
                    "No account? The first one is printed when kith starts; more with "
                    code { "kith users create --email you@example.com" } "."
                }
            }
        }
    };
    let mut response = (status, Html(layout::bare_page("Sign in", body).into_string())).into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(state, headers, LOGIN_COOKIE, &token, "/login", 3600));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default, rename = "_csrf")]
    csrf: String,
    next: Option<String>,
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> WebResult<Response> {
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        let message = "Enter your email and password.";
        return Ok(login_form(&state, &headers, StatusCode::BAD_REQUEST, "", None, Some(message)));
    };
    let next = form.next.as_deref();
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        let message = "This sign-in form expired. Please try again.";
        return Ok(login_form(&state, &headers, StatusCode::FORBIDDEN, &form.email, next, Some(message)));
    }
    let email = normalize_user_email(&form.email).unwrap_or_default();
    // Failures are counted against what was typed, known account or not (cut to an email's
    // longest, so the counts cannot be made to hold large strings).
    let account =
        if email.is_empty() { form.email.trim().to_lowercase().chars().take(254).collect() } else { email.clone() };
    let refused = |refusal: Refusal| {
        let (status, wait, message) = refusal_text(&refusal);
        let mut response = login_form(&state, &headers, status, &form.email, next, Some(&message));
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        response
    };
    let matches = match check_password(&state, &account, address, &email, &form.password).await? {
        Ok(found) => found,
        Err(refusal) => return Ok(refused(refusal)),
    };
    let Some(user) = matches else {
        let message = "That email and password don't match. Check them and try again.";
        return Ok(login_form(&state, &headers, StatusCode::UNAUTHORIZED, &form.email, next, Some(message)));
    };

    let mut response = Redirect::to(safe_next(next)).into_response();
    start_session(&state, &headers, &user, &mut response).await?;
    response.headers_mut().append(header::SET_COOKIE, set_cookie(&state, &headers, LOGIN_COOKIE, "", "/login", 0));
    tracing::info!(user = user.id, workspace = user.workspace_id, "signed in");
    Ok(response)
}

/// The user `email` names if `password` is theirs, `None` if not (a failure is counted), or
/// why the password was not checked: the account or the address is throttled, or too many
/// checks are running.
async fn check_password(
    state: &AppState,
    account: &str,
    address: Option<IpAddr>,
    email: &str,
    password: &str,
) -> WebResult<Result<Option<User>, Refusal>> {
    let guard = &state.web.sign_in;
    if let Err(refusal) = guard.check(account, address) {
        return Ok(Err(refusal));
    }
    let slot = match guard.hashing_slot().await {
        Ok(slot) => slot,
        Err(refusal) => return Ok(Err(refusal)),
    };
    // Checked again: failures may have been counted while this request waited for its slot.
    if let Err(refusal) = guard.check(account, address) {
        return Ok(Err(refusal));
    }
    let user = if email.is_empty() { None } else { state.store.user_by_email(email).await? };
    let hash = user.as_ref().map_or_else(|| DUMMY_HASH.clone(), |user| user.password_hash.clone());
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false);
    drop(slot);
    match user.filter(|_| matches) {
        Some(user) => {
            guard.succeeded(account);
            Ok(Ok(Some(user)))
        }
        None => {
            guard.failed(account, address);
            Ok(Ok(None))
        }
    }
}

/// Status, `Retry-After` seconds and a sentence for a password that was not checked.
fn refusal_text(refusal: &Refusal) -> (StatusCode, u64, String) {
    match refusal {
        Refusal::Throttled(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let message = format!("Too many failed sign-ins. Wait {seconds} seconds, then try again.");
            (StatusCode::TOO_MANY_REQUESTS, seconds, message)
        }
        Refusal::Busy => {
            let message = "kith is busy checking other sign-ins. Try again in a moment.".to_owned();
            (StatusCode::SERVICE_UNAVAILABLE, 1, message)
        }
    }
}

/// Starts a session for `user` and sets its cookie on `response`.
async fn start_session(state: &AppState, headers: &HeaderMap, user: &User, response: &mut Response) -> WebResult<()> {
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

/// What came of a password change.
pub enum PasswordChange {
    /// Changed; every other session has ended and this browser has a new one.
    Changed(Response),
    /// The current password was wrong, or the new one too short: the sentence to show.
    Refused(StatusCode, String),
}

/// Changes the signed-in user's password after checking the current one (throttled like a
/// sign-in), ends all their sessions and starts a new one for this browser.
pub async fn change_password(
    state: &AppState,
    headers: &HeaderMap,
    address: Option<IpAddr>,
    signed: &Signed,
    current: &str,
    new: &str,
    redirect_to: &str,
) -> WebResult<PasswordChange> {
    let user = &signed.user;
    let matches = match check_password(state, &user.email, address, &user.email, current).await? {
        Ok(matches) => matches,
        Err(refusal) => {
            let (status, _, message) = refusal_text(&refusal);
            return Ok(PasswordChange::Refused(status, message));
        }
    };
    if matches.is_none() {
        let message = "Your current password is not that one; the password was not changed.".to_owned();
        return Ok(PasswordChange::Refused(StatusCode::FORBIDDEN, message));
    }
    if new.chars().count() < MIN_PASSWORD_CHARS {
        let message = format!("A password has at least {MIN_PASSWORD_CHARS} characters.");
        return Ok(PasswordChange::Refused(StatusCode::BAD_REQUEST, message));
    }
    let hash = {
        let _slot = match state.web.sign_in.hashing_slot().await {
            Ok(slot) => slot,
            Err(refusal) => {
                let (status, _, message) = refusal_text(&refusal);
                return Ok(PasswordChange::Refused(status, message));
            }
        };
        let new = new.to_owned();
        tokio::task::spawn_blocking(move || hash_password(&new))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?
    };
    state.store.set_password(user.id, &hash).await?;
    let mut response = Redirect::to(redirect_to).into_response();
    start_session(state, headers, user, &mut response).await?;
    tracing::info!(user = user.id, "password changed in the web app; other sessions ended");
    Ok(PasswordChange::Changed(response))
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
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let a = generate_password();
        assert_eq!(a.len(), 23);
        assert_ne!(a, generate_password());
    }

    #[test]
    fn emails_are_normalised_loosely() {
        assert_eq!(normalize_user_email(" Admin@LocalHost ").as_deref(), Some("admin@localhost"));
        assert_eq!(normalize_user_email("no-at-sign"), None);
        assert_eq!(normalize_user_email("a b@c.d"), None);
        assert_eq!(normalize_user_email("@c.d"), None);
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/contacts/3?x=1")), "/contacts/3?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "/contacts");
        assert_eq!(safe_next(Some("https://evil.example")), "/contacts");
        assert_eq!(safe_next(Some("/\\evil.example")), "/contacts");
        assert_eq!(safe_next(None), "/contacts");
        for hostile in ["/\t/evil.example/x", "/\n/evil.example", "/\r//evil.example", " //evil.example", "\t//evil"] {
            assert_eq!(safe_next(Some(hostile)), "/contacts", "{hostile:?}");
        }
        assert_eq!(safe_next(Some("/")), "/");
        assert_eq!(safe_next(Some("")), "/contacts");
    }

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
