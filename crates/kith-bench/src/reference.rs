//! The reference: a bare axum server that reads the body and answers `{"success":true}` on every
//! route, measured in the same run as kith so that a figure comes with the ceiling the machine
//! allows.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use tokio::net::TcpListener;

/// What the reference does with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Read it and answer.
    Bare,
    /// Read it, parse it as JSON and discard it (the floor of any ingest).
    Parse,
}

/// Serves until the process is stopped.
pub async fn serve(listener: TcpListener, mode: Mode) -> std::io::Result<()> {
    let router = Router::new().fallback(move |body: Bytes| async move {
        if mode == Mode::Parse && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            return (StatusCode::BAD_REQUEST, [("content-type", "application/json")], r#"{"success":false}"#)
                .into_response();
        }
        ([("content-type", "application/json")], r#"{"success":true}"#).into_response()
    });
    axum::serve(listener, router).await
}
