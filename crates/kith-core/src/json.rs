//! Reading JSON where it lies in the request body: an object's fields as slices of the body,
//! each parsed only when a rule asks for it, and compact copies of what is stored.
//!
//! Building a `serde_json::Value` tree for every event (a `String` per key and per value, a
//! map node per object) and writing it out again as the stored payload was a third of the
//! CPU kith spent on an ingested event. Here an object costs one scan and one small vector,
//! and a field nobody reads is never built.
//!
//! Duplicate keys keep the last value, as a `Value` map does.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Up to this many fields, an object's duplicate keys are found by comparing each key with
/// the ones after it; past it, with a set.
const SCAN_UP_TO: usize = 16;

/// A JSON object's fields, borrowed from the text that holds it.
#[derive(Debug, Clone, Default)]
pub struct Object<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Object<'a> {
    /// The object `raw` holds, or `None` when it holds anything else.
    pub fn parse(raw: &'a RawValue) -> Option<Object<'a>> {
        if kind(raw) != Kind::Object {
            return None;
        }
        let mut deserializer = serde_json::Deserializer::from_str(raw.get());
        deserializer.deserialize_map(ObjectVisitor).ok()
    }

    /// The fields in order, with only the last of each duplicate key. Linear in the number
    /// of fields, whatever a sender puts in one object.
    pub fn fields(&self) -> Vec<(&str, &'a RawValue)> {
        if self.fields.len() <= SCAN_UP_TO {
            // Most objects have a handful of keys: comparing each with the ones after it
            // costs less than building a set.
            return self
                .fields
                .iter()
                .enumerate()
                .filter(|(index, (key, _))| !self.fields[index + 1..].iter().any(|(later, _)| later == key))
                .map(|(_, (key, value))| (key.as_ref(), *value))
                .collect();
        }
        let mut seen = HashSet::with_capacity(self.fields.len());
        let mut fields: Vec<_> = self
            .fields
            .iter()
            .rev()
            .filter(|(key, _)| seen.insert(key.as_ref()))
            .map(|(key, value)| (key.as_ref(), *value))
            .collect();
        fields.reverse();
        fields
    }

    /// The keys, for testing many keys against the object at once.
    pub fn keys(&self) -> HashSet<&str> {
        self.fields.iter().map(|(key, _)| key.as_ref()).collect()
    }

    /// The value of `key` as sent, `null` included.
    pub fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.iter().rev().find(|(name, _)| name == key).map(|(_, value)| *value)
    }

    /// The value of `key`, with JSON `null` treated as absent (analytics-python sends
    /// `"anonymousId": null`).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.raw(key).filter(|value| kind(value) != Kind::Null)
    }

    /// Whether the object has `key`, even as `null`.
    pub fn contains(&self, key: &str) -> bool {
        self.fields.iter().any(|(name, _)| name == key)
    }

    /// The object under `key`, if it is one.
    pub fn object(&self, key: &str) -> Option<Object<'a>> {
        self.raw(key).and_then(Object::parse)
    }

    /// The string under `key`, if it is one.
    pub fn string(&self, key: &str) -> Option<Cow<'a, str>> {
        self.raw(key).and_then(string)
    }

    /// The whole object as a `serde_json` map, for what is kept as a map (traits).
    pub fn to_map(&self) -> Map<String, Value> {
        self.fields().into_iter().map(|(key, value)| (key.to_owned(), to_value(value))).collect()
    }
}

/// A whole JSON text, read one level deep: an object's fields or an array's items as slices.
#[derive(Debug)]
pub enum Top<'a> {
    /// An object.
    Object(Object<'a>),
    /// An array.
    Array(Vec<&'a RawValue>),
    /// Anything else.
    Other(Kind),
}

impl<'a> Top<'a> {
    /// Reads `text`, checking its syntax whole in the same pass.
    pub fn parse(text: &'a [u8]) -> Result<Top<'a>, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let top = deserializer.deserialize_any(TopVisitor)?;
        deserializer.end()?;
        Ok(top)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("JSON")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        ObjectVisitor.visit_map(map).map(Top::Object)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(16));
        while let Some(item) = seq.next_element::<&RawValue>()? {
            items.push(item);
        }
        Ok(Top::Array(items))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Top::Other(Kind::Null))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Top::Other(Kind::Bool))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Top::Other(Kind::Number))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Top::Other(Kind::Number))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Top::Other(Kind::Number))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Top::Other(Kind::String))
    }
}

/// A JSON value's kind, read from its first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` or `false`
    Bool,
    /// a number
    Number,
    /// a string
    String,
    /// an array
    Array,
    /// an object
    Object,
}

impl Kind {
    /// A word for the kind, for messages.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

/// The kind of a value (a `RawValue` holds exactly one value, without leading whitespace).
pub fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'[') => Kind::Array,
        Some(b'{') => Kind::Object,
        _ => Kind::Number,
    }
}

/// The string `raw` holds, borrowed when it has no escapes.
pub fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    if kind(raw) != Kind::String {
        return None;
    }
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    deserializer.deserialize_str(StrVisitor).ok()
}

