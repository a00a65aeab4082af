//! Who an event is about: email normalisation and the ids that must never link people.

/// Values that SDKs and careless code send as ids but that name nobody, in any letter case. Linking
/// them would merge every visitor into one contact, so they are dropped.
const JUNK_IDS: &[&str] = &[
    "",
    "null",
    "undefined",
    "none",
    "nil",
    "0",
    "-1",
    "[object object]",
    "nan",
    "anonymous",
    "guest",
    "distinct_id",
    "id",
    "not_authenticated",
    "email",
    "true",
    "false",
];

/// Whether an id is one of the known junk values (compared trimmed and case-insensitively).
pub fn is_junk_id(id: &str) -> bool {
    let id = id.trim();
    JUNK_IDS.iter().any(|junk| id.eq_ignore_ascii_case(junk))
}

/// Returns the id trimmed, or `None` when it is junk or too long to be a real id.
pub fn usable_id(id: &str) -> Option<&str> {
    let trimmed = id.trim();
    (!is_junk_id(trimmed) && trimmed.len() <= 255).then_some(trimmed)
}

/// Trims and lower-cases an email and checks it is plausibly `local@domain.tld`.
///
/// Returns `None` for anything a mail server would certainly refuse: no `@`, an empty local
/// part, a domain without a dot, an empty label, a one-letter top-level domain, whitespace or
/// control characters. This is deliberately not a full RFC 5322 parser: it rejects typos and
/// placeholder values, not exotic but real addresses.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = email.rsplit_once('@')?;
    if local.is_empty() || local.contains('@') || domain.is_empty() {
        return None;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|label| label.is_empty()) {
        return None;
    }
    let tld = labels[labels.len() - 1];
    if tld.len() < 2 || !tld.chars().all(|c| c.is_alphabetic() || c == '-' || c.is_ascii_digit()) {
        return None;
    }
    Some(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_ids_are_recognised_whatever_their_case() {
        for id in ["", " ", "NULL", "undefined", "[object Object]", "NaN", "Guest", "-1", "0", "FALSE"] {
            assert!(is_junk_id(id), "{id:?} should be junk");
            assert_eq!(usable_id(id), None);
        }
        for id in ["97980cfea0067", "user-123", "00", "anon-previous-789"] {
            assert!(!is_junk_id(id), "{id:?} is a real id");
        }
        assert_eq!(usable_id("  u1 "), Some("u1"));
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(normalize_email("Ada@Example.COM ").as_deref(), Some("ada@example.com"));
        assert_eq!(normalize_email("peter@example.com").as_deref(), Some("peter@example.com"));
        assert_eq!(normalize_email("a.b+tag@sub.example.co.uk").as_deref(), Some("a.b+tag@sub.example.co.uk"));
    }

    #[test]
    fn implausible_emails_are_refused() {
        for bad in [
            "not-an-email",
            "a@b",
            "@example.com",
            "a@.com",
            "a@example.",
            "a b@example.com",
            "a@example.c",
            "a@@example.com",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad:?}");
        }
    }
}
