//! The web app: server-rendered pages for people who sign in with a password.
//!
//! Pages are rendered with `maud` from what the service layer (`service/`) returns, the same
//! calls the JSON API renders; a little JavaScript (embedded, under `/static/`) copies keys,
//! confirms deletions and feeds the live debugger from server-sent events. Every page but
//! `/login`, the signed unsubscribe links of messages (`unsubscribe.rs`) and their open and
//! click tracking (`tracking.rs`) needs a session
//! (`session::Signed`) and shows only the signed-in user's workspace; every form POST of a
//! signed-in page carries the session's CSRF token (`session::Posted`).

mod assets;
mod backtests;
mod charts;
mod contacts;
mod debugger;
mod groups;
mod journeys;
mod layout;
mod message_stats;
mod messages;
mod nudges;
mod owners;
mod rule_form;
mod session;
mod settings;
mod signin;
pub mod throttle;
mod tracking;
mod unsubscribe;
mod values;

use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use jiff::SignedDuration;
use kith_store::{Cursor, StoreError, Workspace};
use serde::Deserialize;

use crate::error::ApiError;
use crate::service;
use crate::service::settings::WorkspaceChange;
use crate::AppState;

/// Settings of the web app.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The address people open kith at, e.g. `https://kith.example.com`. When it is https,
    /// cookies are marked `Secure` (they are also when a proxy sends `X-Forwarded-Proto: https`).
    pub public_url: Option<String>,
    /// A session not used for this long ends, before its 30-day limit.
    pub session_idle: SignedDuration,
    /// Live debugger streams one user may hold open at once.
    pub streams_per_user: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { public_url: None, session_idle: SignedDuration::from_hours(24 * 7), streams_per_user: 8 }
    }
}

impl WebConfig {
    /// Whether people reach kith over https, so cookies must never travel in clear.
    pub fn is_https(&self) -> bool {
        self.public_url.as_deref().is_some_and(|url| url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")))
    }
}

/// What the web app keeps between requests.
#[derive(Default)]
pub struct WebState {
    /// Its settings.
    pub config: WebConfig,
    /// Sign-in throttling and the bound on password hashing.
    pub sign_in: throttle::SignInGuard,
}

impl WebState {
    /// The web app's state with these settings.
    pub fn new(config: WebConfig) -> Self {
        WebState { config, sign_in: throttle::SignInGuard::default() }
    }
}

/// The web app's routes. None collides with `/v1/*`, `/api/*` or the operations endpoints.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(signin::login_page).post(signin::login))
        .route("/logout", post(session::logout))
        .route("/contacts", get(contacts::list))
        .route("/contacts/{id}", get(contacts::show))
        .route("/contacts/{id}/interactions", post(contacts::add_interaction))
        .route("/contacts/{id}/cadence", post(contacts::set_cadence))
        .route("/contacts/{id}/subscriptions", post(contacts::set_subscription))
        .route("/contacts/{id}/delete", post(contacts::delete))
        .route("/contacts/{id}/owner", post(owners::set_contact_owner))
        .route("/contacts/{id}/tasks", post(owners::add_contact_task))
        .route("/accounts/{group_id}/owner", post(owners::set_account_owner))
        .route("/accounts/{group_id}/tasks", post(owners::add_account_task))
        .route("/tasks/{id}/complete", post(owners::complete))
        .route("/tasks/{id}/reopen", post(owners::reopen))
        .route("/today", get(owners::today))
        .route("/losing-touch", get(contacts::losing_touch))
        .route("/due", get(contacts::due))
        .route("/accounts", get(groups::accounts))
        .route("/accounts/{group_id}", get(groups::account))
        .route("/audiences", get(groups::audiences))
        .route("/audiences/{key}", get(groups::audience))
        .route("/debugger", get(debugger::page))
        .route("/debugger/stream", get(debugger::stream))
        .route("/messages/stats", get(message_stats::stats))
        .route("/nudges", get(nudges::page))
        .route("/nudges/rules", post(nudges::create_rule))
        .route("/nudges/rules/new", get(nudges::new_rule))
        .route("/nudges/rules/{id}", get(nudges::edit_rule).post(nudges::update_rule))
        .route("/nudges/rules/{id}/backtest", get(backtests::rule))
        .route("/nudges/rules/{id}/toggle", post(nudges::toggle_rule))
        .route("/nudges/rules/{id}/delete", post(nudges::delete_rule))
        .route("/nudges/deliveries/{id}/retry", post(nudges::retry_delivery))
        .route("/nudges/segment", post(nudges::segment))
        .route("/nudges/digest", post(nudges::digest))
        .route("/messages", get(messages::page))
        .route("/messages/topics", post(messages::create_topic))
        .route("/messages/topics/{id}", post(messages::update_topic))
        .route("/messages/topics/{id}/delete", post(messages::delete_topic))
        .route("/messages/templates", post(messages::create_template))
        .route("/messages/templates/new", get(messages::new_template))
        .route("/messages/templates/{id}", get(messages::edit_template).post(messages::update_template))
        .route("/messages/templates/{id}/delete", post(messages::delete_template))
        .route("/journeys", get(journeys::list))
        .route("/journeys/new", get(journeys::new))
        .route("/journeys/builder", post(journeys::post_builder))
        .route("/journeys/{id}", get(journeys::show))
        .route("/journeys/{id}/backtest", get(backtests::journey))
        .route("/journeys/{id}/toggle", post(journeys::toggle))
        .route("/journeys/{id}/steps/{step}", get(journeys::step))
        .route("/settings", get(settings::page))
        .route("/settings/workspace", post(settings::update_workspace))
        .route("/settings/sender", post(settings::update_sender))
        .route("/settings/reproject", post(settings::reproject))
        .route("/settings/limits", post(settings::update_limits))
        .route("/settings/signing-secret", post(settings::signing_secret))
        .route("/settings/array-bodies", post(settings::array_bodies))
        .route("/settings/keys", post(settings::create_key))
        .route("/settings/keys/{id}/revoke", post(settings::revoke_key))
        .route("/settings/password", post(settings::change_password))
        .route("/settings/users/{id}/remove", post(settings::remove_user))
        .route("/unsubscribe/{workspace}/{contact}/{topic}/{signature}", get(unsubscribe::page).post(unsubscribe::post))
        .route("/m/{workspace}/{email_id}/open/{signature}", get(tracking::open))
        .route("/m/{workspace}/{email_id}/click/{signature}", get(tracking::click))
        .route("/static/{file}", get(assets::serve))
        .layer(map_response(html_errors))
        .layer(map_response(security_headers))
}

