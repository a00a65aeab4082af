//! Messages to contacts on SQLite: subscription topics, templates, the workspace's sender,
//! each contact's choices per topic and the log of messages considered for a contact.

use jiff::Timestamp;
use kith_core::time::from_millis;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::records::*;
use crate::sql::MESSAGE_LOG_COLUMNS;
use crate::{Result, StoreError};

fn topic_row(row: &Row) -> rusqlite::Result<Topic> {
    Ok(Topic { id: row.get(0)?, name: row.get(1)?, opt_in: row.get(2)?, created_at: from_millis(row.get(3)?) })
}

pub fn topics(c: &Connection, workspace: WorkspaceId) -> Result<Vec<Topic>> {
    let mut statement = c.prepare_cached(
        "SELECT id, name, opt_in, created_at FROM message_topics WHERE workspace_id = ?1 ORDER BY id",
    )?;
    let rows = statement.query_map([workspace], topic_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn create_topic(c: &Connection, workspace: WorkspaceId, name: &str, opt_in: bool, now: i64) -> Result<Topic> {
    c.prepare_cached(
        "INSERT INTO message_topics (workspace_id, name, opt_in, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING RETURNING id, name, opt_in, created_at",
    )?
    .query_row(params![workspace, name, opt_in, now], topic_row)
    .optional()?
    .ok_or_else(|| StoreError::Conflict(format!("the workspace already has a topic named {name:?}")))
}

pub fn update_topic(
    c: &Connection,
    workspace: WorkspaceId,
    id: i64,
    name: &str,
    opt_in: bool,
) -> Result<Option<Topic>> {
    let taken = c
        .prepare_cached("SELECT 1 FROM message_topics WHERE workspace_id = ?1 AND name = ?2 AND id <> ?3")?
        .exists(params![workspace, name, id])?;
    if taken {
        return Err(StoreError::Conflict(format!("the workspace already has a topic named {name:?}")));
    }
    Ok(c.prepare_cached(
        "UPDATE message_topics SET name = ?3, opt_in = ?4 WHERE workspace_id = ?1 AND id = ?2
         RETURNING id, name, opt_in, created_at",
    )?
    .query_row(params![workspace, id, name, opt_in], topic_row)
    .optional()?)
}

pub fn delete_topic(c: &mut Connection, workspace: WorkspaceId, id: i64) -> Result<bool> {
    let tx = c.transaction()?;
    let deleted = tx.execute(
        "DELETE FROM message_topics WHERE workspace_id = ?1 AND id = ?2
             AND NOT EXISTS (SELECT 1 FROM message_templates WHERE workspace_id = ?1 AND topic_id = ?2)",
        params![workspace, id],
    )? > 0;
    if deleted {
        tx.execute(
            "DELETE FROM message_subscriptions WHERE workspace_id = ?1 AND topic_id = ?2",
            params![workspace, id],
        )?;
    }
    tx.commit()?;
    Ok(deleted)
}

const TEMPLATE_COLUMNS: &str = "id, name, topic_id, subject, html, text, created_at, updated_at";

fn template_row(row: &Row) -> rusqlite::Result<Template> {
    Ok(Template {
        id: row.get(0)?,
        spec: TemplateSpec {
            name: row.get(1)?,
            topic_id: row.get(2)?,
            subject: row.get(3)?,
            html: row.get(4)?,
            text: row.get(5)?,
        },
        created_at: from_millis(row.get(6)?),
        updated_at: from_millis(row.get(7)?),
    })
}

pub fn templates(c: &Connection, workspace: WorkspaceId) -> Result<Vec<Template>> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT {TEMPLATE_COLUMNS} FROM message_templates WHERE workspace_id = ?1 ORDER BY id"
    ))?;
    let rows = statement.query_map([workspace], template_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn template(c: &Connection, workspace: WorkspaceId, id: i64) -> Result<Option<Template>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {TEMPLATE_COLUMNS} FROM message_templates WHERE workspace_id = ?1 AND id = ?2"
    ))?
    .query_row(params![workspace, id], template_row)
    .optional()?)
}

