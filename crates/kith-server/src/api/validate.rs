//! `POST /api/validate`: how kith reads an event, without storing it.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use kith_core::envelope::{self, BodyShape, MAX_REQUEST_BYTES};
use kith_core::event::{parse_event, ParseContext, Parsed};
use kith_core::Rejection;
use kith_store::Activity;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::SecretKey;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// How kith reads one event.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Reading {
    /// Position in the body.
    pub index: usize,
    /// Whether kith would accept it.
    pub valid: bool,
    /// Refusal code.
    pub code: Option<String>,
    /// Refusal message.
    pub message: Option<String>,
    /// Field concerned.
    pub field: Option<String>,
    /// Kept away by the `integrations` object: acknowledged, not stored.
    pub filtered: bool,
    /// Segment call type.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// messageId (given or derived).
    pub message_id: Option<String>,
    /// The normalised email it names.
    pub email: Option<String>,
    /// Usable userId.
    pub user_id: Option<String>,
    /// Usable anonymousId.
    pub anonymous_id: Option<String>,
    /// The time kith records.
    pub time: Option<String>,
    /// The activity description.
    pub description: Option<String>,
    /// The contact it reaches now.
    pub contact_id: Option<i64>,
    /// Whether it would create the contact.
    pub creates_contact: bool,
    /// Whether it would wait as pending for an identify.
    pub pending: bool,
    /// `added` (a new interaction), `merged` (a hit of the day's) or `none`.
    pub activity: Option<String>,
    /// The day (YYYY-MM-DD) in the workspace's time zone.
    pub day: Option<String>,
    /// Whether its messageId was already stored.
    pub duplicate: bool,
}

/// The readings of a body's events.
#[derive(Debug, Serialize, ToSchema)]
pub struct Validation {
    /// One per event.
    pub events: Vec<Reading>,
}

fn refused(index: usize, rejection: Rejection) -> Reading {
    Reading {
        index,
        code: Some(rejection.code.as_str().to_owned()),
        message: Some(rejection.message),
        field: rejection.field,
        ..Reading::default()
    }
}

/// Reads an event, a batch or an array of events the way ingest would, and says what storing
/// them would do, without storing anything.
#[utoipa::path(post, path = "/api/validate", tag = "ingest", request_body(content = Object, description = "Any ingest body"),
    responses((status = 200, body = Validation), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn validate(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Validation>> {
    let bytes = axum::body::to_bytes(body, MAX_REQUEST_BYTES + 1).await.map_err(|_| {
        ApiError::from(Rejection::new(kith_core::Code::PayloadTooLarge, None, "the body is over 500 KB"))
    })?;
    let bytes = crate::ingest::inflate(&headers, bytes)?;
    let envelope = envelope::split(&bytes, BodyShape::Batch)?;
    let workspace = super::workspace_of(&state, key.workspace_id).await?;
    let ctx = ParseContext::live(None, state.clock.now());
    let mut events = Vec::new();
    for (index, item) in envelope.items().enumerate() {
        let event = match parse_event(item, &ctx) {
            Err(rejection) => {
                events.push(refused(index, rejection));
                continue;
            }
            Ok(Parsed::Skipped) => {
                events.push(Reading { index, valid: true, filtered: true, ..Reading::default() });
                continue;
            }
            Ok(Parsed::Event(event)) => *event,
        };
        let mut reading = Reading {
            index,
            valid: true,
            event_type: Some(event.kind.event_type().as_str().to_owned()),
            message_id: Some(event.message_id.clone()),
            email: event.email.clone(),
            user_id: event.user_id.clone(),
            anonymous_id: event.anonymous_id.clone(),
            time: Some(event.time.to_string()),
            description: event.description.clone(),
            ..Reading::default()
        };
        let preview = state.store.preview(workspace.id, event).await?;
        if let Some(rejection) = preview.rejection {
            let mut refusal = refused(index, rejection);
            refusal.event_type = reading.event_type;
            events.push(refusal);
            continue;
        }
        reading.contact_id = preview.contact_id;
        reading.creates_contact = preview.creates_contact;
        reading.pending = preview.pending;
        reading.duplicate = preview.duplicate;
        reading.activity = Some(
            match preview.activity {
                Activity::Added => "added",
                Activity::Merged => "merged",
                Activity::None => "none",
            }
            .to_owned(),
        );
        reading.day = preview.day.map(|day| kith_core::time::date_of_day_key(day).to_string());
        events.push(reading);
    }
    Ok(Json(Validation { events }))
}
