//! Messages to contacts on PostgreSQL: subscription topics, templates, the workspace's sender,
//! each contact's choices per topic and the log of messages considered for a contact.

use jiff::Timestamp;
use kith_core::time::from_millis;
use tokio_postgres::{Client, Row};

use crate::records::*;
use crate::sql::MESSAGE_LOG_COLUMNS;
use crate::{Result, StoreError};

fn topic_row(row: &Row) -> Result<Topic> {
    Ok(Topic {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        opt_in: row.try_get(2)?,
        created_at: from_millis(row.try_get(3)?),
    })
}

pub async fn topics(c: &Client, workspace: WorkspaceId) -> Result<Vec<Topic>> {
    let rows = c
        .query(
            "SELECT id, name, opt_in, created_at FROM message_topics WHERE workspace_id = $1 ORDER BY id",
            &[&workspace],
        )
        .await?;
    rows.iter().map(topic_row).collect()
}

pub async fn create_topic(c: &Client, workspace: WorkspaceId, name: &str, opt_in: bool, now: i64) -> Result<Topic> {
    let row = c
        .query_opt(
            "INSERT INTO message_topics (workspace_id, name, opt_in, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING RETURNING id, name, opt_in, created_at",
            &[&workspace, &name, &opt_in, &now],
        )
        .await?;
    match row {
        Some(row) => topic_row(&row),
        None => Err(StoreError::Conflict(format!("the workspace already has a topic named {name:?}"))),
    }
}

pub async fn update_topic(
    c: &Client,
    workspace: WorkspaceId,
    id: i64,
    name: &str,
    opt_in: bool,
) -> Result<Option<Topic>> {
    // The unique (workspace_id, name) index refuses a name another topic has; the statement
    // reads no row then.
    let row = c
        .query_opt(
            "UPDATE message_topics SET name = $3, opt_in = $4 WHERE workspace_id = $1 AND id = $2
                 AND NOT EXISTS (SELECT 1 FROM message_topics WHERE workspace_id = $1 AND name = $3 AND id <> $2)
             RETURNING id, name, opt_in, created_at",
            &[&workspace, &id, &name, &opt_in],
        )
        .await?;
    match row {
        Some(row) => topic_row(&row).map(Some),
        None => {
            let taken = c
                .query_opt(
                    "SELECT 1 FROM message_topics WHERE workspace_id = $1 AND name = $2 AND id <> $3",
                    &[&workspace, &name, &id],
                )
                .await?
                .is_some();
            if taken {
                Err(StoreError::Conflict(format!("the workspace already has a topic named {name:?}")))
            } else {
                Ok(None)
            }
        }
    }
}

pub async fn delete_topic(c: &Client, workspace: WorkspaceId, id: i64) -> Result<bool> {
    // One statement: the topic and the contacts' choices about it go together.
    let row = c
        .query_one(
            "WITH gone AS (
                 DELETE FROM message_topics WHERE workspace_id = $1 AND id = $2
                     AND NOT EXISTS (SELECT 1 FROM message_templates WHERE workspace_id = $1 AND topic_id = $2)
                 RETURNING id
             ), choices AS (
                 DELETE FROM message_subscriptions WHERE workspace_id = $1 AND topic_id IN (SELECT id FROM gone)
             )
             SELECT count(*) FROM gone",
            &[&workspace, &id],
        )
        .await?;
    Ok(row.try_get::<_, i64>(0)? > 0)
}

const TEMPLATE_COLUMNS: &str = "id, name, topic_id, subject, html, text, created_at, updated_at";

fn template_row(row: &Row) -> Result<Template> {
    Ok(Template {
        id: row.try_get(0)?,
        spec: TemplateSpec {
            name: row.try_get(1)?,
            topic_id: row.try_get(2)?,
            subject: row.try_get(3)?,
            html: row.try_get(4)?,
            text: row.try_get(5)?,
        },
        created_at: from_millis(row.try_get(6)?),
        updated_at: from_millis(row.try_get(7)?),
    })
}

pub async fn templates(c: &Client, workspace: WorkspaceId) -> Result<Vec<Template>> {
    let rows = c
        .query(
            &format!("SELECT {TEMPLATE_COLUMNS} FROM message_templates WHERE workspace_id = $1 ORDER BY id"),
            &[&workspace],
        )
        .await?;
    rows.iter().map(template_row).collect()
}