/// `raw` as a `serde_json::Value`.
pub fn to_value(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// The end of the string that starts at `bytes[at]` (a `"`): the index after its closing
/// quote. Strings hold most of an event's bytes; `memchr` crosses them in strides.
fn string_end(bytes: &[u8], at: usize) -> usize {
    let mut at = at + 1;
    while let Some(found) = memchr::memchr2(b'"', b'\\', &bytes[at..]) {
        if bytes[at + found] == b'"' {
            return at + found + 1;
        }
        at += found + 2;
        if at >= bytes.len() {
            break;
        }
    }
    bytes.len()
}

/// Whether JSON text may hold what a `RawValue` lets through but a `Value` refuses, so that
/// it must be read as a `Value` once before any of it is stored: nesting deeper than `limit`
/// (`serde_json`'s recursion limit), a `\u` escape (which may be a lone surrogate), or a
/// number that may be out of range (an exponent, or more than 300 digits). SDKs send UTF-8
/// and plain numbers, so nearly every body passes with one quick scan.
pub fn needs_value_check(text: &[u8], limit: usize) -> bool {
    if memchr::memmem::find(text, b"\\u").is_some() {
        return true;
    }
    let mut depth = 0usize;
    let mut digits = 0usize;
    let mut at = 0;
    while at < text.len() {
        let byte = text[at];
        match byte {
            b'"' => {
                at = string_end(text, at);
                digits = 0;
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'e' | b'E' if digits > 0 => return true,
            _ => {}
        }
        digits = if byte.is_ascii_digit() || byte == b'.' { digits + 1 } else { 0 };
        if digits > 300 {
            return true;
        }
        at += 1;
    }
    false
}

/// Appends `raw` without the whitespace between its tokens.
pub fn write_compact(raw: &RawValue, out: &mut String) {
    let text = raw.get();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                at = string_end(bytes, at);
                continue;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                // Whitespace bytes are ASCII, so these are char boundaries.
                out.push_str(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
        at += 1;
    }
    out.push_str(&text[start..]);
}

/// Appends `key` as a JSON string.
pub fn write_key(key: &str, out: &mut String) {
    if key.bytes().any(|byte| byte == b'"' || byte == b'\\' || byte < 0x20) {
        out.push_str(&serde_json::to_string(key).unwrap_or_default());
    } else {
        out.push('"');
        out.push_str(key);
        out.push('"');
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(Key(key)) = map.next_key()? {
            fields.push((key, map.next_value::<&RawValue>()?));
        }
        Ok(Object { fields })
    }
}

/// A key, borrowed from the text unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor).map(Key)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn fields_are_read_where_they_lie_and_the_last_duplicate_wins() {
        let object = Object::parse(raw(r#"{"a":1,"b":"x\"y","a":{"c":null},"n":null}"#)).unwrap();
        assert_eq!(object.raw("a").unwrap().get(), r#"{"c":null}"#);
        assert_eq!(object.string("b").as_deref(), Some("x\"y"));
        assert!(object.get("n").is_none() && object.raw("n").is_some() && object.contains("n"));
        assert_eq!(object.fields().into_iter().map(|(key, _)| key).collect::<Vec<_>>(), ["b", "a", "n"]);
        let many: Vec<String> = (0..50_000).map(|n| format!(r#""k{}":{n}"#, n % 25_000)).collect();
        let text = format!("{{{}}}", many.join(","));
        let crowded = Object::parse(raw(&text)).unwrap();
        let fields = crowded.fields();
        assert_eq!(fields.len(), 25_000);
        assert_eq!((fields[0].0, fields[0].1.get()), ("k0", "25000"), "the last of each key, where it last stands");
        assert_eq!(Value::Object(object.to_map()), serde_json::json!({"a":{"c":null},"b":"x\"y","n":null}));
        assert!(Object::parse(raw("[1]")).is_none());
        assert_eq!(kind(raw("-1.5e3")), Kind::Number);
    }

    #[test]
    fn compact_copies_drop_whitespace_outside_strings_only() {
        let mut out = String::new();
        write_compact(raw("{ \"a b\" : [ 1 ,\n\t2 ] , \"c\\\\\\\" d\" : \" x \" }"), &mut out);
        assert_eq!(out, r#"{"a b":[1,2],"c\\\" d":" x "}"#);
        let mut key = String::new();
        write_key("é\"\n", &mut key);
        assert_eq!(key, r#""é\"\n""#);
    }

    #[test]
    fn what_a_value_could_refuse_is_found() {
        let deep = format!("{}{}", "[".repeat(11), "]".repeat(11));
        for text in [r#"["\ud800"]"#, "[1e400]", "[2.5E3]", &format!("[{}]", "9".repeat(400)), &deep] {
            assert!(needs_value_check(text.as_bytes(), 10), "{text} must be checked");
        }
        for text in [r#"{"e":"[[[[[[[[[[[[ 1e5 \\ \""}"#, r#"[-1.5, 10, "é", true]"#] {
            assert!(!needs_value_check(text.as_bytes(), 10), "{text} needs no check");
        }
    }
}
