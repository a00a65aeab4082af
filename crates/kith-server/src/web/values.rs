//! How a form reads a value a person types for a property condition or a branch (a rule's or
//! a journey's), and shows a stored one so that reading it back gives the same value: text as
//! typed, numbers and yes/no as such, quoted text, and lists.

use serde_json::Value;

/// How a typed value reads, for property conditions and branches alike.
pub const HINT: &str = "Text as typed. 42, 2.5 and true/false are a number and a yes/no; in quotes, \"42\" is the \
                          text 42. Values separated by commas match any of them: pro, team (quote a text with a \
                          comma: \"Acme, Inc.\"). A JSON list such as [\"pro\", \"team\"] works too.";

/// A value typed for a property condition or a branch, read as [`HINT`] tells people:
/// text in quotes, a list in brackets and an object in braces are JSON; any other word is a
/// number, `true`, `false` or `null` when JSON reads it so, else the text itself; several values
/// separated by commas are a list, which matches any of them (as the trigger and the branch
/// compare: an equal value, or one of a list).
pub fn read(typed: &str) -> Result<Value, String> {
    let mut values = Vec::new();
    let mut rest = typed.trim_start();
    loop {
        let (value, after) = if rest.starts_with(['"', '[', '{']) {
            let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            match stream.next() {
                Some(Ok(value)) => (value, rest[stream.byte_offset()..].trim_start()),
                Some(Err(error)) => return Err(json_refusal(rest, &error)),
                None => return Err("a value is missing".into()),
            }
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let word = rest[..end].trim_end();
            if word.is_empty() {
                return Err("a value is missing between commas (\"\" is empty text)".into());
            }
            (word_value(word), &rest[end..])
        };
        values.push(value);
        if after.is_empty() {
            break;
        }
        rest = match after.strip_prefix(',') {
            Some(next) => next.trim_start(),
            None => {
                return Err(format!("{after:?} follows a value in quotes or brackets: separate values with commas"))
            }
        };
    }
    Ok(if values.len() == 1 { values.remove(0) } else { Value::Array(values) })
}

fn json_refusal(typed: &str, error: &serde_json::Error) -> String {
    let what = match typed.as_bytes().first() {
        Some(b'"') => "the text in quotes",
        Some(b'[') => "the list in brackets",
        _ => "the value in braces",
    };
    if error.is_eof() {
        format!("{what} is not closed")
    } else {
        format!("{what} is not valid JSON ({error}); write a list as pro, team or [\"pro\", \"team\"]")
    }
}

/// A word typed without quotes: a number, `true`, `false` or `null` as JSON reads them, else text.
fn word_value(word: &str) -> Value {
    match serde_json::from_str::<Value>(word) {
        Ok(value @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => value,
        _ => Value::String(word.to_owned()),
    }
}

/// A value as a form shows it, so that [`read`] reads it back the same: a list of
/// several values separated by commas, text without quotes where that reads as the same text.
pub fn text(value: &Value) -> String {
    match value {
        Value::Array(values) if values.len() > 1 => values.iter().map(item_text).collect::<Vec<_>>().join(", "),
        value => item_text(value),
    }
}

fn item_text(value: &Value) -> String {
    match value {
        Value::String(text) if reads_as_itself(text) => text.clone(),
        value => value.to_string(),
    }
}

/// Whether a text typed without quotes reads back as that very text (a text field also drops
/// line breaks, so a text holding one is shown in quotes).
fn reads_as_itself(text: &str) -> bool {
    !text.is_empty()
        && text.trim() == text
        && !text.contains(',')
        && !text.contains(char::is_control)
        && !text.starts_with(['"', '[', '{'])
        && matches!(word_value(text), Value::String(_))
}
