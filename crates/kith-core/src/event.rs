//! Reading one Segment event: the Segment spec's call types, the Nat.app identify contract,
//! Engage (Personas) computations and the `integrations` object, turned into a typed [`Event`]
//! that nothing downstream needs to re-check.

use std::borrow::Cow;

use jiff::Timestamp;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::envelope::{Item, Shared, MAX_EVENT_BYTES};
use crate::error::{Code, Rejection};
use crate::identity::{normalize_email, usable_id};
use crate::json::{self, Kind, Object};
use crate::time::{event_time, parse_timestamp};

/// The description of an identify that names no url or event.
pub const STANDARD_DESCRIPTION: &str = "Active in your product";

/// The destination name kith answers to in the `integrations` object.
pub const DESTINATION_NAME: &str = "Kith";

/// The `context.library.name` of the track calls kith itself sends.
pub const KITH_LIBRARY: &str = "kith";

/// The Segment call types kith reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `identify`
    Identify,
    /// `track`
    Track,
    /// `page`
    Page,
    /// `screen`
    Screen,
    /// `group`
    Group,
    /// `alias`
    Alias,
    /// `delete`: a Segment user-deletion request forwarded by the Webhooks destination.
    Delete,
}

impl EventType {
    /// The name in the Segment spec.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Identify => "identify",
            EventType::Track => "track",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
            EventType::Delete => "delete",
        }
    }

    /// Parses a Segment type name, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        [
            EventType::Identify,
            EventType::Track,
            EventType::Page,
            EventType::Screen,
            EventType::Group,
            EventType::Alias,
            EventType::Delete,
        ]
        .into_iter()
        .find(|kind| name.trim().eq_ignore_ascii_case(kind.as_str()))
    }
}

/// What an event does, with the fields its type requires.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// Creates or updates the contact for an email; merges traits (`null` removes one).
    Identify {
        /// Traits to merge (from `traits`, else `context.traits`).
        traits: Map<String, Value>,
        /// Traits that an Engage computation produced (`computation_class: trait`).
        computed: Vec<String>,
    },
    /// A named action.
    Track {
        /// The event name, e.g. `Signed Up`.
        name: String,
    },
    /// A web page view.
    Page {
        /// The page name, if any.
        name: Option<String>,
        /// The url, from `properties.url` or `context.page.url`.
        url: Option<String>,
    },
    /// A mobile screen view.
    Screen {
        /// The screen name, if any.
        name: Option<String>,
    },
    /// Links the contact to an account and merges the account's traits.
    Group {
        /// The account id.
        group_id: String,
        /// Account traits to merge.
        traits: Map<String, Value>,
    },
    /// Adds `previous_id` as an identity of the contact `user_id` belongs to.
    Alias {
        /// The id to attach.
        previous_id: String,
    },
    /// Erases the contact the user id belongs to.
    Delete,
}

impl EventKind {
    /// The Segment call type.
    pub fn event_type(&self) -> EventType {
        match self {
            EventKind::Identify { .. } => EventType::Identify,
            EventKind::Track { .. } => EventType::Track,
            EventKind::Page { .. } => EventType::Page,
            EventKind::Screen { .. } => EventType::Screen,
            EventKind::Group { .. } => EventType::Group,
            EventKind::Alias { .. } => EventType::Alias,
            EventKind::Delete => EventType::Delete,
        }
    }

    /// The name shown in the event stream: the track event, page or screen name, group id.
    pub fn name(&self) -> Option<&str> {
        match self {
            EventKind::Track { name } => Some(name),
            EventKind::Page { name, .. } | EventKind::Screen { name } => name.as_deref(),
            EventKind::Group { group_id, .. } => Some(group_id),
            EventKind::Alias { previous_id } => Some(previous_id),
            EventKind::Identify { .. } | EventKind::Delete => None,
        }
    }
}

/// An Engage audience membership change carried by an event: an identify whose `computation_class`
/// is `audience`, or an `Audience Entered`/`Audience Exited` track.
#[derive(Debug, Clone, PartialEq)]
pub struct AudienceChange {
    /// The audience's `computation_key`, e.g. `order_completed_last_30days`.
    pub key: String,
    /// Engage's computation id, when given.
    pub computation_id: Option<String>,
    /// Engage's space id, when given.
    pub space_id: Option<String>,
    /// `true` entered, `false` exited.
    pub entered: bool,
}

/// A validated event, ready for storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Idempotency key: the event's `messageId`, or one derived from its content.
    pub message_id: String,
    /// The call and its type-specific fields.
    pub kind: EventKind,
    /// A usable `userId` (junk ids dropped).
    pub user_id: Option<String>,
    /// A usable `anonymousId` (junk ids dropped).
    pub anonymous_id: Option<String>,
    /// The normalised email the event names, if any.
    pub email: Option<String>,
    /// When it happened, after the skew and future rules.
    pub time: Timestamp,
    /// When kith received it.
    pub received_at: Timestamp,
    /// The activity interaction it adds, if any: `None` for group, alias, delete and Engage syncs.
    pub description: Option<String>,
    /// An Engage audience change carried by the event.
    pub audience: Option<AudienceChange>,
    /// Sent by a kith (`context.library.name` is `kith`): stored, but never counted as the
    /// person's activity nor acted on again, so kith's own reports cannot loop back through
    /// Segment into nudges and reports.
    pub from_kith: bool,
    /// The event as stored in the contact's event stream: compact JSON without the write key.
    pub payload: String,
}

