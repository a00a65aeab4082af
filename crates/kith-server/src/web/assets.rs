//! The stylesheet, script and icon, embedded in the binary (no CDN, no front-end build) and
//! served under `/static/` with a content hash in their URLs, so browsers cache them for a
//! year and still fetch a new version at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// `(file name, content type, content)`.
const FILES: [(&str, &str, &str); 3] = [
    ("app.css", "text/css; charset=utf-8", include_str!("static/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("static/app.js")),
    ("favicon.svg", "image/svg+xml", include_str!("static/favicon.svg")),
];

/// A short hash of every embedded file, appended to their URLs.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = Sha256::new();
    for (_, _, content) in FILES {
        hasher.update(content.as_bytes());
    }
    hex::encode(&hasher.finalize()[..6])
});

/// The URL of an embedded file, with its version.
pub fn url(file: &str) -> String {
    format!("/static/{file}?v={}", *VERSION)
}

/// `GET /static/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, content)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
            ],
            *content,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
