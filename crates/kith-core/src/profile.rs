//! The profile fields of a contact, read from its traits: `name`, first and last name, company,
//! title, phone, avatar.

use serde_json::{Map, Value};

/// Traits shown as the contact's profile, in display order, with their accepted spellings.
pub const PROFILE_FIELDS: &[(&str, &[&str])] = &[
    ("name", &["name"]),
    ("first_name", &["firstName", "first_name"]),
    ("last_name", &["lastName", "last_name"]),
    ("company", &["company"]),
    ("title", &["title"]),
    ("phone", &["phone"]),
    ("avatar", &["avatar"]),
];

/// A trait as display text: strings as they are, numbers and booleans printed, a company
/// object by its `name`; `None` for anything else.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Object(object) => object.get("name").and_then(text),
        _ => None,
    }
}

/// The first present spelling of a profile field.
pub fn field(traits: &Map<String, Value>, spellings: &[&str]) -> Option<String> {
    spellings.iter().find_map(|key| traits.get(*key).and_then(text))
}

/// The contact's display name: `name`, else first and last name joined.
pub fn display_name(traits: &Map<String, Value>) -> Option<String> {
    field(traits, &["name"]).or_else(|| {
        let first = field(traits, &["firstName", "first_name"]);
        let last = field(traits, &["lastName", "last_name"]);
        match (first, last) {
            (Some(first), Some(last)) => Some(format!("{first} {last}")),
            (first, last) => first.or(last),
        }
    })
}

/// The profile as `(field, text)` pairs, only those present.
pub fn profile(traits: &Map<String, Value>) -> Vec<(&'static str, String)> {
    PROFILE_FIELDS.iter().filter_map(|(name, spellings)| field(traits, spellings).map(|value| (*name, value))).collect()
}

/// Merges a patch into traits: new values win, `null` removes a trait. Returns whether the
/// traits changed (an identify that repeats them changes nothing).
pub fn merge_traits(traits: &mut Map<String, Value>, patch: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (key, value) in patch {
        if value.is_null() {
            changed |= traits.remove(key).is_some();
        } else if traits.get(key) != Some(value) {
            traits.insert(key.clone(), value.clone());
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn names_come_from_name_or_first_and_last() {
        assert_eq!(display_name(&map(json!({"name":"Ada Lovelace"}))).as_deref(), Some("Ada Lovelace"));
        assert_eq!(
            display_name(&map(json!({"firstName":"Grace","last_name":"Hopper"}))).as_deref(),
            Some("Grace Hopper")
        );
        assert_eq!(display_name(&map(json!({"first_name":"Grace"}))).as_deref(), Some("Grace"));
        assert_eq!(display_name(&map(json!({"plan":"pro"}))), None);
    }

    #[test]
    fn company_objects_show_their_name() {
        let traits = map(json!({"company":{"name":"Analytical Engines","id":"acct_42"},"phone":12345}));
        assert_eq!(profile(&traits), vec![("company", "Analytical Engines".to_owned()), ("phone", "12345".to_owned())]);
    }

    #[test]
    fn null_removes_a_trait_and_new_values_win() {
        let mut traits = map(json!({"plan":"free","name":"A","old":1}));
        assert!(merge_traits(&mut traits, &map(json!({"plan":"pro","old":null}))));
        assert_eq!(Value::Object(traits.clone()), json!({"plan":"pro","name":"A"}));
        assert!(!merge_traits(&mut traits, &map(json!({"plan":"pro","old":null}))), "a repeat changes nothing");
    }
}
