//! SQL text and helpers both backends share: the column lists their row readers expect, the
//! escaping of search patterns and the cutting of keyset pages.

use crate::records::{Cursor, StatsBy};

/// The columns a contact row is read from, in order (the contacts table as `c`).
pub(crate) const CONTACT_COLUMNS: &str =
    "c.id, c.email, c.name, c.traits, c.computed_traits, c.first_seen_at, c.last_seen_at,
     c.last_interaction_at, c.closeness_key, c.cadence_days, c.effective_cadence_days, c.due_at, c.created_at,
     c.warm_until";

/// The columns a delivery is read from, in order.
pub(crate) const DELIVERY_COLUMNS: &str =
    "id, workspace_id, kind, target, payload, status, attempts, next_attempt_at, last_error,
     created_at, sent_at";

/// The columns a user is read from, in order (the users table as `u`).
pub(crate) const USER_COLUMNS: &str = "u.id, u.workspace_id, u.email, u.password_hash, u.created_at";

/// The columns an API key is read from, in order.
pub(crate) const KEY_COLUMNS: &str = "id, workspace_id, kind, name, prefix, created_at, revoked_at";

/// The columns a message-log entry is read from, in order.
pub(crate) const MESSAGE_LOG_COLUMNS: &str =
    "id, contact_id, rule_id, template_id, topic_id, delivery_id, outcome, reason, at, send_at, email_id, subject,
     opened_at, opens, clicked_at, clicks, unsubscribed_at";

/// Per template or rule of the workspace `$workspace` names, the counts of `MessageCounts` in
/// its field order. Sent counts what reached the mail server: delivered, or bounced.
pub(crate) fn message_stats(by: StatsBy, workspace: &str) -> String {
    let key = match by {
        StatsBy::Template => "template_id",
        StatsBy::Rule => "rule_id",
    };
    let count = |condition: &str| format!("SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)");
    format!(
        "SELECT {key}, {}, {}, {}, {}, {}, {}, {}, {} FROM message_log
         WHERE workspace_id = {workspace} AND {key} IS NOT NULL GROUP BY {key} ORDER BY {key}",
        count("outcome IN ('sent', 'bounced')"),
        count("outcome = 'sent'"),
        count("opened_at IS NOT NULL"),
        count("clicked_at IS NOT NULL"),
        count("unsubscribed_at IS NOT NULL"),
        count("outcome = 'bounced'"),
        count("outcome = 'skipped'"),
        count("outcome = 'held'"),
    )
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Cuts a page fetched with one row too many down to `limit`; the extra row says there is a
/// next page, whose cursor is the last kept row's `(value, id)`.
pub(crate) fn page_cursor<T>(items: &mut Vec<T>, limit: usize, key: impl Fn(&T) -> (i64, i64)) -> Option<Cursor> {
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    items.last().map(|last| {
        let (value, id) = key(last);
        Cursor { value: value.into(), id }
    })
}
