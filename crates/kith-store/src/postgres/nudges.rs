//! Rules, firings and the outbox on PostgreSQL, and the nudge job's passes: bucket changes and
//! due dates found by compare-and-set on the contact row, waiting firings claimed with
//! `FOR UPDATE SKIP LOCKED` and turned into deliveries, deliveries claimed with a lease. Every
//! node may run these passes at once on the same database.

use std::collections::HashMap;

use jiff::Timestamp;
use kith_core::closeness::{days_of_millis, Bucket};
use kith_core::rules::{RuleSpec, Trigger};
use kith_core::time::{day_key, from_millis};
use serde_json::{Map, Value};
use tokio_postgres::{Client, GenericClient, Row};

use super::{admin, journeys, read};
use crate::deliveries::{self, SegmentIdentity};
use crate::records::*;
use crate::sql::DELIVERY_COLUMNS;
use crate::{Result, StoreError};

const RULE_COLUMNS: &str = "id, spec, created_at, updated_at";

fn rule_row(row: &Row) -> Result<Rule> {
    let id: i64 = row.try_get(0)?;
    let spec: String = row.try_get(1)?;
    let spec = serde_json::from_str(&spec).map_err(|e| StoreError::caused(format!("rule {id}: invalid spec"), e))?;
    Ok(Rule { id, spec, created_at: from_millis(row.try_get(2)?), updated_at: from_millis(row.try_get(3)?) })
}

/// Enabled rules of a workspace.
pub async fn enabled_rules(c: &(impl GenericClient + Sync), workspace: WorkspaceId) -> Result<Vec<(i64, RuleSpec)>> {
    Ok(workspace_rules(c, workspace)
        .await?
        .into_iter()
        .filter(|rule| rule.spec.enabled)
        .map(|rule| (rule.id, rule.spec))
        .collect())
}

async fn workspace_rules(c: &(impl GenericClient + Sync), workspace: WorkspaceId) -> Result<Vec<Rule>> {
    let rows = c
        .query(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE workspace_id = $1 ORDER BY id"), &[&workspace])
        .await?;
    rows.iter().map(rule_row).collect()
}

async fn workspace_rule(c: &(impl GenericClient + Sync), workspace: WorkspaceId, id: i64) -> Result<Option<Rule>> {
    let row = c
        .query_opt(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE workspace_id = $1 AND id = $2"), &[&workspace, &id])
        .await?;
    row.as_ref().map(rule_row).transpose()
}

pub async fn rules(c: &Client, workspace: WorkspaceId) -> Result<Vec<Rule>> {
    workspace_rules(c, workspace).await
}

pub async fn rule(c: &Client, workspace: WorkspaceId, id: i64) -> Result<Option<Rule>> {
    workspace_rule(c, workspace, id).await
}

fn spec_json(spec: &RuleSpec) -> String {
    serde_json::to_string(spec).unwrap_or_default()
}

pub async fn create_rule(c: &Client, workspace: WorkspaceId, spec: &RuleSpec, now: i64) -> Result<Rule> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO rules (workspace_id, spec, enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
                 RETURNING {RULE_COLUMNS}"
            ),
            &[&workspace, &spec_json(spec), &spec.enabled, &now],
        )
        .await?;
    rule_row(&row)
}

pub async fn update_rule(
    c: &mut Client,
    workspace: WorkspaceId,
    id: i64,
    spec: &RuleSpec,
    now: i64,
) -> Result<Option<Rule>> {
    let row = c
        .query_opt(
            &format!(
                "UPDATE rules SET spec = $3, enabled = $4, updated_at = $5 WHERE workspace_id = $1 AND id = $2
                 RETURNING {RULE_COLUMNS}"
            ),
            &[&workspace, &id, &spec_json(spec), &spec.enabled, &now],
        )
        .await?;
    row.as_ref().map(rule_row).transpose()
}

