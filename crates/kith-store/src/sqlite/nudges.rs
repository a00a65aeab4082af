//! Rules, firings and the outbox on SQLite, and the nudge job's passes: bucket changes and
//! due dates found by compare-and-set on the contact row, waiting firings turned into
//! deliveries, deliveries claimed with a lease.

use std::collections::HashMap;

use jiff::Timestamp;
use kith_core::closeness::{days_of_millis, Bucket};
use kith_core::rules::{RuleSpec, Trigger};
use kith_core::time::{day_key, from_millis};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{Map, Value};

use super::{admin, journeys, read};
use crate::deliveries::{self, SegmentIdentity};
use crate::records::*;
use crate::sql::DELIVERY_COLUMNS;
use crate::{Result, StoreError};

fn rule_row(row: &Row) -> rusqlite::Result<Rule> {
    let spec: String = row.get(1)?;
    let spec = serde_json::from_str(&spec)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(Rule { id: row.get(0)?, spec, created_at: from_millis(row.get(2)?), updated_at: from_millis(row.get(3)?) })
}

/// Enabled rules of a workspace.
pub fn enabled_rules(c: &Connection, workspace: WorkspaceId) -> Result<Vec<(i64, RuleSpec)>> {
    Ok(rules(c, workspace)?.into_iter().filter(|rule| rule.spec.enabled).map(|rule| (rule.id, rule.spec)).collect())
}

