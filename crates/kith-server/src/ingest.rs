//! The ingest routes: Segment's HTTP API and the destination endpoint.
//!
//! A request is read whatever its Content-Type says, inflated if it is gzip (by header or by
//! magic bytes, never past the size limit), authenticated, checked against the workspace's
//! signing secret, split into events, each event read by `kith_core`, and the valid ones go
//! to the ingest pipeline. The answer is sent after the commit.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use kith_core::envelope::{self, BodyShape, Envelope, MAX_REQUEST_BYTES};
use kith_core::event::{parse_event, EventType, ParseContext, Parsed};
use kith_core::{Code, Rejection};
use kith_store::{ApiKey, Incoming, Outcome};
use serde::Serialize;
use serde_json::value::RawValue;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::auth::Signing;
use crate::debugger_feed::{self, DebugEntry};
use crate::error::ApiError;
use crate::AppState;

/// How long browsers may cache a preflight answer (Chromium caps it at two hours).
const PREFLIGHT_MAX_AGE_SECS: u64 = 7200;

/// What a route expects.
#[derive(Debug, Clone, Copy)]
enum RouteKind {
    /// One event whose type the path implies.
    Single(EventType),
    /// A Segment batch.
    Batch,
    /// The destination endpoint: anything.
    Events,
}

/// The ingest routes with their CORS policy.
pub fn routes() -> Router<AppState> {
    let single = [
        (EventType::Identify, ["/v1/identify", "/v1/i"]),
        (EventType::Track, ["/v1/track", "/v1/t"]),
        (EventType::Page, ["/v1/page", "/v1/p"]),
        (EventType::Screen, ["/v1/screen", "/v1/s"]),
        (EventType::Group, ["/v1/group", "/v1/g"]),
        (EventType::Alias, ["/v1/alias", "/v1/a"]),
    ];
    let mut router = Router::new();
    for (event_type, paths) in single {
        for path in paths {
            router = router.route(
                path,
                post(move |state: State<AppState>, headers: HeaderMap, body: Body| {
                    ingest(state, headers, body, RouteKind::Single(event_type))
                }),
            );
        }
    }
    for path in ["/v1/batch", "/v1/import", "/v1/b"] {
        router = router.route(
            path,
            post(|state: State<AppState>, headers: HeaderMap, body: Body| {
                ingest(state, headers, body, RouteKind::Batch)
            }),
        );
    }
    router
        .route(
            "/v1/events",
            post(|state: State<AppState>, headers: HeaderMap, body: Body| {
                ingest(state, headers, body, RouteKind::Events)
            }),
        )
        .route("/v1/m", post(telemetry))
        .layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::mirror_request())
                .allow_methods([Method::POST, Method::OPTIONS])
                .allow_headers(AllowHeaders::mirror_request())
                .max_age(std::time::Duration::from_secs(PREFLIGHT_MAX_AGE_SECS)),
        )
}

/// analytics-next's telemetry: acknowledged, not stored, no key needed.
async fn telemetry() -> Json<serde_json::Value> {
    Json(serde_json::json!({"success": true}))
}

/// One refused item of a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemRejection {
    /// Position in the batch.
    pub index: usize,
    /// Stable code.
    pub code: String,
    /// What to change.
    pub message: String,
    /// The field concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A refused item before it is answered.
struct Refused {
    index: usize,
    rejection: Rejection,
}

impl From<Refused> for ItemRejection {
    fn from(refused: Refused) -> Self {
        ItemRejection {
            index: refused.index,
            code: refused.rejection.code.as_str().to_owned(),
            message: refused.rejection.message,
            field: refused.rejection.field,
        }
    }
}

/// The answer to a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchAnswer {
    /// Whether any event was accepted.
    pub success: bool,
    /// The code of the first rejection, when every event was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// A summary, when every event was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Events stored or acknowledged (duplicates and filtered events included).
    pub accepted: usize,
    /// Events refused, by index.
    pub rejected: Vec<ItemRejection>,
}