/// Deletes a rule; its waiting firings are cancelled, its history kept.
pub async fn delete_rule(c: &mut Client, workspace: WorkspaceId, id: i64, now: i64) -> Result<bool> {
    let tx = c.transaction().await?;
    let deleted = tx.execute("DELETE FROM rules WHERE workspace_id = $1 AND id = $2", &[&workspace, &id]).await? > 0;
    // Only the rule's own workspace: an id named in another workspace touches nothing.
    if deleted {
        tx.execute(
            "UPDATE rule_firings SET state = 'cancelled', decided_at = $3
             WHERE rule_id = $1 AND workspace_id = $2 AND state = 'waiting'",
            &[&id, &workspace, &now],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(deleted)
}

pub async fn firings(
    c: &Client,
    workspace: WorkspaceId,
    rule: Option<i64>,
    contact: Option<ContactId>,
    limit: usize,
) -> Result<Vec<Firing>> {
    let rows = c
        .query(
            "SELECT id, rule_id, contact_id, trigger, triggered_at, due_at, state, decided_at FROM rule_firings
             WHERE workspace_id = $1 AND ($2::BIGINT IS NULL OR rule_id = $2) AND ($3::BIGINT IS NULL OR contact_id = $3)
             ORDER BY id DESC LIMIT $4",
            &[&workspace, &rule, &contact, &(limit.clamp(1, 1000) as i64)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Firing {
                id: row.try_get(0)?,
                rule_id: row.try_get(1)?,
                contact_id: row.try_get(2)?,
                trigger: row.try_get(3)?,
                triggered_at: from_millis(row.try_get(4)?),
                due_at: from_millis(row.try_get(5)?),
                state: row.try_get(6)?,
                decided_at: row.try_get::<_, Option<i64>>(7)?.map(from_millis),
            })
        })
        .collect()
}

/// Queues deliveries, in one statement; ids follow the order given. `firing` and `contact`
/// say which rule firing they come from and which contact they are about, when they are
/// (erasing the contact erases them).
pub async fn enqueue(
    c: &(impl GenericClient + Sync),
    workspace: WorkspaceId,
    deliveries: &[NewDelivery],
    firing: Option<i64>,
    contact: Option<ContactId>,
    now: i64,
) -> Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = deliveries.iter().map(|delivery| delivery.kind.as_str()).collect();
    let targets: Vec<&str> = deliveries.iter().map(|delivery| delivery.target.as_str()).collect();
    let payloads: Vec<String> = deliveries.iter().map(|delivery| delivery.payload.to_string()).collect();
    c.execute(
        "INSERT INTO outbox (workspace_id, kind, target, payload, status, next_attempt_at, created_at, firing_id,
                             contact_id)
         SELECT $1, kind, target, payload, 'pending', $5, $5, $6, $7
         FROM unnest($2::TEXT[], $3::TEXT[], $4::TEXT[]) WITH ORDINALITY AS d (kind, target, payload, n)
         ORDER BY n",
        &[&workspace, &kinds, &targets, &payloads, &now, &firing, &contact],
    )
    .await?;
    Ok(())
}

