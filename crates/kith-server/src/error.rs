//! The HTTP error: a status and the flat `{code, message, field}` body. Server faults are logged
//! with their cause; the client sees only a code and a message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kith_core::{Code, Rejection};
use kith_store::pipeline::SubmitError;
use kith_store::StoreError;
use serde::Serialize;

/// Seconds a client is asked to wait when the node sheds load.
pub const RETRY_AFTER_SECS: u64 = 2;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
    /// `Retry-After` seconds, for 429/503.
    pub retry_after: Option<u64>,
}

/// The flat error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable code, e.g. `missing_email`.
    pub code: String,
    /// What to change.
    pub message: String,
    /// The field concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Where to send the request instead: for `wrong_region`, the public URL of the key's region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl ApiError {
    /// An error with a code of our own (not one of the ingest codes).
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody { code: code.to_owned(), message: message.into(), field: None, endpoint: None },
            retry_after: None,
        }
    }

    /// 400 for a query or body field.
    pub fn bad_request(code: &str, field: &str, message: impl Into<String>) -> Self {
        let mut error = ApiError::new(StatusCode::BAD_REQUEST, code, message);
        error.body.field = Some(field.to_owned());
        error
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, Code::Unauthorized.as_str(), message)
    }

    /// 503 with Retry-After: the node is shedding load and the request can be retried.
    pub fn overloaded() -> Self {
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::RateLimited.as_str(),
            "kith is busy writing; retry after the Retry-After delay, nothing of this request was stored",
        );
        error.retry_after = Some(RETRY_AFTER_SECS);
        error
    }

    /// 503 for a fault of ours: the cause and each error behind it go to the log, once, here;
    /// the client is told only that nothing was stored, never the database's words.
    pub fn internal(cause: impl std::error::Error + 'static) -> Self {
        tracing::error!(cause = %kith_store::error_chain(&cause), "request failed");
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "kith could not complete the request; nothing was stored, retry later",
        );
        error.retry_after = Some(RETRY_AFTER_SECS);
        error
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        let status = match rejection.code {
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::InvalidSignature => StatusCode::UNAUTHORIZED,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            body: ErrorBody {
                code: rejection.code.as_str().to_owned(),
                message: rejection.message,
                field: rejection.field,
                endpoint: None,
            },
            retry_after: None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} does not exist")),
            StoreError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            other => ApiError::internal(other),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Overloaded | SubmitError::Closed => ApiError::overloaded(),
            SubmitError::WorkspaceOverloaded => {
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    Code::RateLimited.as_str(),
                    "this workspace has its share of kith's ingest queue waiting; retry after the Retry-After \
                     delay, nothing of this request was stored",
                );
                error.retry_after = Some(RETRY_AFTER_SECS);
                error
            }
            SubmitError::Store(error) => ApiError::internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A real SQLite failure: the statement names a table that does not exist.
    fn sqlite_failure() -> StoreError {
        let connection = rusqlite::Connection::open_in_memory().expect("an in-memory database");
        connection.execute("SELECT secret_column FROM missing_table", []).expect_err("no such table").into()
    }

    #[test]
    fn a_database_failure_is_a_503_that_tells_the_client_nothing_of_the_database() {
        let error = ApiError::from(sqlite_failure());
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.retry_after, Some(RETRY_AFTER_SECS));
        assert_eq!(error.body.code, "unavailable");
        assert_eq!(error.body.field, None);
        let body = serde_json::to_string(&error.body).expect("a JSON body");
        for database_text in ["missing_table", "secret_column", "SELECT", "SQLite", "no such table"] {
            assert!(!body.contains(database_text), "{database_text} in {body}");
        }
    }

    #[test]
    fn a_failed_ingest_transaction_is_answered_like_any_database_failure() {
        let error = ApiError::from(SubmitError::Store(StoreError::Batch(std::sync::Arc::new(sqlite_failure()))));
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.retry_after, Some(RETRY_AFTER_SECS));
        assert!(!error.body.message.contains("missing_table"), "{}", error.body.message);
    }
}