/// What is known about a request besides the event itself.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    /// The type the route implies (`/v1/track` → track) when the body names none.
    pub route_type: Option<EventType>,
    /// kith's receive time.
    pub now: Timestamp,
    /// Importing history (`kith import`): every event keeps its own time, as if relayed by
    /// Segment, instead of having a device clock corrected against `now`.
    pub history: bool,
}

impl ParseContext {
    /// Events arriving now, over HTTP.
    pub fn live(route_type: Option<EventType>, now: Timestamp) -> Self {
        ParseContext { route_type, now, history: false }
    }
}

/// The result of reading one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A valid event to store.
    Event(Box<Event>),
    /// The `integrations` object turns kith off for this event: acknowledge, store nothing.
    Skipped,
}

/// Reads one event of a body.
pub fn parse_event(item: Item<'_>, ctx: &ParseContext) -> Result<Parsed, Rejection> {
    let Some(event) = Object::parse(item.raw) else {
        return Err(Rejection::new(
            Code::InvalidJson,
            None,
            format!("each event must be a JSON object, got {}", json::kind(item.raw).word()),
        ));
    };
    let view = View::new(event, item.shared);
    if !integration_enabled(view.integrations.as_ref()) {
        return Ok(Parsed::Skipped);
    }
    let payload = stored_payload(&view.event, item.shared);
    if payload.len() > MAX_EVENT_BYTES {
        return Err(Rejection::new(
            Code::PayloadTooLarge,
            None,
            format!("the event is {} bytes; Segment's limit is {} bytes per event", payload.len(), MAX_EVENT_BYTES),
        ));
    }
    read_event(&view, payload, ctx).map(|event| Parsed::Event(Box::new(event)))
}

/// Reads one event held as a `serde_json::Value` (the track calls kith sends itself, tests).
pub fn parse_value(value: &Value, ctx: &ParseContext) -> Result<Parsed, Rejection> {
    let text = value.to_string();
    let raw: &RawValue = serde_json::from_str(&text).map_err(crate::envelope::json_error)?;
    parse_event(Item::alone(raw), ctx)
}

/// An event's fields, with the batch's `context` and `integrations` under its own.
struct View<'a> {
    event: Object<'a>,
    context: Option<Inherited<'a>>,
    integrations: Option<Inherited<'a>>,
    sent_at: Option<&'a RawValue>,
}

impl<'a> View<'a> {
    fn new(event: Object<'a>, shared: Shared<'a>) -> Self {
        let context = Inherited::new(event.raw("context"), shared.context);
        let integrations = Inherited::new(event.raw("integrations"), shared.integrations);
        let sent_at = event.get("sentAt").or(shared.sent_at);
        View { event, context, integrations, sent_at }
    }

    fn context_object(&self, key: &str) -> Option<Object<'a>> {
        self.context.as_ref().and_then(|context| context.raw(key)).and_then(Object::parse)
    }
}

/// An object field an event may inherit from its batch: the event's own keys win, the
/// batch's fill in. `None` when the event's own value is not an object (nor `null`), or when
/// neither has the field.
struct Inherited<'a> {
    own: Option<Object<'a>>,
    shared: Option<Object<'a>>,
}

impl<'a> Inherited<'a> {
    fn new(own: Option<&'a RawValue>, shared: Option<&'a RawValue>) -> Option<Self> {
        let own = match own {
            Some(raw) if json::kind(raw) == Kind::Object => Object::parse(raw),
            Some(raw) if json::kind(raw) != Kind::Null => return None,
            _ => None,
        };
        let shared = shared.and_then(Object::parse);
        (own.is_some() || shared.is_some()).then_some(Inherited { own, shared })
    }

    fn raw(&self, key: &str) -> Option<&'a RawValue> {
        match &self.own {
            Some(own) if own.contains(key) => own.raw(key),
            _ => self.shared.as_ref().and_then(|shared| shared.raw(key)),
        }
    }
}