async fn ingest(State(state): State<AppState>, headers: HeaderMap, body: Body, route: RouteKind) -> Response {
    let received_at = state.clock.now();
    match handle(&state, &headers, body, route, received_at).await {
        Ok(response) => response,
        Err(failure) => {
            state.metrics.request_refused(&failure.error.body.code);
            if let Some(workspace) = failure.workspace {
                state.debugger.publish(DebugEntry::refused(workspace, received_at, &failure.error));
            }
            failure.error.into_response()
        }
    }
}

/// An error answer and, once the key is known, the workspace it concerns (for the debugger).
struct Failure {
    error: ApiError,
    workspace: Option<i64>,
}

impl<E: Into<ApiError>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure { error: error.into(), workspace: None }
    }
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    route: RouteKind,
    received_at: Timestamp,
) -> Result<Response, Failure> {
    // A key of another region is refused before the body is read: this node keeps nothing of
    // that region's, not even what the request would have said.
    let header_key = crate::auth::key_from_headers(headers);
    if let Some(text) = &header_key {
        state.regions.check_key(text)?;
    }
    let compressed = axum::body::to_bytes(body, MAX_REQUEST_BYTES + 1).await.map_err(|error| {
        if crate::conn::is_body_timeout(&error) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the body did not arrive in time; send it whole, at once",
            )
        } else {
            too_large_request().into()
        }
    })?;
    let bytes = inflate(headers, compressed)?;

    // The key is checked before any work that grows with the events: from the header, else
    // from one pass over the body that only checks its syntax and builds nothing.
    let key_text = match header_key {
        Some(text) => text,
        None => {
            let text = envelope::write_key(&bytes)?.ok_or_else(|| {
                ApiError::unauthorized(
                    "no key: send `Authorization: Basic base64(writeKey:)` or put `writeKey` in the body",
                )
            })?;
            // A key in the body is known only now; still no event has been read.
            state.regions.check_key(&text)?;
            text
        }
    };
    let key = authenticate(state, &key_text).await?;
    let workspace = key.workspace_id;
    let with_workspace = |error: ApiError| Failure { error, workspace: Some(workspace) };
    let signing = state.auth.signing(state.store.as_ref(), workspace).await.map_err(with_workspace)?;

    // Reading up to 2,500 events is CPU work: it runs on the blocking pool so a few large
    // bodies cannot hold up the workers that answer every other request.
    let reading = {
        let (state, headers) = (state.clone(), headers.clone());
        tokio::task::spawn_blocking(move || read_body(&state, &headers, &bytes, route, received_at, workspace, signing))
            .await
            .map_err(|error| with_workspace(ApiError::internal(error)))?
            .map_err(with_workspace)?
    };
    let Reading { is_batch, total, incoming, positions, mut rejected } = reading;

    let readings: Vec<debugger_feed::Reading> = if state.debugger.is_watched() {
        incoming.iter().map(debugger_feed::Reading::of).collect()
    } else {
        Vec::new()
    };
    let outcomes = if incoming.is_empty() {
        Vec::new()
    } else {
        let submitted = std::time::Instant::now();
        let outcomes = state.pipeline.submit(incoming).await.map_err(|e| with_workspace(e.into()))?;
        state.metrics.events_written(submitted.elapsed());
        outcomes
    };
    // An event the store accepted into its log is counted and shown by the projection
    // once it is applied (see `App::new`), with what it did, on the node applying the log.
    // Another node (PostgreSQL) shows it in its own debugger as accepted, so that whichever
    // node the debugger is open on shows the events sent to that node.
    for (position, outcome) in positions.iter().zip(&outcomes).filter(|(_, outcome)| **outcome != Outcome::Accepted) {
        state.metrics.event_outcome(outcome);
        if let Outcome::Rejected(rejection) = outcome {
            rejected.push(Refused { index: *position, rejection: rejection.clone() });
        }
    }
    let applied_here = state.store.log_position().is_none_or(|position| position.leases > 0);
    for (reading, outcome) in readings.into_iter().zip(&outcomes) {
        if *outcome != Outcome::Accepted || !applied_here {
            state.debugger.publish(DebugEntry::read(workspace, received_at, reading, outcome));
        }
    }
    rejected.sort_by_key(|item| item.index);

    if !is_batch {
        // The debugger already has this refusal (published while reading); the error goes
        // without its workspace so it is not shown twice.
        return match rejected.pop() {
            Some(item) => Err(ApiError::from(item.rejection).into()),
            None => Ok(Json(serde_json::json!({"success": true})).into_response()),
        };
    }
    let accepted = total - rejected.len();
    let rejected = rejected.into_iter().map(ItemRejection::from).collect();
    let mut answer = BatchAnswer { success: accepted > 0, code: None, message: None, accepted, rejected };
    if accepted == 0 {
        let first = &answer.rejected[0];
        answer.code = Some(first.code.clone());
        answer.message = Some(format!("every event of the batch was refused; the first: {}", first.message));
        return Ok((StatusCode::BAD_REQUEST, Json(answer)).into_response());
    }
    Ok(Json(answer).into_response())
}