/// axum's own refusals — a path segment or a query string that does not parse, a wrong method —
/// come as plain text; the web app shows them as its error page, with their status and text.
async fn html_errors(response: Response) -> Response {
    let plain =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|value| value.as_bytes().starts_with(b"text/plain"));
    let status = response.status();
    if !(status.is_client_error() && plain) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    WebError::Page { status, message: String::from_utf8_lossy(&text).into_owned() }.into_response()
}

/// `/`: the contacts for someone signed in, the sign-in page for anyone else.
async fn home(signed: Option<session::Signed>) -> Redirect {
    match signed {
        Some(_) => Redirect::to("/contacts"),
        None => Redirect::to("/login"),
    }
}

/// Headers every page carries: no framing (clickjacking), no MIME sniffing, no referrer to
/// other sites, and a policy that only runs the app's own scripts and styles.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // A page may set a policy of its own (the template editor lets its preview's inline styles
    // through); every other page gets this one.
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data: https:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        );
    }
    response
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum WebError {
    /// No valid session: sign in first, then come back to `next`.
    SignIn {
        /// The path to return to after signing in.
        next: String,
    },
    /// An error page.
    Page {
        /// HTTP status.
        status: StatusCode,
        /// What a person reads.
        message: String,
    },
}

impl WebError {
    /// 404 with what was not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        WebError::Page { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    /// 400 with what to change.
    pub fn bad_request(message: impl Into<String>) -> Self {
        WebError::Page { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
}

impl From<ApiError> for WebError {
    fn from(error: ApiError) -> Self {
        // `ApiError::internal` already logged the cause of a server fault.
        WebError::Page { status: error.status, message: error.body.message }
    }
}

impl From<StoreError> for WebError {
    fn from(error: StoreError) -> Self {
        ApiError::from(error).into()
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::SignIn { next } => {
                let target = if next == "/" || next.is_empty() {
                    "/login".to_owned()
                } else {
                    format!("/login?next={}", layout::encode_query(&next))
                };
                Redirect::to(&target).into_response()
            }
            WebError::Page { status, message } => (status, layout::error_page(status, &message)).into_response(),
        }
    }
}

/// The page of a paged list a link asks for.
#[derive(Debug, Default, Deserialize)]
pub struct CursorParams {
    cursor: Option<String>,
}

/// The cursor of a page link; one from an old or edited link starts the list over rather
/// than failing.
fn page_cursor(text: Option<&str>) -> Option<Cursor> {
    service::decode_cursor(text).unwrap_or(None)
}

/// Applies a settings change sent by a form: the workspace as changed, or why the change was
/// refused, to show on the form (a store fault is an error page).
async fn save_settings(
    state: &AppState,
    workspace: &Workspace,
    change: WorkspaceChange,
) -> WebResult<Result<Workspace, String>> {
    match service::settings::update_workspace(state, workspace, change).await {
        Ok(updated) => Ok(Ok(updated)),
        // The store answers no 400: that status is a refused change.
        Err(error) if error.status == StatusCode::BAD_REQUEST => Ok(Err(error.body.message)),
        Err(error) => Err(error.into()),
    }
}

/// Shorthand for page handlers.
pub type WebResult<T> = Result<T, WebError>;