/// The event as stored in the contact's event stream: compact JSON without the write key and
/// Segment's `_metadata`, with what the batch shares merged in. `envelope::split` made sure
/// it reads back as a `Value`.
fn stored_payload(event: &Object<'_>, shared: Shared<'_>) -> String {
    let mut out = String::with_capacity(512);
    out.push('{');
    let field = |out: &mut String, key: &str| {
        if out.len() > 1 {
            out.push(',');
        }
        json::write_key(key, out);
        out.push(':');
    };
    for (key, value) in event.fields() {
        let inherited = match key {
            "writeKey" | "_metadata" => continue,
            "context" => shared.context,
            "integrations" => shared.integrations,
            "sentAt" => shared.sent_at.filter(|_| json::kind(value) == Kind::Null),
            _ => None,
        };
        field(&mut out, key);
        match (inherited, json::kind(value)) {
            (Some(inherited), Kind::Null) => json::write_compact(inherited, &mut out),
            (Some(inherited), Kind::Object) => write_merged(value, inherited, &mut out),
            _ => json::write_compact(value, &mut out),
        }
    }
    for (key, inherited) in
        [("context", shared.context), ("integrations", shared.integrations), ("sentAt", shared.sent_at)]
    {
        if let Some(inherited) = inherited.filter(|_| !event.contains(key)) {
            field(&mut out, key);
            json::write_compact(inherited, &mut out);
        }
    }
    out.push('}');
    out
}

/// An object with the keys of `shared` it lacks added after its own.
fn write_merged(own: &RawValue, shared: &RawValue, out: &mut String) {
    let (Some(own), Some(shared)) = (Object::parse(own), Object::parse(shared)) else {
        return json::write_compact(own, out);
    };
    out.push('{');
    let start = out.len();
    let own_keys = own.keys();
    let shared_fields = shared.fields().into_iter().filter(|(key, _)| !own_keys.contains(key));
    for (key, value) in own.fields().into_iter().chain(shared_fields) {
        if out.len() > start {
            out.push(',');
        }
        json::write_key(key, out);
        out.push(':');
        json::write_compact(value, out);
    }
    out.push('}');
}

fn read_event(view: &View<'_>, payload: String, ctx: &ParseContext) -> Result<Event, Rejection> {
    let event = &view.event;
    let event_type = match event.get("type") {
        None => ctx.route_type.ok_or_else(|| {
            Rejection::new(
                Code::MissingType,
                "type",
                "the event has no `type`; use identify, track, page, screen, group or alias",
            )
        })?,
        Some(raw) => match json::string(raw) {
            Some(name) => EventType::parse(&name).ok_or_else(|| {
                Rejection::new(
                    Code::UnknownType,
                    "type",
                    format!("unknown type {name:?}; use identify, track, page, screen, group, alias or delete"),
                )
            })?,
            None => {
                return Err(Rejection::new(
                    Code::UnknownType,
                    "type",
                    format!("`type` must be a string such as \"identify\", got {}", json::kind(raw).word()),
                ))
            }
        },
    };

    let message_id = match event.get("messageId") {
        None => derived_message_id(&payload),
        Some(value) => match id_string(value) {
            Some(id) if !id.trim().is_empty() && id.chars().count() <= 100 => id,
            _ => {
                return Err(Rejection::new(
                    Code::InvalidMessageId,
                    "messageId",
                    "`messageId` must be a non-empty string of at most 100 characters",
                ))
            }
        },
    };

    let traits = object_field(event, "traits", Code::TraitsNotObject)?;
    let properties = object_field(event, "properties", Code::PropertiesNotObject)?;
    let context_traits = view.context_object("traits");
    let personas = view.context_object("personas");

    let user_id = event.get("userId").and_then(id_string);
    let anonymous_id = event.get("anonymousId").and_then(id_string);
    let usable_user_id = user_id.as_deref().and_then(usable_id).map(str::to_owned);
    let usable_anonymous_id = anonymous_id.as_deref().and_then(usable_id).map(str::to_owned);

    let kind = match event_type {
        EventType::Identify => {
            let mut merged = traits.as_ref().or(context_traits.as_ref()).map(Object::to_map).unwrap_or_default();
            let mut computed = Vec::new();
            if let Some((class, key)) = personas_computation(personas.as_ref()) {
                match class.as_ref() {
                    "audience" => {
                        merged.remove(key.as_ref());
                    }
                    "trait" if merged.contains_key(key.as_ref()) => computed.push(key.into_owned()),
                    _ => {}
                }
            }
            EventKind::Identify { traits: merged, computed }
        }
        EventType::Track => EventKind::Track {
            name: non_empty_string(event.raw("event")).ok_or_else(|| {
                Rejection::new(Code::MissingEvent, "event", "a track call needs an `event` name, e.g. \"Signed Up\"")
            })?,
        },
        EventType::Page => EventKind::Page {
            name: non_empty_string(event.raw("name")),
            url: properties.as_ref().and_then(|p| non_empty_string(p.raw("url"))).or_else(|| context_page_url(view)),
        },
        EventType::Screen => EventKind::Screen { name: non_empty_string(event.raw("name")) },
        EventType::Group => EventKind::Group {
            group_id: event.get("groupId").and_then(id_string).filter(|id| !id.trim().is_empty()).ok_or_else(|| {
                Rejection::new(Code::MissingGroupId, "groupId", "a group call needs a `groupId`, the account's id")
            })?,
            traits: traits.as_ref().map(Object::to_map).unwrap_or_default(),
        },
        EventType::Alias => {
            let previous_id = event.get("previousId").and_then(id_string).ok_or_else(|| {
                Rejection::new(
                    Code::MissingPreviousId,
                    "previousId",
                    "an alias call needs a `previousId`, the id to attach to `userId`",
                )
            })?;
            let previous_id = usable_id(&previous_id).map(str::to_owned).ok_or_else(|| {
                Rejection::new(
                    Code::MissingPreviousId,
                    "previousId",
                    format!("`previousId` {previous_id:?} is a placeholder, not an id; send the real previous id"),
                )
            })?;
            if usable_user_id.is_none() {
                return Err(Rejection::new(
                    Code::NoUserAnonId,
                    "userId",
                    "an alias call needs the `userId` that `previousId` should join",
                ));
            }
            EventKind::Alias { previous_id }
        }
        EventType::Delete => {
            if usable_user_id.is_none() {
                return Err(Rejection::new(
                    Code::NoUserAnonId,
                    "userId",
                    "a delete request needs the `userId` to erase",
                ));
            }
            EventKind::Delete
        }
    };

    let email = match event_type {
        EventType::Identify => identify_email(event, traits.as_ref(), context_traits.as_ref())?,
        _ => [context_traits.as_ref(), properties.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|object| object.string("email").and_then(|email| normalize_email(&email))),
    };

    if usable_user_id.is_none() && usable_anonymous_id.is_none() && email.is_none() {
        return Err(match event_type {
            EventType::Identify => Rejection::new(
                Code::MissingEmail,
                "traits.email",
                "an identify needs an email in `traits.email`, `context.traits.email` or `email`",
            ),
            _ => {
                let junk = user_id.or(anonymous_id).filter(|id| usable_id(id).is_none());
                let message = match junk {
                    Some(id) => {
                        format!("{id:?} is a placeholder, not a user id; send the real `userId` or `anonymousId`")
                    }
                    None => {
                        "the event needs a `userId`, an `anonymousId` or an email in `context.traits.email`".to_owned()
                    }
                };
                Rejection::new(Code::NoUserAnonId, "userId", message)
            }
        });
    }

    let time = read_time(view, ctx.now, ctx.history)?;
    let audience = audience_change(event_type, personas.as_ref(), traits.as_ref(), properties.as_ref(), event);
    let is_engage_sync = personas.is_some();
    let from_kith = view
        .context_object("library")
        .and_then(|library| library.string("name"))
        .is_some_and(|name| name == KITH_LIBRARY);
    let description = if is_engage_sync || from_kith { None } else { describe(&kind, view, properties.as_ref()) };

    Ok(Event {
        message_id,
        kind,
        user_id: usable_user_id,
        anonymous_id: usable_anonymous_id,
        email,
        time,
        received_at: ctx.now,
        description,
        audience,
        from_kith,
        payload,
    })
}

