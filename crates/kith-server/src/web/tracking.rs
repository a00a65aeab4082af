//! The tracking links of messages, which work without signing in: the open pixel and the
//! click links `service/messages.rs` puts in every message's HTML. Each is signed with the
//! workspace's link key over what it names (the message's random `email_id`, and for a click
//! the URL it leads to), so a link leads only where the message pointed: a link whose
//! signature or URL was changed is answered 404, never redirected. Nothing is looked up or
//! written for a malformed link, and only the workspace's key (read once, then remembered)
//! for a badly signed one.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kith_store::{Engagement, StoreError, WorkspaceId};

use super::layout::error_page;
use crate::service::messages;
use crate::AppState;

/// What a tracking link names: the workspace, the message's `email_id` and the signature.
type TrackPath = (WorkspaceId, String, String);

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

fn invalid_link() -> Response {
    (StatusCode::NOT_FOUND, error_page(StatusCode::NOT_FOUND, "this link is not valid")).into_response()
}

fn unavailable(error: StoreError) -> Response {
    tracing::error!(cause = %kith_store::error_chain(&error), "a message link failed");
    let status = StatusCode::SERVICE_UNAVAILABLE;
    (status, error_page(status, "kith could not reach its database; try again in a moment")).into_response()
}

/// Every answer is fetched anew: a cached pixel or redirect would hide the next open or click.
fn uncached(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
    response
}

/// `GET /m/{workspace}/{email_id}/open/{signature}`: the open pixel.
pub async fn open(State(state): State<AppState>, Path((workspace, email_id, signature)): Path<TrackPath>) -> Response {
    if !messages::is_token(&email_id) || !messages::is_token(&signature) {
        return invalid_link();
    }
    match messages::link_key(&state, workspace).await {
        Ok(Some(key)) if messages::open_is_valid(&key, workspace, &email_id, &signature) => {}
        Ok(_) => return invalid_link(),
        Err(error) => return unavailable(error),
    }
    if let Err(error) = messages::engaged(&state, workspace, &email_id, Engagement::Open, None).await {
        // The open is lost; the mail client still gets its image.
        tracing::error!(cause = %kith_store::error_chain(&error), "an open was not recorded");
    }
    uncached(([(header::CONTENT_TYPE, "image/gif")], PIXEL).into_response())
}

/// `GET /m/{workspace}/{email_id}/click/{signature}?url=…`: records the click and redirects to
/// the URL the message held.
pub async fn click(
    State(state): State<AppState>,
    Path((workspace, email_id, signature)): Path<TrackPath>,
    RawQuery(query): RawQuery,
) -> Response {
    if !messages::is_token(&email_id) || !messages::is_token(&signature) {
        return invalid_link();
    }
    let fields: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let Some(url) = fields.into_iter().find(|(name, _)| name == "url").map(|(_, url)| url) else {
        return invalid_link();
    };
    match messages::link_key(&state, workspace).await {
        Ok(Some(key)) if messages::click_is_valid(&key, workspace, &email_id, &url, &signature) => {}
        Ok(_) => return invalid_link(),
        Err(error) => return unavailable(error),
    }
    // kith signs only web links; this holds even if a key leaked.
    let Some(location) = messages::is_web_url(&url).then(|| HeaderValue::from_str(&url).ok()).flatten() else {
        return invalid_link();
    };
    if let Err(error) = messages::engaged(&state, workspace, &email_id, Engagement::Click, Some(&url)).await {
        // The click is lost; the person still reaches the link.
        tracing::error!(cause = %kith_store::error_chain(&error), "a click was not recorded");
    }
    uncached((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}