/// An authenticated body read into events.
struct Reading {
    is_batch: bool,
    total: usize,
    /// The valid events, and the position of each in the body.
    incoming: Vec<Incoming>,
    positions: Vec<usize>,
    /// The events refused while reading.
    rejected: Vec<Refused>,
}

/// Checks the signature and reads every event of an authenticated body (blocking).
fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    bytes: &[u8],
    route: RouteKind,
    received_at: Timestamp,
    workspace: i64,
    signing: Option<Signing>,
) -> Result<Reading, ApiError> {
    let (shape, route_type) = match route {
        RouteKind::Single(event_type) => (BodyShape::Single, Some(event_type)),
        RouteKind::Batch | RouteKind::Events => (BodyShape::Batch, None),
    };
    let envelope = envelope::split(bytes, shape)?;
    if let Some(signing) = signing {
        if signing.refuse_array_bodies && envelope.is_array {
            return Err(Rejection::new(
                Code::InvalidSignature,
                None,
                "this workspace refuses JSON-array bodies: their signature covers only the first event; \
                 send one event per request or a {\"batch\": [...]} object, which is signed whole",
            )
            .into());
        }
        verify_signature(headers, bytes, &envelope, &signing.secret)?;
    }
    let ctx = ParseContext::live(route_type, received_at);
    let is_batch = envelope.is_batch;
    let total = envelope.len();
    let mut reading =
        Reading { is_batch, total, incoming: Vec::with_capacity(total), positions: Vec::new(), rejected: Vec::new() };
    for (index, item) in envelope.items().enumerate() {
        match parse_event(item, &ctx) {
            Ok(Parsed::Event(event)) => {
                reading.positions.push(index);
                reading.incoming.push(Incoming::new(workspace, *event));
            }
            Ok(Parsed::Skipped) => state.metrics.event_skipped(),
            Err(rejection) => {
                state.metrics.event_rejected(rejection.code);
                state.debugger.publish(DebugEntry::rejected(workspace, received_at, &rejection));
                reading.rejected.push(Refused { index, rejection });
            }
        }
    }
    Ok(reading)
}

async fn authenticate(state: &AppState, text: &str) -> Result<ApiKey, ApiError> {
    state
        .auth
        .key(state.store.as_ref(), text)
        .await?
        .ok_or_else(|| ApiError::unauthorized("this key is unknown or revoked; create one with `kith keys create`"))
}

fn too_large_request() -> Rejection {
    Rejection::new(
        Code::PayloadTooLarge,
        None,
        format!("the request is over {} KB; send smaller batches", MAX_REQUEST_BYTES / 1024),
    )
}

