//! The service layer: every read and change a request makes, built once for the JSON API
//! (`api/`) and the web app (`web/`), and for the `kith` command where it shares one.
//!
//! A function here takes the [`crate::AppState`] (or the store) and a workspace, calls the
//! store, applies the rules that are kith's rather than the store's (the losing-touch window,
//! cadence bounds, what a settings change may hold, who may sign in), and returns records
//! and computed values. It knows nothing of HTTP bodies or HTML: `api/` turns what it returns
//! into the JSON shapes of `api/views.rs`, and `web/` into pages.

pub mod contacts;
pub mod groups;
pub mod health;
pub mod history;
pub mod journeys;
pub mod messages;
pub mod nudges;
pub mod owners;
pub mod settings;
pub mod users;

use base64::Engine;
use kith_store::Cursor;

use crate::error::{ApiError, ApiResult};

/// Encodes a cursor for a URL.
pub fn encode_cursor(cursor: Option<Cursor>) -> Option<String> {
    let cursor = cursor?;
    let json = serde_json::to_vec(&cursor).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

/// Decodes a cursor from a URL.
pub fn decode_cursor(text: Option<&str>) -> ApiResult<Option<Cursor>> {
    let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(None) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_cursor",
                "cursor",
                "this cursor was not made by kith; pass the `next_cursor` of the previous page",
            )
        })
}
