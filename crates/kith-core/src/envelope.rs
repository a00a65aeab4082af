//! Turning a request body into the events it carries.
//!
//! A body is one event, a Segment batch `{"batch": [...], "context"?, "integrations"?,
//! "sentAt"?, "writeKey"?}`, or a bare JSON array of events (Segment's Actions webhook
//! batching). Batch-level `context`, `integrations` and `sentAt` are merged into each item,
//! the item's own values winning, as each item is read (`event.rs`): a large shared `context`
//! is never copied into every item at once. Items stay slices of the body until then.
//!
//! [`write_key`] finds the key a body carries without building it, so a request can be
//! authenticated before any work proportional to its events is done.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::value::RawValue;

use crate::error::{Code, Rejection};
use crate::json::{self, Kind, Object, Top};

/// Segment's per-event size limit.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// Segment's per-request size limit (after decompression).
pub const MAX_REQUEST_BYTES: usize = 500 * 1024;
/// Nesting deeper than this is checked against `serde_json`'s recursion limit, which every
/// stored event must stay within to be read back.
const MAX_DEPTH: usize = 127;
/// Segment's limit on events in one batch.
pub const MAX_BATCH_EVENTS: usize = 2_500;

/// What a route expects its body to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyShape {
    /// `/v1/identify`, `/v1/track`, …: one event (a batch is still understood).
    Single,
    /// `/v1/batch`, `/v1/import`, `/v1/b`: a Segment batch (an array or one event is still understood).
    Batch,
}

/// The events of one request, before each is read: slices of the body.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// Each item as sent; non-objects are kept to be refused by index.
    items: Vec<&'a RawValue>,
    /// The batch-level fields merged into each item when it is read.
    shared: Shared<'a>,
    /// The write key given in the body (the batch's, or the first event's).
    pub write_key: Option<String>,
    /// Whether the body was a batch or an array (the answer then lists rejections by index).
    pub is_batch: bool,
    /// Whether the body was a bare JSON array (Segment signs only its first element).
    pub is_array: bool,
}

/// A batch's `context`, `integrations` and `sentAt`, which each of its events inherits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shared<'a> {
    /// The batch's `context`, when it is an object.
    pub context: Option<&'a RawValue>,
    /// The batch's `integrations`, when it is an object.
    pub integrations: Option<&'a RawValue>,
    /// The batch's `sentAt`, when it is not `null`.
    pub sent_at: Option<&'a RawValue>,
}

/// One event of a body as sent, with what its batch shares with it.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The event's own JSON.
    pub raw: &'a RawValue,
    /// The batch-level fields it inherits where it has none of its own.
    pub shared: Shared<'a>,
}

impl<'a> Item<'a> {
    /// An event sent on its own.
    pub fn alone(raw: &'a RawValue) -> Self {
        Item { raw, shared: Shared::default() }
    }
}

impl<'a> Envelope<'a> {
    /// How many events the body holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the body holds no event (never, for an envelope [`split`] returned).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The events in order, each with the batch-level fields it inherits.
    pub fn items(&self) -> impl Iterator<Item = Item<'a>> + '_ {
        self.items.iter().map(|raw| Item { raw, shared: self.shared })
    }
}

/// Reads a body into its events, without reading the events themselves yet.
pub fn split(body: &[u8], _shape: BodyShape) -> Result<Envelope<'_>, Rejection> {
    if json::needs_value_check(body, MAX_DEPTH) {
        // Every event stored must read back as a `Value`: a body that might not is refused
        // as a `Value` would refuse it, with serde_json's message and position.
        serde_json::from_slice::<serde_json::Value>(body).map_err(json_error)?;
    }
    match Top::parse(body).map_err(json_error)? {
        Top::Object(object) => {
            let Some(batch) = object.raw("batch") else {
                let write_key = object.string("writeKey").map(Cow::into_owned);
                // The body is the event; its first value starts where the text does.
                let event: &RawValue = serde_json::from_slice(body).map_err(json_error)?;
                return Ok(Envelope {
                    items: vec![event],
                    shared: Shared::default(),
                    write_key,
                    is_batch: false,
                    is_array: false,
                });
            };
            let items = array(batch)
                .ok_or_else(|| Rejection::new(Code::InvalidJson, "batch", "`batch` must be an array of events"))?;
            check_count(items.len())?;
            let write_key =
                object.string("writeKey").or_else(|| items.first().and_then(|item| string_field(item, "writeKey")));
            let shared = Shared {
                context: object.raw("context").filter(|raw| json::kind(raw) == Kind::Object),
                integrations: object.raw("integrations").filter(|raw| json::kind(raw) == Kind::Object),
                sent_at: object.get("sentAt"),
            };
            Ok(Envelope { items, shared, write_key: write_key.map(Cow::into_owned), is_batch: true, is_array: false })
        }
        Top::Array(items) => {
            check_count(items.len())?;
            let write_key = items.first().and_then(|item| string_field(item, "writeKey")).map(Cow::into_owned);
            Ok(Envelope { items, shared: Shared::default(), write_key, is_batch: true, is_array: true })
        }
        Top::Other(kind) => Err(Rejection::new(
            Code::InvalidJson,
            None,
            format!("expected a JSON object (one event or a batch), got {}", kind.word()),
        )),
    }
}