pub async fn template(c: &Client, workspace: WorkspaceId, id: i64) -> Result<Option<Template>> {
    let row = c
        .query_opt(
            &format!("SELECT {TEMPLATE_COLUMNS} FROM message_templates WHERE workspace_id = $1 AND id = $2"),
            &[&workspace, &id],
        )
        .await?;
    row.as_ref().map(template_row).transpose()
}

pub async fn create_template(c: &Client, workspace: WorkspaceId, spec: &TemplateSpec, now: i64) -> Result<Template> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO message_templates (workspace_id, name, topic_id, subject, html, text, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {TEMPLATE_COLUMNS}"
            ),
            &[&workspace, &spec.name, &spec.topic_id, &spec.subject, &spec.html, &spec.text, &now],
        )
        .await?;
    template_row(&row)
}

pub async fn update_template(
    c: &Client,
    workspace: WorkspaceId,
    id: i64,
    spec: &TemplateSpec,
    now: i64,
) -> Result<Option<Template>> {
    let row = c
        .query_opt(
            &format!(
                "UPDATE message_templates SET name = $3, topic_id = $4, subject = $5, html = $6, text = $7,
                     updated_at = $8
                 WHERE workspace_id = $1 AND id = $2 RETURNING {TEMPLATE_COLUMNS}"
            ),
            &[&workspace, &id, &spec.name, &spec.topic_id, &spec.subject, &spec.html, &spec.text, &now],
        )
        .await?;
    row.as_ref().map(template_row).transpose()
}

pub async fn delete_template(c: &Client, workspace: WorkspaceId, id: i64) -> Result<bool> {
    Ok(c.execute("DELETE FROM message_templates WHERE workspace_id = $1 AND id = $2", &[&workspace, &id]).await? > 0)
}

fn sender_row(row: &Row) -> Result<Sender> {
    Ok(Sender {
        from_name: row.try_get(0)?,
        from_address: row.try_get(1)?,
        reply_to: row.try_get(2)?,
        link_secret: row.try_get(3)?,
    })
}

pub async fn sender(c: &Client, workspace: WorkspaceId, new_secret: &str) -> Result<Sender> {
    c.execute(
        "INSERT INTO message_senders (workspace_id, link_secret) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&workspace, &new_secret],
    )
    .await?;
    let row = c
        .query_one(
            "SELECT from_name, from_address, reply_to, link_secret FROM message_senders WHERE workspace_id = $1",
            &[&workspace],
        )
        .await?;
    sender_row(&row)
}

pub async fn set_sender(c: &Client, workspace: WorkspaceId, sender: &Sender) -> Result<Sender> {
    let row = c
        .query_one(
            "INSERT INTO message_senders (workspace_id, from_name, from_address, reply_to, link_secret)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (workspace_id) DO UPDATE SET from_name = excluded.from_name,
                 from_address = excluded.from_address, reply_to = excluded.reply_to
             RETURNING from_name, from_address, reply_to, link_secret",
            &[&workspace, &sender.from_name, &sender.from_address, &sender.reply_to, &sender.link_secret],
        )
        .await?;
    sender_row(&row)
}

pub async fn message_limits(c: &Client, workspace: WorkspaceId) -> Result<MessageLimits> {
    let row = c
        .query_opt(
            "SELECT cap_count, cap_window_hours, quiet_start, quiet_end FROM message_senders WHERE workspace_id = $1",
            &[&workspace],
        )
        .await?;
    let Some(row) = row else { return Ok(MessageLimits::default()) };
    Ok(MessageLimits {
        cap_count: row.try_get(0)?,
        cap_window_hours: row.try_get(1)?,
        quiet_start: row.try_get(2)?,
        quiet_end: row.try_get(3)?,
    })
}

pub async fn set_message_limits(c: &Client, workspace: WorkspaceId, limits: &MessageLimits) -> Result<()> {
    c.execute(
        "UPDATE message_senders SET cap_count = $2, cap_window_hours = $3, quiet_start = $4, quiet_end = $5
         WHERE workspace_id = $1",
        &[&workspace, &limits.cap_count, &limits.cap_window_hours, &limits.quiet_start, &limits.quiet_end],
    )
    .await?;
    Ok(())
}