/// Whether the `integrations` object lets the event reach kith: not with `"Kith": false`, nor with
/// `"All": false` unless `Kith` is turned on.
fn integration_enabled(integrations: Option<&Inherited<'_>>) -> bool {
    let Some(integrations) = integrations else { return true };
    let Some(kith) = integrations.raw(DESTINATION_NAME) else {
        return integrations.raw("All").is_none_or(|all| all.get() != "false");
    };
    match json::kind(kith) {
        Kind::Bool => kith.get() == "true",
        Kind::Object => true,
        _ => integrations.raw("All").is_none_or(|all| all.get() != "false"),
    }
}

/// The email of an identify: `traits.email`, `context.traits.email`, then top-level `email`.
fn identify_email(
    event: &Object<'_>,
    traits: Option<&Object<'_>>,
    context_traits: Option<&Object<'_>>,
) -> Result<Option<String>, Rejection> {
    let candidates = [
        (traits.and_then(|t| t.get("email")), "traits.email"),
        (context_traits.and_then(|t| t.get("email")), "context.traits.email"),
        (event.get("email"), "email"),
    ];
    let Some((value, field)) = candidates.into_iter().find_map(|(value, field)| value.map(|v| (v, field))) else {
        return Ok(None);
    };
    let text = json::string(value);
    let shown = text.as_deref().map_or_else(|| compact(value), str::to_owned);
    text.and_then(|text| normalize_email(&text)).map(Some).ok_or_else(|| Rejection {
        code: Code::InvalidEmail,
        message: format!("{shown:?} is not an email address; send one like name@example.com"),
        field: Some(field.to_owned()),
    })
}

