//! The service layer: every read and change a request makes, built once for the JSON API
//! (`api/`) and the web app (`web/`), and for the `kith` command where it shares one.
//!
//! A function here takes the [`crate::AppState`] (or the store) and a workspace, calls the
//! store, applies the rules that are kith's rather than the store's (the losing-touch window,
//! cadence bounds, what a settings change may hold, who may sign in), and returns records
//! and computed values. It knows nothing of HTTP bodies or HTML: `api/` turns what it returns
//! into the JSON shapes of `api/views.rs`, and `web/` into pages.

pub mod users;