/// The body as JSON bytes: gzip (by `Content-Encoding` or magic bytes) is inflated, never past
/// the request limit, so a small bomb is refused after reading at most the limit.
pub(crate) fn inflate(headers: &HeaderMap, bytes: Bytes) -> Result<Bytes, Rejection> {
    let declared = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("gzip"));
    let magic = bytes.starts_with(&[0x1f, 0x8b]);
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(too_large_request());
    }
    if !declared && !magic {
        return Ok(bytes);
    }
    let mut inflated = Vec::with_capacity(bytes.len() * 4);
    let mut decoder = flate2::read::GzDecoder::new(&bytes[..]).take(MAX_REQUEST_BYTES as u64 + 1);
    decoder
        .read_to_end(&mut inflated)
        .map_err(|error| Rejection::new(Code::InvalidJson, None, format!("the body is not valid gzip: {error}")))?;
    if inflated.len() > MAX_REQUEST_BYTES {
        return Err(Rejection::new(
            Code::PayloadTooLarge,
            None,
            format!("the body inflates past {} KB; send smaller batches", MAX_REQUEST_BYTES / 1024),
        ));
    }
    Ok(Bytes::from(inflated))
}

/// Segment's webhook signature: `X-Signature: hex(HMAC-SHA1(secret, body))`; for a JSON array
/// (Segment's batching) over the first element's bytes as they stand in the body.
fn verify_signature(headers: &HeaderMap, body: &[u8], envelope: &Envelope, secret: &str) -> Result<(), Rejection> {
    let refuse = |message: &str| Rejection::new(Code::InvalidSignature, None, message.to_owned());
    let signature = headers
        .get("x-signature")
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| refuse("this workspace requires `X-Signature: hex(HMAC-SHA1(signing secret, body))`"))?;
    let signature = hex::decode(signature.trim()).map_err(|_| refuse("`X-Signature` must be hex"))?;
    let signed: &[u8] = if envelope.is_array {
        let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|_| refuse("the body is not a JSON array"))?;
        items.first().map_or(&[][..], |first| first.get().as_bytes())
    } else {
        body
    };
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).map_err(|_| refuse("bad signing secret"))?;
    mac.update(signed);
    mac.verify_slice(&signature).map_err(|_| refuse("`X-Signature` does not match the body; check the signing secret"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    #[test]
    fn gzip_is_detected_by_magic_bytes_and_bounded() {
        let body = br#"{"type":"track"}"#;
        assert_eq!(&inflate(&HeaderMap::new(), gzip(body)).unwrap()[..], body);
        assert_eq!(&inflate(&HeaderMap::new(), Bytes::from_static(body)).unwrap()[..], body);
        let bomb = gzip(&vec![b' '; 50 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        assert_eq!(inflate(&HeaderMap::new(), bomb).unwrap_err().code, Code::PayloadTooLarge);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert_eq!(inflate(&headers, Bytes::from_static(b"not gzip")).unwrap_err().code, Code::InvalidJson);
    }

    #[test]
    fn signatures_cover_the_body_or_the_first_array_element() {
        let sign = |bytes: &[u8]| {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"s3cret").unwrap();
            mac.update(bytes);
            hex::encode(mac.finalize().into_bytes())
        };
        let body = br#"{"type":"track"}"#;
        let envelope = envelope::split(body, BodyShape::Single).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-signature", sign(body).parse().unwrap());
        assert!(verify_signature(&headers, body, &envelope, "s3cret").is_ok());
        assert!(verify_signature(&headers, body, &envelope, "other").is_err());
        assert!(verify_signature(&HeaderMap::new(), body, &envelope, "s3cret").is_err());

        let array = br#"[ {"type": "track", "event":"A"} ,{"type":"page"}]"#;
        let envelope = envelope::split(array, BodyShape::Batch).unwrap();
        headers.insert("x-signature", sign(br#"{"type": "track", "event":"A"}"#).parse().unwrap());
        assert!(verify_signature(&headers, array, &envelope, "s3cret").is_ok());
    }
}