/// The activity description (an identify's event or url, `Visited <url>`, `Viewed <name>`, a
/// track's name); `None` for calls that are not activity.
fn describe(kind: &EventKind, view: &View<'_>, properties: Option<&Object<'_>>) -> Option<String> {
    let event = &view.event;
    match kind {
        EventKind::Identify { .. } => Some(
            non_empty_string(event.raw("event"))
                .or_else(|| event.object("page").and_then(|page| non_empty_string(page.raw("url"))))
                .or_else(|| context_page_url(view))
                .or_else(|| properties.and_then(|p| non_empty_string(p.raw("url"))))
                .or_else(|| non_empty_string(event.raw("url")))
                .unwrap_or_else(|| STANDARD_DESCRIPTION.to_owned()),
        ),
        EventKind::Track { name } => Some(name.clone()),
        EventKind::Page { name, url } => Some(match (url, name) {
            (Some(url), _) => format!("Visited {url}"),
            (None, Some(name)) => format!("Visited {name}"),
            (None, None) => "Visited a page".to_owned(),
        }),
        EventKind::Screen { name } => Some(match name {
            Some(name) => format!("Viewed {name}"),
            None => "Viewed a screen".to_owned(),
        }),
        EventKind::Group { .. } | EventKind::Alias { .. } | EventKind::Delete => None,
    }
}

fn read_time(view: &View<'_>, now: Timestamp, history: bool) -> Result<Timestamp, Rejection> {
    let event = &view.event;
    let (raw, field) = match (event.get("timestamp"), event.get("originalTimestamp")) {
        (Some(raw), _) => (raw, "timestamp"),
        (None, Some(raw)) => (raw, "originalTimestamp"),
        (None, None) => {
            return Err(Rejection::new(
                Code::MissingTimestamp,
                "timestamp",
                "the event needs a `timestamp` (ISO-8601 with an offset, e.g. 2024-06-03T16:00:00Z)",
            ))
        }
    };
    let timestamp = json::string(raw).and_then(|text| parse_timestamp(&text)).ok_or_else(|| Rejection {
        code: Code::InvalidTimestamp,
        message: format!("{} is not an ISO-8601 time with an offset; send e.g. 2024-06-03T16:00:00Z", compact(raw)),
        field: Some(field.to_owned()),
    })?;
    // Segment's rule: a `timestamp` the sender set is used as given (imports, server
    // libraries); `originalTimestamp` is the device clock, corrected with `sentAt`.
    let sent_at = view
        .sent_at
        .and_then(json::string)
        .and_then(|text| parse_timestamp(&text))
        .filter(|_| field == "originalTimestamp");
    let relayed = history || event.get("receivedAt").is_some();
    Ok(event_time(timestamp, sent_at, relayed, now))
}

fn audience_change(
    event_type: EventType,
    personas: Option<&Object<'_>>,
    traits: Option<&Object<'_>>,
    properties: Option<&Object<'_>>,
    event: &Object<'_>,
) -> Option<AudienceChange> {
    let engage_field = |field: &str| personas.and_then(|p| non_empty_string(p.raw(field)));
    match event_type {
        EventType::Identify => {
            let (class, key) = personas_computation(personas)?;
            if class != "audience" {
                return None;
            }
            let entered = match traits?.raw(&key)?.get() {
                "true" => true,
                "false" => false,
                _ => return None,
            };
            Some(AudienceChange {
                key: key.into_owned(),
                computation_id: engage_field("computation_id"),
                space_id: engage_field("space_id"),
                entered,
            })
        }
        EventType::Track => {
            let entered = match event.string("event")?.as_ref() {
                "Audience Entered" => true,
                "Audience Exited" => false,
                _ => return None,
            };
            let key = properties
                .and_then(|p| non_empty_string(p.raw("audience_key")))
                .or_else(|| engage_field("computation_key"))?;
            Some(AudienceChange {
                key,
                computation_id: engage_field("computation_id"),
                space_id: engage_field("space_id"),
                entered,
            })
        }
        _ => None,
    }
}

fn personas_computation<'a>(personas: Option<&Object<'a>>) -> Option<(Cow<'a, str>, Cow<'a, str>)> {
    let personas = personas?;
    Some((personas.string("computation_class")?, personas.string("computation_key")?))
}

fn context_page_url(view: &View<'_>) -> Option<String> {
    view.context_object("page").and_then(|page| non_empty_string(page.raw("url")))
}

/// An object-valued field: absent or `null` is fine, anything else but an object is refused.
fn object_field<'a>(event: &Object<'a>, field: &'static str, code: Code) -> Result<Option<Object<'a>>, Rejection> {
    match event.get(field) {
        None => Ok(None),
        Some(raw) => Object::parse(raw).map(Some).ok_or_else(|| {
            Rejection::new(
                code,
                field,
                format!("`{field}` must be a JSON object of name/value pairs, got {}", json::kind(raw).word()),
            )
        }),
    }
}

/// Ids may be strings or numbers; anything else is no id.
fn id_string(value: &RawValue) -> Option<String> {
    match json::kind(value) {
        Kind::String => json::string(value).map(Cow::into_owned),
        Kind::Number => Some(json::to_value(value).to_string()),
        _ => None,
    }
}