/// The items of a JSON array.
fn array(raw: &RawValue) -> Option<Vec<&RawValue>> {
    if json::kind(raw) != Kind::Array {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// The write key a body carries, found as [`split`] finds it (the batch's `writeKey`, else the
/// first event's) while reading the body once without building it: nothing is allocated for
/// the events, so a body can be refused for its key at the cost of a syntax check. Fails only
/// on invalid JSON.
pub fn write_key(body: &[u8]) -> Result<Option<String>, Rejection> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let found = Probe::Top.deserialize(&mut deserializer).map_err(json_error)?;
    deserializer.end().map_err(json_error)?;
    Ok(found)
}

/// What the value being read is to the key search.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The body: an event, a batch object or an array of events.
    Top,
    /// A `batch` array: its first element is searched.
    FirstOf,
    /// An event: its `writeKey` is the answer.
    Event,
    /// A `writeKey` value: the answer when it is a string.
    Key,
    /// Anything else: checked, not kept.
    Skip,
}

impl<'de> DeserializeSeed<'de> for Probe {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe {
    type Value = Option<String>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut own = None;
        let mut first_item = None;
        while let Some(name) = map.next_key::<FieldName>()? {
            let seed = match (self, name) {
                (Probe::Top | Probe::Event, FieldName::WriteKey) => Probe::Key,
                (Probe::Top, FieldName::Batch) => Probe::FirstOf,
                _ => Probe::Skip,
            };
            let found = map.next_value_seed(seed)?;
            match seed {
                Probe::Key => own = found,
                Probe::FirstOf => first_item = found,
                _ => {}
            }
        }
        Ok(own.or(first_item))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let first = match self {
            Probe::Top | Probe::FirstOf => seq.next_element_seed(Probe::Event)?.flatten(),
            _ => None,
        };
        while seq.next_element_seed(Probe::Skip)?.is_some() {}
        Ok(first)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok((self == Probe::Key).then(|| text.to_owned()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// The field names the key search tells apart; others are not copied.
enum FieldName {
    WriteKey,
    Batch,
    Other,
}

impl<'de> serde::Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = FieldName;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a field name")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<FieldName, E> {
                Ok(match name {
                    "writeKey" => FieldName::WriteKey,
                    "batch" => FieldName::Batch,
                    _ => FieldName::Other,
                })
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// The `invalid_json` refusal, naming where the parser stopped.
pub fn json_error(error: serde_json::Error) -> Rejection {
    Rejection::new(
        Code::InvalidJson,
        None,
        format!(
            "the body is not valid JSON: {} (line {}, column {})",
            describe_json_error(&error),
            error.line(),
            error.column()
        ),
    )
}

fn describe_json_error(error: &serde_json::Error) -> String {
    // serde_json appends " at line L column C" to its message; the position is given separately.
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn check_count(count: usize) -> Result<(), Rejection> {
    if count == 0 {
        return Err(Rejection::new(Code::EmptyBatch, "batch", "the batch holds no events; send at least one"));
    }
    if count > MAX_BATCH_EVENTS {
        return Err(Rejection::new(
            Code::BatchTooLarge,
            "batch",
            format!("the batch holds {count} events; split it into batches of at most {MAX_BATCH_EVENTS}"),
        ));
    }
    Ok(())
}

fn string_field<'a>(item: &'a RawValue, field: &str) -> Option<Cow<'a, str>> {
    Object::parse(item)?.string(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_batch_merges_its_shared_fields_into_items() {
        let body = br#"{"batch":[{"type":"track","event":"A","userId":"u","timestamp":"2024-06-05T09:08:00Z","context":{"ip":"1.2.3.4"},"writeKey":"wk"},
            {"type":"page","userId":"u","timestamp":"2024-06-05T09:08:00Z","sentAt":"2024-01-01T00:00:00Z"}],
            "context":{"library":{"name":"x"},"ip":"9.9.9.9"},"integrations":{"Kith":true},"sentAt":"2024-06-05T09:08:01Z","writeKey":"wk"}"#;
        let envelope = split(body, BodyShape::Batch).unwrap();
        assert!(envelope.is_batch && !envelope.is_array);
        assert_eq!(envelope.write_key.as_deref(), Some("wk"));
        let ctx = crate::event::ParseContext::live(None, jiff::Timestamp::UNIX_EPOCH);
        let items: Vec<Value> = envelope
            .items()
            .map(|item| match crate::event::parse_event(item, &ctx) {
                Ok(crate::event::Parsed::Event(event)) => serde_json::from_str(&event.payload).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(items[0]["context"]["ip"], "1.2.3.4", "the item's own value wins");
        assert_eq!(items[0]["context"]["library"]["name"], "x");
        assert_eq!(items[0]["integrations"]["Kith"], true);
        assert_eq!(items[0]["sentAt"], "2024-06-05T09:08:01Z");
        assert_eq!(items[1]["context"]["ip"], "9.9.9.9");
        assert_eq!(items[1]["sentAt"], "2024-01-01T00:00:00Z", "per-message sentAt wins");
        assert!(items.iter().all(|item| item.get("writeKey").is_none()));
    }

    #[test]
    fn arrays_and_single_events_are_understood() {
        let envelope = split(br#"[{"type":"track","writeKey":"k"},{"type":"page"}]"#, BodyShape::Single).unwrap();
        assert!(envelope.is_array && envelope.is_batch);
        assert_eq!(envelope.len(), 2);
        assert_eq!(envelope.write_key.as_deref(), Some("k"));
        let envelope = split(br#"{"type":"identify"}"#, BodyShape::Batch).unwrap();
        assert!(!envelope.is_batch);
    }

    #[test]
    fn the_write_key_is_found_as_split_finds_it() {
        let bodies: [&[u8]; 9] = [
            br#"{"type":"track","writeKey":"own"}"#,
            br#"{"batch":[{"writeKey":"first"},{"writeKey":"second"}],"writeKey":"batch"}"#,
            br#"{"batch":[{"writeKey":"first"},{"writeKey":"second"}]}"#,
            br#"{"writeKey":7,"batch":[{"writeKey":"first"}]}"#,
            br#"[{"writeKey":"first"},{"writeKey":"second"}]"#,
            br#"[[{"writeKey":"nested"}],{"writeKey":"second"}]"#,
            br#"{"type":"track","context":{"writeKey":"deep"},"properties":{"batch":[{"writeKey":"x"}]}}"#,
            br#"{"batch":{"writeKey":"not an array"},"writeKey":null}"#,
            br#"[1, "two", null]"#,
        ];
        for body in bodies {
            let expected = split(body, BodyShape::Batch).map(|envelope| envelope.write_key).unwrap_or(None);
            assert_eq!(write_key(body).unwrap(), expected, "{}", String::from_utf8_lossy(body));
        }
        let deep = "[".repeat(500);
        for broken in [&br#"{"writeKey":"k""#[..], b"", b"{} {}", deep.as_bytes()] {
            assert_eq!(write_key(broken).unwrap_err().code, Code::InvalidJson);
        }
    }

    #[test]
    fn broken_json_names_line_and_column() {
        let body = b"{\n  \"type\": \"identify\",\n\n  },\n}";
        let rejection = split(body, BodyShape::Single).unwrap_err();
        assert_eq!(rejection.code, Code::InvalidJson);
        assert!(rejection.message.contains("line 4, column 3"), "{}", rejection.message);
        assert_eq!(split(b"null", BodyShape::Single).unwrap_err().code, Code::InvalidJson);
        assert_eq!(split(&[0xff, 0xfe, b'{', b'}'], BodyShape::Single).unwrap_err().code, Code::InvalidJson);
        let deep = "[".repeat(500);
        assert_eq!(split(deep.as_bytes(), BodyShape::Single).unwrap_err().code, Code::InvalidJson);
    }

    #[test]
    fn batch_sizes_are_bounded() {
        assert_eq!(split(br#"{"batch":[]}"#, BodyShape::Batch).unwrap_err().code, Code::EmptyBatch);
        assert_eq!(split(b"[]", BodyShape::Batch).unwrap_err().code, Code::EmptyBatch);
        let items = vec![r#"{"type":"track"}"#; MAX_BATCH_EVENTS + 1].join(",");
        let body = format!(r#"{{"batch":[{items}]}}"#);
        assert_eq!(split(body.as_bytes(), BodyShape::Batch).unwrap_err().code, Code::BatchTooLarge);
    }
}
