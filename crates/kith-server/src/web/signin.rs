//! Signing in, and changing a password, which is checked the same way.
//!
//! - The sign-in form, before any session exists, is protected the double-submit way: a
//!   random value in a cookie that must come back in the form.
//! - Failed sign-ins are throttled and password checks bounded ([`super::throttle`]); an
//!   unknown email costs the same hash as a wrong password (`service/users.rs`).
//! - A successful sign-in starts a session (`session.rs`).

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use kith_store::User;
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::layout;
use super::session::{cookie, set_cookie, start_session, Signed};
use super::throttle::{ClientAddress, Refusal};
use super::WebResult;
use crate::error::ApiError;
use crate::service::users::{
    hash_password_blocking, is_long_enough, normalize_user_email, password_matches, random_text, MIN_PASSWORD_CHARS,
};
use crate::AppState;

/// The sign-in form's double-submit cookie.
const LOGIN_COOKIE: &str = "kith_login";

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
    let matches = password_matches(user.as_ref(), password).await;
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
    if !is_long_enough(new) {
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
        hash_password_blocking(new).await.map_err(ApiError::internal)?
    };
    state.store.set_password(user.id, &hash).await?;
    let mut response = Redirect::to(redirect_to).into_response();
    start_session(state, headers, user, &mut response).await?;
    tracing::info!(user = user.id, "password changed in the web app; other sessions ended");
    Ok(PasswordChange::Changed(response))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