pub fn create_template(c: &Connection, workspace: WorkspaceId, spec: &TemplateSpec, now: i64) -> Result<Template> {
    Ok(c.prepare_cached(&format!(
        "INSERT INTO message_templates (workspace_id, name, topic_id, subject, html, text, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING {TEMPLATE_COLUMNS}"
    ))?
    .query_row(params![workspace, spec.name, spec.topic_id, spec.subject, spec.html, spec.text, now], template_row)?)
}

pub fn update_template(
    c: &Connection,
    workspace: WorkspaceId,
    id: i64,
    spec: &TemplateSpec,
    now: i64,
) -> Result<Option<Template>> {
    Ok(c.prepare_cached(&format!(
        "UPDATE message_templates SET name = ?3, topic_id = ?4, subject = ?5, html = ?6, text = ?7, updated_at = ?8
         WHERE workspace_id = ?1 AND id = ?2 RETURNING {TEMPLATE_COLUMNS}"
    ))?
    .query_row(params![workspace, id, spec.name, spec.topic_id, spec.subject, spec.html, spec.text, now], template_row)
    .optional()?)
}

pub fn delete_template(c: &Connection, workspace: WorkspaceId, id: i64) -> Result<bool> {
    Ok(c.execute("DELETE FROM message_templates WHERE workspace_id = ?1 AND id = ?2", params![workspace, id])? > 0)
}

fn sender_row(row: &Row) -> rusqlite::Result<Sender> {
    Ok(Sender { from_name: row.get(0)?, from_address: row.get(1)?, reply_to: row.get(2)?, link_secret: row.get(3)? })
}