/// The contact's email and first userId, for the track calls kith sends about it.
pub(super) async fn segment_identity(
    c: &(impl GenericClient + Sync),
    contact: ContactId,
) -> Result<Option<(String, Option<String>)>> {
    let Some(row) = c.query_opt("SELECT email FROM contacts WHERE id = $1", &[&contact]).await? else {
        return Ok(None);
    };
    let email: String = row.try_get(0)?;
    let user_id: Option<String> = c
        .query_opt(
            "SELECT value FROM identities WHERE contact_id = $1 AND kind = 'user_id' ORDER BY created_at, value LIMIT 1",
            &[&contact],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    Ok(Some((email, user_id)))
}

/// Queues a track call about a contact to the workspace's outbound Segment host, if any.
pub async fn enqueue_track(
    c: &(impl GenericClient + Sync),
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
    let Some((email, user_id)) = segment_identity(c, contact).await? else { return Ok(()) };
    let who = SegmentIdentity { contact_id: contact, email: &email, user_id: user_id.as_deref() };
    let payload = deliveries::segment_track(&who, event, properties, from_millis(at));
    let delivery = NewDelivery { kind: "segment".into(), target: host.clone(), payload };
    enqueue(c, workspace.id, &[delivery], None, Some(contact), now).await
}

/// The SQL expression of a contact's bucket at the moment the three thresholds were taken for.
const BUCKET_SQL: &str = "CASE WHEN closeness_key >= $2 THEN 'close' WHEN closeness_key >= $3 THEN 'warm'
                              WHEN closeness_key >= $4 THEN 'cooling' ELSE 'cold' END";

/// Finds contacts whose bucket changed or that became due, and records what rules and
/// outbound Segment make of it. Each change is claimed by compare-and-set on the contact
/// row, so it fires once even when several nodes run the job.
pub async fn evaluate_contacts(c: &mut Client, now: Timestamp) -> Result<JobReport> {
    let now_ms = now.as_millisecond();
    let now_days = days_of_millis(now_ms);
    let mut report = JobReport::default();
    for workspace in admin::workspaces(&*c).await? {
        let tx = c.transaction().await?;
        // The buckets are computed from closeness keys that ingest rewrites; holding the
        // writers' lock keeps them still meanwhile, and keeps this pass's row locks from
        // interleaving with an ingest batch's (which would deadlock one of them).
        super::lock_contacts(&tx).await?;
        let rules = enabled_rules(&tx, workspace.id).await?;
        let journeys = journeys::enabled_journeys(&tx, workspace.id).await?;
        let model = workspace.model();
        let thresholds: Vec<f64> = [Bucket::Close, Bucket::Warm, Bucket::Cooling]
            .iter()
            .map(|bucket| model.key_for_score(bucket.min_score(), now_days).unwrap_or(f64::MIN))
            .collect();
        let changed: Vec<(ContactId, Option<String>, String)> = tx
            .query(
                &format!(
                    "SELECT id, bucket, {BUCKET_SQL} FROM contacts
                     WHERE workspace_id = $1 AND COALESCE(bucket, 'cold') != {BUCKET_SQL} ORDER BY id"
                ),
                &[&workspace.id, &thresholds[0], &thresholds[1], &thresholds[2]],
            )
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<_>>()?;
        for (contact, old, new) in changed {
            let claimed = tx
                .execute(
                    "UPDATE contacts SET bucket = $2 WHERE id = $1 AND bucket IS NOT DISTINCT FROM $3",
                    &[&contact, &new, &old],
                )
                .await?
                > 0;
            if !claimed {
                continue;
            }
            report.bucket_changes += 1;
            let Some(change) = deliveries::BucketChange::new(old.as_deref(), &new, now_ms) else { continue };
            for (rule_id, rule) in rules.iter().filter(|(_, rule)| change.fires(rule)) {
                insert_firing(&tx, &workspace, *rule_id, rule, contact, &change.source, &change.description, now_ms)
                    .await?;
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
            )
            .await?;
            if let Some((event, properties)) = change.track() {
                enqueue_track(&tx, &workspace, contact, event, properties, now_ms, now_ms).await?;
            }
        }

        let due_rules: Vec<&(i64, RuleSpec)> =
            rules.iter().filter(|(_, rule)| matches!(rule.when, Trigger::BecomesDue {})).collect();
        let due_journeys = journeys.iter().any(|(_, journey)| matches!(journey.when, Trigger::BecomesDue {}));
        if !due_rules.is_empty() || due_journeys {
            let became_due: Vec<(ContactId, i64)> = tx
                .query(
                    "SELECT id, due_at FROM contacts WHERE workspace_id = $1 AND due_at IS NOT NULL AND due_at <= $2
                       AND (due_notified_at IS NULL OR due_notified_at != due_at) ORDER BY id",
                    &[&workspace.id, &now_ms],
                )
                .await?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<_>>()?;
            for (contact, due_at) in became_due {
                let claimed = tx
                    .execute(
                        "UPDATE contacts SET due_notified_at = $2 WHERE id = $1 AND due_at = $2
                           AND (due_notified_at IS NULL OR due_notified_at != $2)",
                        &[&contact, &due_at],
                    )
                    .await?
                    > 0;
                if !claimed {
                    continue;
                }
                report.became_due += 1;
                let (source, description) = deliveries::became_due(due_at);
                for (rule_id, rule) in &due_rules {
                    insert_firing(&tx, &workspace, *rule_id, rule, contact, &source, description, now_ms).await?;
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
                )
                .await?;
            }
        }
        tx.commit().await?;
    }
    Ok(report)
}

/// Records that a rule fired for a contact; the unique (rule, contact, occurrence) index makes
/// a second record of the same occurrence a no-op.
#[allow(clippy::too_many_arguments)]
async fn insert_firing(
    c: &(impl GenericClient + Sync),
    workspace: &Workspace,
    rule_id: i64,
    rule: &RuleSpec,
    contact: ContactId,
    occurrence: &str,
    trigger: &str,
    at: i64,
) -> Result<()> {
    c.execute(
        "INSERT INTO rule_firings (workspace_id, rule_id, contact_id, occurrence, trigger, triggered_at, due_at, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'waiting') ON CONFLICT DO NOTHING",
        &[&workspace.id, &rule_id, &contact, &occurrence, &trigger, &at, &(at + rule.delay().as_millis() as i64)],
    )
    .await?;
    Ok(())
}

/// Acts on firings whose time has come: cancelled if the `unless` event followed in time
/// (or the rule or contact is gone), otherwise their deliveries are queued and the nudge is
/// written on the contact's timeline. The firings are locked with `SKIP LOCKED`, so nodes
/// running this at once share the work and never act on the same firing.
pub async fn fire_due(c: &mut Client, now: Timestamp, limit: usize) -> Result<JobReport> {
    let now_ms = now.as_millisecond();
    let tx = c.transaction().await?;
    let waiting: Vec<(i64, WorkspaceId, i64, ContactId, String, i64)> = tx
        .query(
            "SELECT id, workspace_id, rule_id, contact_id, trigger, triggered_at FROM rule_firings
             WHERE state = 'waiting' AND due_at <= $1 ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&now_ms, &(limit as i64)],
        )
        .await?
        .iter()
        .map(|row| {
            Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?, row.try_get(5)?))
        })
        .collect::<Result<_>>()?;
    let mut report = JobReport::default();
    let mut workspaces: HashMap<WorkspaceId, Workspace> = HashMap::new();
    for (firing, workspace_id, rule_id, contact_id, trigger, triggered_at) in waiting {
        if let std::collections::hash_map::Entry::Vacant(entry) = workspaces.entry(workspace_id) {
            if let Some(workspace) = admin::workspace(&tx, workspace_id).await? {
                entry.insert(workspace);
            }
        }
        let rule = workspace_rule(&tx, workspace_id, rule_id).await?.filter(|rule| rule.spec.enabled);
        let contact = read::contact(&tx, workspace_id, &ContactKey::Id(contact_id)).await?;
        let fires = match (&rule, &contact, workspaces.get(&workspace_id)) {
            (Some(rule), Some(_), Some(_)) => match &rule.spec.unless {
                None => true,
                Some(unless) => tx
                    .query_opt(
                        "SELECT 1 FROM events WHERE contact_id = $1 AND type = 'track' AND name = $2
                           AND occurred_at >= $3 AND occurred_at <= $4 LIMIT 1",
                        &[&contact_id, &unless.event, &triggered_at, &(triggered_at + unless.within_hours * 3_600_000)],
                    )
                    .await?
                    .is_none(),
            },
            _ => false,
        };
        let state = if fires { "fired" } else { "cancelled" };
        let decided = tx
            .execute(
                "UPDATE rule_firings SET state = $2, decided_at = $3 WHERE id = $1 AND state = 'waiting'",
                &[&firing, &state, &now_ms],
            )
            .await?
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
        let (email, user_id) = segment_identity(&tx, contact_id).await?.unwrap_or((contact.email.clone(), None));
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
        enqueue(&tx, workspace_id, &deliveries::for_firing(&fired, &rule.spec), Some(firing), Some(contact_id), now_ms)
            .await?;
        tx.execute(
            "INSERT INTO interactions (workspace_id, contact_id, kind, day, occurred_at, description, hits, created_at)
             VALUES ($1, $2, 'nudge', $3, $4, $5, 1, $4)",
            &[
                &workspace_id,
                &contact_id,
                &day_key(now, &workspace.tz()),
                &now_ms,
                &format!("Nudge: {} ({trigger})", rule.spec.name),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(report)
}

fn delivery_row(row: &Row) -> Result<Delivery> {
    let payload: String = row.try_get(4)?;
    Ok(Delivery {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        kind: row.try_get(2)?,
        target: row.try_get(3)?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
        status: row.try_get(5)?,
        attempts: row.try_get(6)?,
        next_attempt_at: from_millis(row.try_get(7)?),
        last_error: row.try_get(8)?,
        created_at: from_millis(row.try_get(9)?),
        sent_at: row.try_get::<_, Option<i64>>(10)?.map(from_millis),
    })
}

/// Leases up to `limit` deliveries due now; another worker sees them again only after the
/// lease ends (a worker that dies mid-send loses nothing). Rows another node is leasing at
/// this very moment are skipped rather than waited for.
pub async fn claim_deliveries(c: &Client, now: Timestamp, limit: usize, lease_ms: i64) -> Result<Vec<Delivery>> {
    let now_ms = now.as_millisecond();
    let rows = c
        .query(
            &format!(
                "UPDATE outbox SET lease_until = $2 WHERE id IN (
                     SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1
                       AND (lease_until IS NULL OR lease_until <= $1)
                     ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING {DELIVERY_COLUMNS}"
            ),
            &[&now_ms, &(now_ms + lease_ms), &(limit as i64)],
        )
        .await?;
    let mut claimed: Vec<Delivery> = rows.iter().map(delivery_row).collect::<Result<_>>()?;
    claimed.sort_by_key(|delivery| delivery.id);
    Ok(claimed)
}

/// Records how an attempt ended.
pub async fn finish_delivery(
    c: &(impl GenericClient + Sync),
    id: i64,
    result: &DeliveryResult,
    now: Timestamp,
) -> Result<()> {
    let now_ms = now.as_millisecond();
    match result {
        DeliveryResult::Sent => {
            c.execute(
                "UPDATE outbox SET status = 'sent', sent_at = $2, attempts = attempts + 1, lease_until = NULL,
                                   last_error = NULL WHERE id = $1",
                &[&id, &now_ms],
            )
            .await?
        }
        DeliveryResult::Retry { at, error } => {
            c.execute(
                "UPDATE outbox SET next_attempt_at = $2, attempts = attempts + 1, lease_until = NULL, last_error = $3
                 WHERE id = $1",
                &[&id, &at.as_millisecond(), error],
            )
            .await?
        }
        DeliveryResult::Failed { error } => {
            c.execute(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, lease_until = NULL, last_error = $2
                 WHERE id = $1",
                &[&id, error],
            )
            .await?
        }
        DeliveryResult::Skipped { reason } => {
            c.execute(
                "UPDATE outbox SET status = 'skipped', lease_until = NULL, last_error = $2 WHERE id = $1",
                &[&id, reason],
            )
            .await?
        }
    };
    Ok(())
}

pub async fn deliveries(
    c: &Client,
    workspace: WorkspaceId,
    status: Option<&str>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<Delivery>> {
    let rows = c
        .query(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox
                 WHERE workspace_id = $1 AND ($2::TEXT IS NULL OR status = $2) AND id < $3
                 ORDER BY id DESC LIMIT $4"
            ),
            &[&workspace, &status, &before.unwrap_or(i64::MAX), &(limit.clamp(1, 500) as i64)],
        )
        .await?;
    rows.iter().map(delivery_row).collect()
}

/// Puts a failed delivery back in the queue as if new: attempts and the four-hour window
/// start again.
pub async fn retry_delivery(c: &Client, workspace: WorkspaceId, id: i64, now: Timestamp) -> Result<bool> {
    let now_ms = now.as_millisecond();
    Ok(c.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $3, created_at = $3, lease_until = NULL
         WHERE id = $1 AND workspace_id = $2 AND status = 'failed'",
        &[&id, &workspace, &now_ms],
    )
    .await?
        > 0)
}
