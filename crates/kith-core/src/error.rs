//! The refusal an event or a request gets: a stable code, a message a person can act on and
//! the field it is about. This is the flat `{code, message, field}` body of every 4xx.

use serde::Serialize;

/// Stable machine-readable reasons for refusing input, sent as `code` in the error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The body is not JSON, or not a JSON object/array of objects.
    InvalidJson,
    /// An identify carries no email and reaches no known contact.
    MissingEmail,
    /// The email found is not a plausible address.
    InvalidEmail,
    /// Neither `timestamp` nor `originalTimestamp` is present.
    MissingTimestamp,
    /// The timestamp is not RFC 3339 with an offset.
    InvalidTimestamp,
    /// The event has no `type` and the route implies none.
    MissingType,
    /// `type` is not one kith knows.
    UnknownType,
    /// A track event has no `event` name.
    MissingEvent,
    /// A group call has no `groupId`.
    MissingGroupId,
    /// An alias call has no usable `previousId`.
    MissingPreviousId,
    /// The event has neither a usable `userId`/`anonymousId` nor an email.
    NoUserAnonId,
    /// `traits` is present but not an object.
    TraitsNotObject,
    /// `properties` is present but not an object.
    PropertiesNotObject,
    /// `messageId` is not a string of at most 100 characters.
    InvalidMessageId,
    /// An event over 32 KB, a request over 500 KB, or a compressed body that inflates past it.
    PayloadTooLarge,
    /// More than 2,500 events in one batch.
    BatchTooLarge,
    /// A batch with no events.
    EmptyBatch,
    /// No key, or an unknown or revoked key.
    Unauthorized,
    /// A key of the wrong kind (a write key on the read API).
    Forbidden,
    /// The workspace requires `X-Signature` and it is missing or wrong.
    InvalidSignature,
    /// The node is shedding load; retry after the `Retry-After` delay.
    RateLimited,
    /// The email is suppressed: its contact was deleted with suppression.
    Suppressed,
}

impl Code {
    /// The code as it appears in JSON bodies and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidJson => "invalid_json",
            Code::MissingEmail => "missing_email",
            Code::InvalidEmail => "invalid_email",
            Code::MissingTimestamp => "missing_timestamp",
            Code::InvalidTimestamp => "invalid_timestamp",
            Code::MissingType => "missing_type",
            Code::UnknownType => "unknown_type",
            Code::MissingEvent => "missing_event",
            Code::MissingGroupId => "missing_group_id",
            Code::MissingPreviousId => "missing_previous_id",
            Code::NoUserAnonId => "no_user_anon_id",
            Code::TraitsNotObject => "traits_not_object",
            Code::PropertiesNotObject => "properties_not_object",
            Code::InvalidMessageId => "invalid_message_id",
            Code::PayloadTooLarge => "payload_too_large",
            Code::BatchTooLarge => "batch_too_large",
            Code::EmptyBatch => "empty_batch",
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::InvalidSignature => "invalid_signature",
            Code::RateLimited => "rate_limited",
            Code::Suppressed => "suppressed",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an event or a request was refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    /// Stable code.
    pub code: Code,
    /// What to change, for a person.
    pub message: String,
    /// The JSON field concerned, when there is one (dotted path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Rejection {
    /// A refusal about one field.
    pub fn new(code: Code, field: impl Into<Option<&'static str>>, message: impl Into<String>) -> Self {
        Rejection { code, message: message.into(), field: field.into().map(str::to_owned) }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}