pub async fn messages_sent_since(
    c: &Client,
    workspace: WorkspaceId,
    contact: ContactId,
    since: Timestamp,
) -> Result<i64> {
    let row = c
        .query_one(
            "SELECT count(*) FROM message_log WHERE workspace_id = $1 AND contact_id = $2 AND outcome = 'sent'
               AND at >= $3",
            &[&workspace, &contact, &since.as_millisecond()],
        )
        .await?;
    Ok(row.try_get(0)?)
}

pub async fn subscriptions(c: &Client, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Subscription>> {
    let rows = c
        .query(
            "SELECT topic_id, subscribed, updated_at FROM message_subscriptions
             WHERE workspace_id = $1 AND contact_id = $2 ORDER BY topic_id",
            &[&workspace, &contact],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Subscription {
                topic_id: row.try_get(0)?,
                subscribed: row.try_get(1)?,
                updated_at: from_millis(row.try_get(2)?),
            })
        })
        .collect()
}

pub async fn set_subscription(
    c: &Client,
    workspace: WorkspaceId,
    contact: ContactId,
    topic: i64,
    subscribed: bool,
    at: Timestamp,
) -> Result<()> {
    c.execute(
        "INSERT INTO message_subscriptions (workspace_id, contact_id, topic_id, subscribed, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (contact_id, topic_id) DO UPDATE SET subscribed = excluded.subscribed,
             updated_at = excluded.updated_at",
        &[&workspace, &contact, &topic, &subscribed, &at.as_millisecond()],
    )
    .await?;
    Ok(())
}

/// A firing started by an event has the occurrence `event:<messageId>`; others have none.
pub async fn firing_event(c: &Client, workspace: WorkspaceId, firing: i64) -> Result<Option<String>> {
    let row = c
        .query_opt(
            "SELECT events.payload FROM rule_firings
             JOIN events ON events.contact_id = rule_firings.contact_id
                        AND events.message_id = substr(rule_firings.occurrence, 7)
             WHERE rule_firings.id = $2 AND rule_firings.workspace_id = $1
               AND rule_firings.occurrence LIKE 'event:%'
             LIMIT 1",
            &[&workspace, &firing],
        )
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

pub async fn is_suppressed(c: &Client, workspace: WorkspaceId, email: &str) -> Result<bool> {
    Ok(c.query_opt("SELECT 1 FROM suppressions WHERE workspace_id = $1 AND email = $2", &[&workspace, &email])
        .await?
        .is_some())
}

fn log_row(row: &Row) -> Result<MessageEntry> {
    let time = |index: usize| row.try_get::<_, Option<i64>>(index).map(|ms| ms.map(from_millis));
    Ok(MessageEntry {
        id: row.try_get(0)?,
        entry: NewMessageEntry {
            contact_id: row.try_get(1)?,
            rule_id: row.try_get(2)?,
            template_id: row.try_get(3)?,
            topic_id: row.try_get(4)?,
            delivery_id: row.try_get(5)?,
            outcome: row.try_get(6)?,
            reason: row.try_get(7)?,
            at: from_millis(row.try_get(8)?),
            send_at: time(9)?,
            email_id: row.try_get(10)?,
            subject: row.try_get(11)?,
        },
        activity: MessageActivity {
            opened_at: time(12)?,
            opens: row.try_get(13)?,
            clicked_at: time(14)?,
            clicks: row.try_get(15)?,
            unsubscribed_at: time(16)?,
        },
    })
}

pub async fn record_message(c: &Client, workspace: WorkspaceId, entry: &NewMessageEntry) -> Result<()> {
    c.execute(
        "INSERT INTO message_log (workspace_id, contact_id, rule_id, template_id, topic_id, delivery_id, outcome,
                                  reason, at, send_at, email_id, subject)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (delivery_id) DO UPDATE SET rule_id = excluded.rule_id, template_id = excluded.template_id,
             topic_id = excluded.topic_id, outcome = excluded.outcome, reason = excluded.reason, at = excluded.at,
             send_at = excluded.send_at, email_id = excluded.email_id, subject = excluded.subject",
        &[
            &workspace,
            &entry.contact_id,
            &entry.rule_id,
            &entry.template_id,
            &entry.topic_id,
            &entry.delivery_id,
            &entry.outcome,
            &entry.reason,
            &entry.at.as_millisecond(),
            &entry.send_at.map(|at| at.as_millisecond()),
            &entry.email_id,
            &entry.subject,
        ],
    )
    .await?;
    Ok(())
}