pub fn sender(c: &Connection, workspace: WorkspaceId, new_secret: &str) -> Result<Sender> {
    c.prepare_cached("INSERT INTO message_senders (workspace_id, link_secret) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?
        .execute(params![workspace, new_secret])?;
    Ok(c.prepare_cached(
        "SELECT from_name, from_address, reply_to, link_secret FROM message_senders WHERE workspace_id = ?1",
    )?
    .query_row([workspace], sender_row)?)
}

pub fn set_sender(c: &Connection, workspace: WorkspaceId, sender: &Sender) -> Result<Sender> {
    Ok(c.prepare_cached(
        "INSERT INTO message_senders (workspace_id, from_name, from_address, reply_to, link_secret)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (workspace_id) DO UPDATE SET from_name = excluded.from_name,
             from_address = excluded.from_address, reply_to = excluded.reply_to
         RETURNING from_name, from_address, reply_to, link_secret",
    )?
    .query_row(
        params![workspace, sender.from_name, sender.from_address, sender.reply_to, sender.link_secret],
        sender_row,
    )?)
}

pub fn message_limits(c: &Connection, workspace: WorkspaceId) -> Result<MessageLimits> {
    Ok(c.prepare_cached(
        "SELECT cap_count, cap_window_hours, quiet_start, quiet_end FROM message_senders WHERE workspace_id = ?1",
    )?
    .query_row([workspace], |row| {
        Ok(MessageLimits {
            cap_count: row.get(0)?,
            cap_window_hours: row.get(1)?,
            quiet_start: row.get(2)?,
            quiet_end: row.get(3)?,
        })
    })
    .optional()?
    .unwrap_or_default())
}

pub fn set_message_limits(c: &Connection, workspace: WorkspaceId, limits: &MessageLimits) -> Result<()> {
    c.prepare_cached(
        "UPDATE message_senders SET cap_count = ?2, cap_window_hours = ?3, quiet_start = ?4, quiet_end = ?5
         WHERE workspace_id = ?1",
    )?
    .execute(params![
        workspace,
        limits.cap_count,
        limits.cap_window_hours,
        limits.quiet_start,
        limits.quiet_end
    ])?;
    Ok(())
}

pub fn messages_sent_since(
    c: &Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    since: Timestamp,
) -> Result<i64> {
    Ok(c.prepare_cached(
        "SELECT count(*) FROM message_log WHERE workspace_id = ?1 AND contact_id = ?2 AND outcome = 'sent' AND at >= ?3",
    )?
    .query_row(params![workspace, contact, since.as_millisecond()], |row| row.get(0))?)
}

pub fn subscriptions(c: &Connection, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Subscription>> {
    let mut statement = c.prepare_cached(
        "SELECT topic_id, subscribed, updated_at FROM message_subscriptions
         WHERE workspace_id = ?1 AND contact_id = ?2 ORDER BY topic_id",
    )?;
    let rows = statement.query_map(params![workspace, contact], |row| {
        Ok(Subscription { topic_id: row.get(0)?, subscribed: row.get(1)?, updated_at: from_millis(row.get(2)?) })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn set_subscription(
    c: &Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    topic: i64,
    subscribed: bool,
    at: Timestamp,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO message_subscriptions (workspace_id, contact_id, topic_id, subscribed, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (contact_id, topic_id) DO UPDATE SET subscribed = excluded.subscribed,
             updated_at = excluded.updated_at",
    )?
    .execute(params![workspace, contact, topic, subscribed, at.as_millisecond()])?;
    Ok(())
}

/// A firing started by an event has the occurrence `event:<messageId>`; others have none.
pub fn firing_event(c: &Connection, workspace: WorkspaceId, firing: i64) -> Result<Option<String>> {
    Ok(c.prepare_cached(
        "SELECT events.payload FROM rule_firings
         JOIN events ON events.contact_id = rule_firings.contact_id
                    AND events.message_id = substr(rule_firings.occurrence, 7)
         WHERE rule_firings.id = ?2 AND rule_firings.workspace_id = ?1 AND rule_firings.occurrence LIKE 'event:%'
         LIMIT 1",
    )?
    .query_row(params![workspace, firing], |row| row.get(0))
    .optional()?)
}

pub fn is_suppressed(c: &Connection, workspace: WorkspaceId, email: &str) -> Result<bool> {
    Ok(c.prepare_cached("SELECT 1 FROM suppressions WHERE workspace_id = ?1 AND email = ?2")?
        .exists(params![workspace, email])?)
}

fn log_row(row: &Row) -> rusqlite::Result<MessageEntry> {
    let time = |index: usize| row.get::<_, Option<i64>>(index).map(|ms| ms.map(from_millis));
    Ok(MessageEntry {
        id: row.get(0)?,
        entry: NewMessageEntry {
            contact_id: row.get(1)?,
            rule_id: row.get(2)?,
            template_id: row.get(3)?,
            topic_id: row.get(4)?,
            delivery_id: row.get(5)?,
            outcome: row.get(6)?,
            reason: row.get(7)?,
            at: from_millis(row.get(8)?),
            send_at: time(9)?,
            email_id: row.get(10)?,
            subject: row.get(11)?,
        },
        activity: MessageActivity {
            opened_at: time(12)?,
            opens: row.get(13)?,
            clicked_at: time(14)?,
            clicks: row.get(15)?,
            unsubscribed_at: time(16)?,
        },
    })
}

pub fn record_message(c: &Connection, workspace: WorkspaceId, entry: &NewMessageEntry) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO message_log (workspace_id, contact_id, rule_id, template_id, topic_id, delivery_id, outcome,
                                  reason, at, send_at, email_id, subject)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (delivery_id) DO UPDATE SET rule_id = excluded.rule_id, template_id = excluded.template_id,
             topic_id = excluded.topic_id, outcome = excluded.outcome, reason = excluded.reason, at = excluded.at,
             send_at = excluded.send_at, email_id = excluded.email_id, subject = excluded.subject",
    )?
    .execute(params![
        workspace,
        entry.contact_id,
        entry.rule_id,
        entry.template_id,
        entry.topic_id,
        entry.delivery_id,
        entry.outcome,
        entry.reason,
        entry.at.as_millisecond(),
        entry.send_at.map(|at| at.as_millisecond()),
        entry.email_id,
        entry.subject,
    ])?;
    Ok(())
}

pub fn fail_held_message(
    c: &Connection,
    workspace: WorkspaceId,
    delivery: i64,
    reason: &str,
    at: Timestamp,
) -> Result<()> {
    c.prepare_cached(
        "UPDATE message_log SET outcome = 'failed', reason = ?3, at = ?4, send_at = NULL
         WHERE workspace_id = ?1 AND delivery_id = ?2 AND outcome = 'held'",
    )?
    .execute(params![workspace, delivery, reason, at.as_millisecond()])?;
    Ok(())
}

pub fn message_log(
    c: &Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    limit: usize,
) -> Result<Vec<MessageEntry>> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT {MESSAGE_LOG_COLUMNS} FROM message_log WHERE workspace_id = ?1 AND contact_id = ?2 ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = statement.query_map(params![workspace, contact, limit.clamp(1, 1000) as i64], log_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn record_engagement(
    c: &Connection,
    workspace: WorkspaceId,
    email_id: &str,
    engagement: Engagement,
    at: Timestamp,
    limit: i64,
) -> Result<Option<MessageEntry>> {
    let (count, first) = match engagement {
        Engagement::Open => ("opens", "opened_at"),
        Engagement::Click => ("clicks", "clicked_at"),
    };
    Ok(c.prepare_cached(&format!(
        "UPDATE message_log SET {count} = {count} + 1, {first} = coalesce({first}, ?3)
         WHERE workspace_id = ?1 AND email_id = ?2 AND {count} < ?4 RETURNING {MESSAGE_LOG_COLUMNS}"
    ))?
    .query_row(params![workspace, email_id, at.as_millisecond(), limit], log_row)
    .optional()?)
}

pub fn record_unsubscribe(
    c: &Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    topic: i64,
    at: Timestamp,
) -> Result<Option<MessageEntry>> {
    Ok(c.prepare_cached(&format!(
        "UPDATE message_log SET unsubscribed_at = ?4
         WHERE id = (SELECT id FROM message_log WHERE workspace_id = ?1 AND contact_id = ?2 AND topic_id = ?3
                                                 AND outcome = 'sent' ORDER BY id DESC LIMIT 1)
           AND unsubscribed_at IS NULL
         RETURNING {MESSAGE_LOG_COLUMNS}"
    ))?
    .query_row(params![workspace, contact, topic, at.as_millisecond()], log_row)
    .optional()?)
}

pub fn record_bounce(
    c: &Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    email: &str,
    reason: &str,
    at: Timestamp,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO message_bounces (workspace_id, contact_id, email, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (contact_id) DO UPDATE SET email = excluded.email, reason = excluded.reason, at = excluded.at",
    )?
    .execute(params![workspace, contact, email, reason, at.as_millisecond()])?;
    Ok(())
}

pub fn is_bounced(c: &Connection, workspace: WorkspaceId, contact: ContactId, email: &str) -> Result<bool> {
    Ok(c.prepare_cached("SELECT 1 FROM message_bounces WHERE workspace_id = ?1 AND contact_id = ?2 AND email = ?3")?
        .exists(params![workspace, contact, email])?)
}

pub fn has_track(c: &Connection, workspace: WorkspaceId, contact: ContactId, name: &str) -> Result<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM events WHERE contact_id = ?2 AND workspace_id = ?1 AND type = 'track' AND name = ?3",
    )?
    .exists(params![workspace, contact, name])?)
}

pub fn message_stats(c: &Connection, workspace: WorkspaceId, by: StatsBy) -> Result<Vec<(i64, MessageCounts)>> {
    let mut statement = c.prepare_cached(&crate::sql::message_stats(by, "?1"))?;
    let rows = statement.query_map([workspace], |row| {
        Ok((
            row.get(0)?,
            MessageCounts {
                sent: row.get(1)?,
                delivered: row.get(2)?,
                opened: row.get(3)?,
                clicked: row.get(4)?,
                unsubscribed: row.get(5)?,
                bounced: row.get(6)?,
                skipped: row.get(7)?,
                held: row.get(8)?,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