fn non_empty_string(value: Option<&RawValue>) -> Option<String> {
    let text = json::string(value?)?;
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// A value as compact JSON, for messages.
fn compact(value: &RawValue) -> String {
    let mut out = String::new();
    json::write_compact(value, &mut out);
    out
}

/// Events without a messageId get one derived from their content, so that a client retrying
/// the very same body does not store it twice.
fn derived_message_id(payload: &str) -> String {
    let digest = Sha256::digest(payload.as_bytes());
    format!("kith-{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(route_type: Option<EventType>) -> ParseContext {
        ParseContext::live(route_type, "2026-01-01T00:00:00Z".parse().unwrap())
    }

    fn parse(value: Value) -> Result<Event, Rejection> {
        match parse_value(&value, &ctx(None))? {
            Parsed::Event(event) => Ok(*event),
            Parsed::Skipped => panic!("skipped"),
        }
    }

    fn code(value: Value) -> Code {
        parse(value).unwrap_err().code
    }

    #[test]
    fn nat_recommended_format() {
        let event = parse(json!({"type":"identify","timestamp":"2020-05-31T17:55:47.263Z",
            "traits":{"email":"peter@example.com"},"page":{"url":"https://example.com"}}))
        .unwrap();
        assert_eq!(event.email.as_deref(), Some("peter@example.com"));
        assert_eq!(event.description.as_deref(), Some("https://example.com"));
        assert_eq!(event.time, "2020-05-31T17:55:47.263Z".parse::<Timestamp>().unwrap());
    }

    #[test]
    fn nat_alternative_formats() {
        let event = parse(json!({"timestamp":"2020-05-31T17:55:47.263Z","type":"identify","email":"test@example.com"}))
            .unwrap();
        assert_eq!(event.description.as_deref(), Some(STANDARD_DESCRIPTION));
        let event = parse(json!({"timestamp":"2020-05-31T17:55:47.263Z","type":"identify","email":"test@example.com",
            "event":"User logged in","page":{"url":"https://x.io"}}))
        .unwrap();
        assert_eq!(event.description.as_deref(), Some("User logged in"), "event replaces url");
    }

    #[test]
    fn description_order_for_identify() {
        let base = json!({"type":"identify","timestamp":"2020-05-31T17:55:47Z","traits":{"email":"a@b.co"},
            "context":{"page":{"url":"ctx"}},"properties":{"url":"props"},"url":"top"});
        assert_eq!(parse(base.clone()).unwrap().description.as_deref(), Some("ctx"));
        let mut without_ctx = base.clone();
        without_ctx["context"] = json!({});
        assert_eq!(parse(without_ctx.clone()).unwrap().description.as_deref(), Some("props"));
        without_ctx["properties"] = json!({});
        assert_eq!(parse(without_ctx).unwrap().description.as_deref(), Some("top"));
    }

    #[test]
    fn email_sources_in_order() {
        let event = parse(json!({"type":"identify","timestamp":"2020-05-31T17:55:47Z",
            "traits":{"name":"x"},"context":{"traits":{"email":" Jane@Example.com"}},"email":"other@example.com"}))
        .unwrap();
        assert_eq!(event.email.as_deref(), Some("jane@example.com"));
        assert_eq!(
            code(json!({"type":"identify","timestamp":"2020-05-31T17:55:47Z","traits":{"email":"a@b"}})),
            Code::InvalidEmail
        );
        assert_eq!(
            code(json!({"type":"identify","timestamp":"2020-05-31T17:55:47Z","traits":{"name":"x"}})),
            Code::MissingEmail
        );
    }

    #[test]
    fn an_identify_without_email_but_with_a_user_id_is_read() {
        let event =
            parse(json!({"type":"identify","userId":"u1","timestamp":"2020-05-31T17:55:47Z","traits":{"plan":"pro"}}))
                .unwrap();
        assert_eq!(event.email, None);
        assert_eq!(event.user_id.as_deref(), Some("u1"));
    }

    #[test]
    fn every_validation_code() {
        let t = "2024-06-01T10:00:00Z";
        assert_eq!(code(json!({"traits":{"email":"a@b.co"},"timestamp":t})), Code::MissingType);
        assert_eq!(code(json!({"type":"purchase","userId":"u1","timestamp":t})), Code::UnknownType);
        assert_eq!(code(json!({"type":"track","userId":"u1","timestamp":t})), Code::MissingEvent);
        assert_eq!(code(json!({"type":"group","userId":"u1","timestamp":t})), Code::MissingGroupId);
        assert_eq!(code(json!({"type":"alias","userId":"u1","timestamp":t})), Code::MissingPreviousId);
        assert_eq!(
            code(json!({"type":"alias","userId":"u1","previousId":"undefined","timestamp":t})),
            Code::MissingPreviousId
        );
        assert_eq!(code(json!({"type":"track","event":"X","timestamp":t})), Code::NoUserAnonId);
        assert_eq!(code(json!({"type":"track","event":"X","userId":"null","timestamp":t})), Code::NoUserAnonId);
        assert_eq!(
            code(json!({"type":"track","event":"X","userId":"u1","properties":[1],"timestamp":t})),
            Code::PropertiesNotObject
        );
        assert_eq!(code(json!({"type":"identify","traits":"a@b.co","timestamp":t})), Code::TraitsNotObject);
        assert_eq!(code(json!({"type":"identify","traits":{"email":"a@b.co"}})), Code::MissingTimestamp);
        assert_eq!(
            code(json!({"type":"identify","traits":{"email":"a@b.co"},"timestamp":"yesterday"})),
            Code::InvalidTimestamp
        );
        assert_eq!(
            code(json!({"type":"track","event":"X","userId":"u1","timestamp":t,"messageId":"x".repeat(101)})),
            Code::InvalidMessageId
        );
        let huge = "x".repeat(MAX_EVENT_BYTES);
        assert_eq!(
            code(json!({"type":"track","event":"X","userId":"u1","timestamp":t,"properties":{"blob":huge}})),
            Code::PayloadTooLarge
        );
    }

    #[test]
    fn device_clocks_are_corrected_but_given_timestamps_are_kept() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let device =
            parse(json!({"type":"track","event":"X","userId":"u","originalTimestamp":"2024-06-03T16:10:00.000Z",
            "sentAt":"2024-06-03T16:10:00.050Z"}))
            .unwrap();
        assert_eq!(device.time, now - jiff::SignedDuration::from_millis(50));
        let given = parse(json!({"type":"track","event":"X","userId":"u","timestamp":"2024-06-05T09:05:00Z",
            "originalTimestamp":"2024-06-05T09:04:00Z","sentAt":"2024-06-05T09:08:01Z"}))
        .unwrap();
        assert_eq!(given.time, "2024-06-05T09:05:00Z".parse::<Timestamp>().unwrap());
        let relayed = parse(json!({"type":"track","event":"X","userId":"u","originalTimestamp":"2024-06-03T16:00:00Z",
            "sentAt":"2024-06-03T16:00:01Z","receivedAt":"2024-06-03T16:00:02Z"}))
        .unwrap();
        assert_eq!(relayed.time, "2024-06-03T16:00:00Z".parse::<Timestamp>().unwrap());
    }

    #[test]
    fn kiths_own_reports_are_not_activity() {
        let event =
            parse(json!({"type":"track","userId":"u","event":"Contact Went Cold","timestamp":"2024-06-01T10:00:00Z",
            "context":{"library":{"name":"kith","version":"0.1.0"}}}))
            .unwrap();
        assert!(event.from_kith);
        assert_eq!(event.description, None);
    }

    #[test]
    fn the_route_supplies_a_missing_type() {
        let parsed = parse_value(
            &json!({"userId":"u1","event":"Signed Up","timestamp":"2024-06-01T10:00:00Z"}),
            &ctx(Some(EventType::Track)),
        )
        .unwrap();
        let Parsed::Event(event) = parsed else { panic!() };
        assert_eq!(event.kind, EventKind::Track { name: "Signed Up".into() });
        assert_eq!(event.description.as_deref(), Some("Signed Up"));
    }

    #[test]
    fn track_page_screen_descriptions() {
        let t = "2024-06-01T10:00:00Z";
        let page = parse(json!({"type":"page","userId":"u","name":"Pricing","properties":{"url":"https://acme.io/pricing"},"timestamp":t})).unwrap();
        assert_eq!(page.description.as_deref(), Some("Visited https://acme.io/pricing"));
        let page = parse(json!({"type":"page","userId":"u","name":"Docs","timestamp":t})).unwrap();
        assert_eq!(page.description.as_deref(), Some("Visited Docs"));
        let screen = parse(json!({"type":"screen","userId":"u","name":"Dashboard","timestamp":t})).unwrap();
        assert_eq!(screen.description.as_deref(), Some("Viewed Dashboard"));
        let group = parse(json!({"type":"group","userId":"u","groupId":42,"timestamp":t})).unwrap();
        assert_eq!(group.description, None);
        assert_eq!(group.kind, EventKind::Group { group_id: "42".into(), traits: Map::new() });
    }

    #[test]
    fn track_reaches_a_contact_by_email() {
        let event = parse(
            json!({"type":"track","event":"X","properties":{"email":"A@B.co"},"timestamp":"2024-06-01T10:00:00Z"}),
        )
        .unwrap();
        assert_eq!(event.email.as_deref(), Some("a@b.co"));
    }

    #[test]
    fn integrations_object() {
        let reaches_kith = |integrations: Value| {
            let event = json!({"type":"track","event":"X","userId":"u","timestamp":"2024-06-01T10:00:00Z",
                               "integrations": integrations});
            parse_value(&event, &ctx(None)).unwrap() != Parsed::Skipped
        };
        assert!(reaches_kith(Value::Null));
        assert!(reaches_kith(json!({})));
        assert!(reaches_kith(json!({"All": true})));
        assert!(!reaches_kith(json!({"Kith": false})));
        assert!(!reaches_kith(json!({"All": false})));
        assert!(reaches_kith(json!({"All": false, "Kith": true})));
        assert!(reaches_kith(json!({"All": false, "Kith": {"x": 1}})));
        assert!(!reaches_kith(json!({"All": true, "Kith": false})));
        let skipped = parse_value(&json!({"type":"identify","integrations":{"Kith":false}}), &ctx(None)).unwrap();
        assert_eq!(skipped, Parsed::Skipped);
    }

    #[test]
    fn a_body_that_could_not_be_read_back_is_refused_and_the_rest_is_stored_as_sent() {
        let read = |text: &str| {
            let envelope = crate::envelope::split(text.as_bytes(), crate::envelope::BodyShape::Single)?;
            let item = envelope.items().next().expect("one event");
            parse_event(item, &ctx(None))
        };
        let event = |extra: &str| {
            format!(
                r#"{{"type":"track","event":"X","userId":"u","timestamp":"2024-06-01T10:00:00Z","properties":{{{extra}}}}}"#
            )
        };
        let deep = format!(r#""v":{}1{}"#, "[".repeat(130), "]".repeat(130));
        for extra in [r#""v":"\ud800""#, r#""v":1e400"#, deep.as_str()] {
            assert_eq!(read(&event(extra)).unwrap_err().code, Code::InvalidJson, "{extra}");
        }
        let Parsed::Event(stored) = read(&event(r#" "v" : "\u00e9 x" , "n" : 12.50 "#)).unwrap() else { panic!() };
        assert!(stored.payload.contains(r#""properties":{"v":"\u00e9 x","n":12.50}"#), "{}", stored.payload);
        let value: Value = serde_json::from_str(&stored.payload).unwrap();
        assert_eq!(value["properties"]["v"], "é x");
    }

    #[test]
    fn nulls_are_absent_and_junk_ids_are_dropped() {
        let event = parse(
            json!({"type":"track","event":"X","userId":"u1","anonymousId":null,"timestamp":"2024-06-01T10:00:00Z"}),
        )
        .unwrap();
        assert_eq!(event.anonymous_id, None);
        let event = parse(json!({"type":"track","event":"X","userId":"undefined","anonymousId":"a-1","timestamp":"2024-06-01T10:00:00Z"})).unwrap();
        assert_eq!(event.user_id, None);
        assert_eq!(event.anonymous_id.as_deref(), Some("a-1"));
    }

    #[test]
    fn message_ids_are_kept_or_derived_from_content() {
        let body = json!({"type":"identify","email":"a@b.co","timestamp":"2024-06-01T10:00:00Z"});
        let first = parse(body.clone()).unwrap().message_id;
        assert_eq!(first, parse(body).unwrap().message_id, "the same body gets the same id");
        assert!(first.starts_with("kith-"));
        let event = parse(json!({"type":"identify","email":"a@b.co","timestamp":"2024-06-01T10:00:00Z","messageId":"m-1","writeKey":"secret"})).unwrap();
        assert_eq!(event.message_id, "m-1");
        assert!(!event.payload.contains("secret"), "the write key is not stored");
    }

    #[test]
    fn engage_audiences_and_computed_traits() {
        let event = parse(json!({"type":"identify","userId":"u_5531","timestamp":"2024-05-03T19:42:50.066Z",
            "context":{"personas":{"computation_class":"audience","computation_id":"aud_1","computation_key":"order_completed_last_30days","space_id":"spa_1"}},
            "traits":{"order_completed_last_30days":true,"email":"buyer@example.com"}}))
        .unwrap();
        assert_eq!(event.description, None, "an Engage sync is not activity");
        let audience = event.audience.unwrap();
        assert_eq!((audience.key.as_str(), audience.entered), ("order_completed_last_30days", true));
        assert_eq!(audience.computation_id.as_deref(), Some("aud_1"));
        let EventKind::Identify { traits, .. } = event.kind else { panic!() };
        assert!(!traits.contains_key("order_completed_last_30days"));

        let event = parse(json!({"type":"identify","userId":"u","timestamp":"2024-05-05T10:00:00Z",
            "context":{"personas":{"computation_class":"trait","computation_key":"lifetime_orders"}},
            "traits":{"lifetime_orders":17,"email":"buyer@example.com"}}))
        .unwrap();
        let EventKind::Identify { traits, computed } = event.kind else { panic!() };
        assert_eq!(traits["lifetime_orders"], 17);
        assert_eq!(computed, vec!["lifetime_orders".to_owned()]);

        let event =
            parse(json!({"type":"track","userId":"u","event":"Audience Exited","timestamp":"2024-05-05T10:00:00Z",
            "properties":{"audience_key":"power_users"}}))
            .unwrap();
        assert!(!event.audience.unwrap().entered);
    }
}