pub async fn fail_held_message(
    c: &Client,
    workspace: WorkspaceId,
    delivery: i64,
    reason: &str,
    at: Timestamp,
) -> Result<()> {
    c.execute(
        "UPDATE message_log SET outcome = 'failed', reason = $3, at = $4, send_at = NULL
         WHERE workspace_id = $1 AND delivery_id = $2 AND outcome = 'held'",
        &[&workspace, &delivery, &reason, &at.as_millisecond()],
    )
    .await?;
    Ok(())
}

pub async fn message_log(
    c: &Client,
    workspace: WorkspaceId,
    contact: ContactId,
    limit: usize,
) -> Result<Vec<MessageEntry>> {
    let rows = c
        .query(
            &format!(
                "SELECT {MESSAGE_LOG_COLUMNS} FROM message_log WHERE workspace_id = $1 AND contact_id = $2
                 ORDER BY id DESC LIMIT $3"
            ),
            &[&workspace, &contact, &(limit.clamp(1, 1000) as i64)],
        )
        .await?;
    rows.iter().map(log_row).collect()
}

pub async fn record_engagement(
    c: &Client,
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
    let row = c
        .query_opt(
            &format!(
                "UPDATE message_log SET {count} = {count} + 1, {first} = coalesce({first}, $3)
                 WHERE workspace_id = $1 AND email_id = $2 AND {count} < $4 RETURNING {MESSAGE_LOG_COLUMNS}"
            ),
            &[&workspace, &email_id, &at.as_millisecond(), &limit],
        )
        .await?;
    row.as_ref().map(log_row).transpose()
}

pub async fn record_unsubscribe(
    c: &Client,
    workspace: WorkspaceId,
    contact: ContactId,
    topic: i64,
    at: Timestamp,
) -> Result<Option<MessageEntry>> {
    let row = c
        .query_opt(
            &format!(
                "UPDATE message_log SET unsubscribed_at = $4
                 WHERE id = (SELECT id FROM message_log WHERE workspace_id = $1 AND contact_id = $2 AND topic_id = $3
                                                        AND outcome = 'sent' ORDER BY id DESC LIMIT 1)
                   AND unsubscribed_at IS NULL
                 RETURNING {MESSAGE_LOG_COLUMNS}"
            ),
            &[&workspace, &contact, &topic, &at.as_millisecond()],
        )
        .await?;
    row.as_ref().map(log_row).transpose()
}

pub async fn record_bounce(
    c: &Client,
    workspace: WorkspaceId,
    contact: ContactId,
    email: &str,
    reason: &str,
    at: Timestamp,
) -> Result<()> {
    c.execute(
        "INSERT INTO message_bounces (workspace_id, contact_id, email, reason, at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (contact_id) DO UPDATE SET email = excluded.email, reason = excluded.reason, at = excluded.at",
        &[&workspace, &contact, &email, &reason, &at.as_millisecond()],
    )
    .await?;
    Ok(())
}

pub async fn is_bounced(c: &Client, workspace: WorkspaceId, contact: ContactId, email: &str) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM message_bounces WHERE workspace_id = $1 AND contact_id = $2 AND email = $3",
        &[&workspace, &contact, &email],
    )
    .await?
    .is_some())
}

pub async fn has_track(c: &Client, workspace: WorkspaceId, contact: ContactId, name: &str) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM events WHERE contact_id = $2 AND workspace_id = $1 AND type = 'track' AND name = $3 LIMIT 1",
        &[&workspace, &contact, &name],
    )
    .await?
    .is_some())
}

pub async fn message_stats(c: &Client, workspace: WorkspaceId, by: StatsBy) -> Result<Vec<(i64, MessageCounts)>> {
    let rows = c.query(&crate::sql::message_stats(by, "$1"), &[&workspace]).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                MessageCounts {
                    sent: row.try_get(1)?,
                    delivered: row.try_get(2)?,
                    opened: row.try_get(3)?,
                    clicked: row.try_get(4)?,
                    unsubscribed: row.try_get(5)?,
                    bounced: row.try_get(6)?,
                    skipped: row.try_get(7)?,
                    held: row.try_get(8)?,
                },
            ))
        })
        .collect()
}