pub fn rules(c: &Connection, workspace: WorkspaceId) -> Result<Vec<Rule>> {
    let mut statement =
        c.prepare_cached("SELECT id, spec, created_at, updated_at FROM rules WHERE workspace_id = ?1 ORDER BY id")?;
    let rows = statement.query_map([workspace], rule_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn rule(c: &Connection, workspace: WorkspaceId, id: i64) -> Result<Option<Rule>> {
    Ok(c.prepare_cached("SELECT id, spec, created_at, updated_at FROM rules WHERE workspace_id = ?1 AND id = ?2")?
        .query_row(params![workspace, id], rule_row)
        .optional()?)
}

fn spec_json(spec: &RuleSpec) -> String {
    serde_json::to_string(spec).unwrap_or_default()
}

pub fn create_rule(c: &mut Connection, workspace: WorkspaceId, spec: &RuleSpec, now: i64) -> Result<Rule> {
    c.execute(
        "INSERT INTO rules (workspace_id, spec, enabled, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![workspace, spec_json(spec), spec.enabled, now],
    )?;
    let id = c.last_insert_rowid();
    rule(c, workspace, id)?.ok_or_else(|| StoreError::NotFound(format!("rule {id}")))
}

pub fn update_rule(
    c: &mut Connection,
    workspace: WorkspaceId,
    id: i64,
    spec: &RuleSpec,
    now: i64,
) -> Result<Option<Rule>> {
    c.execute(
        "UPDATE rules SET spec = ?3, enabled = ?4, updated_at = ?5 WHERE workspace_id = ?1 AND id = ?2",
        params![workspace, id, spec_json(spec), spec.enabled, now],
    )?;
    rule(c, workspace, id)
}

/// Deletes a rule; its waiting firings are cancelled, its history kept.
pub fn delete_rule(c: &mut Connection, workspace: WorkspaceId, id: i64, now: i64) -> Result<bool> {
    let tx = c.transaction()?;
    let deleted = tx.execute("DELETE FROM rules WHERE workspace_id = ?1 AND id = ?2", params![workspace, id])? > 0;
    // Only the rule's own workspace: an id named in another workspace touches nothing.
    if deleted {
        tx.execute(
            "UPDATE rule_firings SET state = 'cancelled', decided_at = ?3
             WHERE rule_id = ?1 AND workspace_id = ?2 AND state = 'waiting'",
            params![id, workspace, now],
        )?;
    }
    tx.commit()?;
    Ok(deleted)
}

pub fn firings(
    c: &Connection,
    workspace: WorkspaceId,
    rule: Option<i64>,
    contact: Option<ContactId>,
    limit: usize,
) -> Result<Vec<Firing>> {
    let mut statement = c.prepare_cached(
        "SELECT id, rule_id, contact_id, trigger, triggered_at, due_at, state, decided_at FROM rule_firings
         WHERE workspace_id = ?1 AND (?2 IS NULL OR rule_id = ?2) AND (?3 IS NULL OR contact_id = ?3)
         ORDER BY id DESC LIMIT ?4",
    )?;
    let rows = statement.query_map(params![workspace, rule, contact, limit.clamp(1, 1000) as i64], |row| {
        Ok(Firing {
            id: row.get(0)?,
            rule_id: row.get(1)?,
            contact_id: row.get(2)?,
            trigger: row.get(3)?,
            triggered_at: from_millis(row.get(4)?),
            due_at: from_millis(row.get(5)?),
            state: row.get(6)?,
            decided_at: row.get::<_, Option<i64>>(7)?.map(from_millis),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Queues deliveries, of a rule's `firing` and about a `contact` when they are (erasing the
/// contact erases them).
pub fn enqueue(
    c: &Connection,
    workspace: WorkspaceId,
    deliveries: &[NewDelivery],
    firing: Option<i64>,
    contact: Option<ContactId>,
    now: i64,
) -> Result<()> {
    let mut insert = c.prepare_cached(
        "INSERT INTO outbox (workspace_id, kind, target, payload, status, next_attempt_at, created_at, firing_id,
                             contact_id)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?6, ?7)",
    )?;
    for delivery in deliveries {
        insert.execute(params![
            workspace,
            delivery.kind,
            delivery.target,
            delivery.payload.to_string(),
            now,
            firing,
            contact
        ])?;
    }
    Ok(())
}

/// The contact's email and first userId, for the track calls kith sends about it.
pub(super) fn segment_identity(c: &Connection, contact: ContactId) -> Result<Option<(String, Option<String>)>> {
    let email: Option<String> = c
        .prepare_cached("SELECT email FROM contacts WHERE id = ?1")?
        .query_row([contact], |row| row.get(0))
        .optional()?;
    let Some(email) = email else { return Ok(None) };
    let user_id: Option<String> = c
        .prepare_cached(
            "SELECT value FROM identities WHERE contact_id = ?1 AND kind = 'user_id' ORDER BY created_at, value LIMIT 1",
        )?
        .query_row([contact], |row| row.get(0))
        .optional()?;
    Ok(Some((email, user_id)))
}

/// Queues a track call about a contact to the workspace's outbound Segment host, if any.
pub fn enqueue_track(
    c: &Connection,
    workspace: &Workspace,
    contact: ContactId,
    event: &str,
    properties: Map<String, Value>,
    at: i64,
    now: i64,
) -> Result<()> {
    let Some(host) = workspace.segment_host.as_ref().filter(|_| workspace.sends_to_segment()) else {
        return Ok(());
    };
    let Some((email, user_id)) = segment_identity(c, contact)? else { return Ok(()) };
    let who = SegmentIdentity { contact_id: contact, email: &email, user_id: user_id.as_deref() };
    let payload = deliveries::segment_track(&who, event, properties, from_millis(at));
    let delivery = NewDelivery { kind: "segment".into(), target: host.clone(), payload };
    enqueue(c, workspace.id, &[delivery], None, Some(contact), now)
}

/// The SQL expression of a contact's bucket at the moment the three thresholds were taken for.
const BUCKET_SQL: &str = "CASE WHEN closeness_key >= ?2 THEN 'close' WHEN closeness_key >= ?3 THEN 'warm'
                              WHEN closeness_key >= ?4 THEN 'cooling' ELSE 'cold' END";

/// Finds contacts whose bucket changed or that became due, and records what rules and
/// outbound Segment make of it. Each change is claimed by compare-and-set on the contact
/// row, so it fires once even when several nodes run the job.
pub fn evaluate_contacts(c: &mut Connection, now: Timestamp) -> Result<JobReport> {
    let now_ms = now.as_millisecond();
    let now_days = days_of_millis(now_ms);
    let mut report = JobReport::default();
    for workspace in admin::workspaces(c)? {
        let tx = c.transaction()?;
        let rules = enabled_rules(&tx, workspace.id)?;
        let journeys = journeys::enabled_journeys(&tx, workspace.id)?;
        let model = workspace.model();
        let thresholds: Vec<f64> = [Bucket::Close, Bucket::Warm, Bucket::Cooling]
            .iter()
            .map(|bucket| model.key_for_score(bucket.min_score(), now_days).unwrap_or(f64::MIN))
            .collect();
        let changed: Vec<(ContactId, Option<String>, String)> = {
            let mut statement = tx.prepare_cached(&format!(
                "SELECT id, bucket, {BUCKET_SQL} FROM contacts
                 WHERE workspace_id = ?1 AND COALESCE(bucket, 'cold') != {BUCKET_SQL}"
            ))?;
            let rows = statement
                .query_map(params![workspace.id, thresholds[0], thresholds[1], thresholds[2]], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (contact, old, new) in changed {
            let claimed = tx
                .prepare_cached("UPDATE contacts SET bucket = ?2 WHERE id = ?1 AND bucket IS ?3")?
                .execute(params![contact, new, old])?
                > 0;
            if !claimed {
                continue;
            }
            report.bucket_changes += 1;
            let Some(change) = deliveries::BucketChange::new(old.as_deref(), &new, now_ms) else { continue };
            for (rule_id, rule) in rules.iter().filter(|(_, rule)| change.fires(rule)) {
                insert_firing(&tx, &workspace, *rule_id, rule, contact, &change.source, &change.description, now_ms)?;
            }
            journeys::enter_matching(
                &tx,
                workspace.id,
                &journeys,
                contact,
                &change.source,
                &change.description,
                now_ms,
                |journey| change.starts(&journey.when),
            )?;
            if let Some((event, properties)) = change.track() {
                enqueue_track(&tx, &workspace, contact, event, properties, now_ms, now_ms)?;
            }
        }

        let due_rules: Vec<&(i64, RuleSpec)> =
            rules.iter().filter(|(_, rule)| matches!(rule.when, Trigger::BecomesDue {})).collect();
        let due_journeys = journeys.iter().any(|(_, journey)| matches!(journey.when, Trigger::BecomesDue {}));
        if !due_rules.is_empty() || due_journeys {
            let became_due: Vec<(ContactId, i64)> = {
                let mut statement = tx.prepare_cached(
                    "SELECT id, due_at FROM contacts WHERE workspace_id = ?1 AND due_at IS NOT NULL AND due_at <= ?2
                       AND (due_notified_at IS NULL OR due_notified_at != due_at)",
                )?;
                let rows = statement.query_map(params![workspace.id, now_ms], |row| Ok((row.get(0)?, row.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (contact, due_at) in became_due {
                let claimed = tx
                    .prepare_cached(
                        "UPDATE contacts SET due_notified_at = ?2 WHERE id = ?1 AND due_at = ?2
                           AND (due_notified_at IS NULL OR due_notified_at != ?2)",
                    )?
                    .execute(params![contact, due_at])?
                    > 0;
                if !claimed {
                    continue;
                }
                report.became_due += 1;
                let (source, description) = deliveries::became_due(due_at);
                for (rule_id, rule) in &due_rules {
                    insert_firing(&tx, &workspace, *rule_id, rule, contact, &source, description, now_ms)?;
                }
                journeys::enter_matching(
                    &tx,
                    workspace.id,
                    &journeys,
                    contact,
                    &source,
                    description,
                    now_ms,
                    |journey| matches!(journey.when, Trigger::BecomesDue {}),
                )?;
            }
        }
        tx.commit()?;
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn insert_firing(
    c: &Connection,
    workspace: &Workspace,
    rule_id: i64,
    rule: &RuleSpec,
    contact: ContactId,
    occurrence: &str,
    trigger: &str,
    at: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO rule_firings (workspace_id, rule_id, contact_id, occurrence, trigger, triggered_at, due_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'waiting') ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        workspace.id,
        rule_id,
        contact,
        occurrence,
        trigger,
        at,
        at + rule.delay().as_millis() as i64
    ])?;
    Ok(())
}

/// Acts on firings whose time has come: cancelled if the `unless` event followed in time
/// (or the rule or contact is gone), otherwise their deliveries are queued and the nudge is
/// written on the contact's timeline.
pub fn fire_due(c: &mut Connection, now: Timestamp, limit: usize) -> Result<JobReport> {
    let now_ms = now.as_millisecond();
    let tx = c.transaction()?;
    let waiting: Vec<(i64, WorkspaceId, i64, ContactId, String, i64)> = {
        let mut statement = tx.prepare_cached(
            "SELECT id, workspace_id, rule_id, contact_id, trigger, triggered_at FROM rule_firings
             WHERE state = 'waiting' AND due_at <= ?1 ORDER BY due_at, id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![now_ms, limit as i64], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut report = JobReport::default();
    let mut workspaces: HashMap<WorkspaceId, Workspace> = HashMap::new();
    for (firing, workspace_id, rule_id, contact_id, trigger, triggered_at) in waiting {
        if let std::collections::hash_map::Entry::Vacant(entry) = workspaces.entry(workspace_id) {
            if let Some(workspace) = admin::workspace(&tx, workspace_id)? {
                entry.insert(workspace);
            }
        }
        let rule = rule(&tx, workspace_id, rule_id)?.filter(|rule| rule.spec.enabled);
        let contact = read::contact(&tx, workspace_id, &ContactKey::Id(contact_id))?;
        let fires = match (&rule, &contact, workspaces.get(&workspace_id)) {
            (Some(rule), Some(_), Some(_)) => match &rule.spec.unless {
                None => true,
                Some(unless) => !tx
                    .prepare_cached(
                        "SELECT 1 FROM events WHERE contact_id = ?1 AND type = 'track' AND name = ?2
                           AND occurred_at >= ?3 AND occurred_at <= ?4",
                    )?
                    .exists(params![
                        contact_id,
                        unless.event,
                        triggered_at,
                        triggered_at + unless.within_hours * 3_600_000
                    ])?,
            },
            _ => false,
        };
        let state = if fires { "fired" } else { "cancelled" };
        let decided = tx
            .prepare_cached("UPDATE rule_firings SET state = ?2, decided_at = ?3 WHERE id = ?1 AND state = 'waiting'")?
            .execute(params![firing, state, now_ms])?
            > 0;
        if !decided {
            continue;
        }
        let (Some(rule), Some(contact), Some(workspace), true) = (rule, contact, workspaces.get(&workspace_id), fires)
        else {
            report.cancelled += 1;
            continue;
        };
        report.fired += 1;
        let (email, user_id) = segment_identity(&tx, contact_id)?.unwrap_or((contact.email.clone(), None));
        let who = SegmentIdentity { contact_id, email: &email, user_id: user_id.as_deref() };
        let fired = deliveries::Fired {
            origin: deliveries::Origin::Rule { firing_id: firing, rule_id },
            name: &rule.spec.name,
            contact: &contact,
            who,
            trigger: &trigger,
            workspace,
            at: now,
        };
        enqueue(
            &tx,
            workspace_id,
            &deliveries::for_firing(&fired, &rule.spec),
            Some(firing),
            Some(contact_id),
            now_ms,
        )?;
        tx.prepare_cached(
            "INSERT INTO interactions (workspace_id, contact_id, kind, day, occurred_at, description, hits, created_at)
             VALUES (?1, ?2, 'nudge', ?3, ?4, ?5, 1, ?4)",
        )?
        .execute(params![
            workspace_id,
            contact_id,
            day_key(now, &workspace.tz()),
            now_ms,
            format!("Nudge: {} ({trigger})", rule.spec.name)
        ])?;
    }
    tx.commit()?;
    Ok(report)
}

fn delivery_row(row: &Row) -> rusqlite::Result<Delivery> {
    let payload: String = row.get(4)?;
    Ok(Delivery {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        kind: row.get(2)?,
        target: row.get(3)?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
        status: row.get(5)?,
        attempts: row.get(6)?,
        next_attempt_at: from_millis(row.get(7)?),
        last_error: row.get(8)?,
        created_at: from_millis(row.get(9)?),
        sent_at: row.get::<_, Option<i64>>(10)?.map(from_millis),
    })
}

/// Leases up to `limit` deliveries due now; another worker sees them again only after the
/// lease ends (a worker that dies mid-send loses nothing).
pub fn claim_deliveries(c: &mut Connection, now: Timestamp, limit: usize, lease_ms: i64) -> Result<Vec<Delivery>> {
    let now_ms = now.as_millisecond();
    let mut statement = c.prepare_cached(&format!(
        "UPDATE outbox SET lease_until = ?2 WHERE id IN (
             SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?1
               AND (lease_until IS NULL OR lease_until <= ?1)
             ORDER BY next_attempt_at, id LIMIT ?3)
         RETURNING {DELIVERY_COLUMNS}"
    ))?;
    let rows = statement.query_map(params![now_ms, now_ms + lease_ms, limit as i64], delivery_row)?;
    let mut claimed: Vec<Delivery> = rows.collect::<rusqlite::Result<_>>()?;
    claimed.sort_by_key(|delivery| delivery.id);
    Ok(claimed)
}

/// Records how an attempt ended.
pub fn finish_delivery(c: &Connection, id: i64, result: &DeliveryResult, now: Timestamp) -> Result<()> {
    let now_ms = now.as_millisecond();
    match result {
        DeliveryResult::Sent => c.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1, lease_until = NULL,
                               last_error = NULL WHERE id = ?1",
            params![id, now_ms],
        )?,
        DeliveryResult::Retry { at, error } => c.execute(
            "UPDATE outbox SET next_attempt_at = ?2, attempts = attempts + 1, lease_until = NULL, last_error = ?3
             WHERE id = ?1",
            params![id, at.as_millisecond(), error],
        )?,
        DeliveryResult::Failed { error } => c.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, lease_until = NULL, last_error = ?2
             WHERE id = ?1",
            params![id, error],
        )?,
        DeliveryResult::Skipped { reason } => c.execute(
            "UPDATE outbox SET status = 'skipped', lease_until = NULL, last_error = ?2 WHERE id = ?1",
            params![id, reason],
        )?,
    };
    Ok(())
}

pub fn deliveries(
    c: &Connection,
    workspace: WorkspaceId,
    status: Option<&str>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<Delivery>> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE workspace_id = ?1 AND (?2 IS NULL OR status = ?2) AND id < ?3
         ORDER BY id DESC LIMIT ?4"
    ))?;
    let rows = statement
        .query_map(params![workspace, status, before.unwrap_or(i64::MAX), limit.clamp(1, 500) as i64], delivery_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Puts a failed delivery back in the queue as if new: attempts and the four-hour window
/// start again.
pub fn retry_delivery(c: &mut Connection, workspace: WorkspaceId, id: i64, now: Timestamp) -> Result<bool> {
    let now_ms = now.as_millisecond();
    Ok(c.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?3, created_at = ?3, lease_until = NULL
         WHERE id = ?1 AND workspace_id = ?2 AND status = 'failed'",
        params![id, workspace, now_ms],
    )? > 0)
}
