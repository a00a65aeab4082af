//! Account health on PostgreSQL: the workspace's model, CSM ratings, the event counts the
//! score is computed from, and the daily history.

use kith_core::time::from_millis;
use tokio_postgres::{Client, Row};

use crate::records::*;
use crate::Result;

pub async fn health_model(c: &mut Client, workspace: WorkspaceId) -> Result<Option<String>> {
    let row = c.query_opt("SELECT model FROM health_models WHERE workspace_id = $1", &[&workspace]).await?;
    Ok(row.map(|row| row.get(0)))
}

pub async fn set_health_model(c: &mut Client, workspace: WorkspaceId, model: &str, now: i64) -> Result<()> {
    c.execute(
        "INSERT INTO health_models (workspace_id, model, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (workspace_id) DO UPDATE SET model = excluded.model, updated_at = excluded.updated_at",
        &[&workspace, &model, &now],
    )
    .await?;
    Ok(())
}

pub async fn account_rating(c: &mut Client, workspace: WorkspaceId, account: i64) -> Result<Option<i64>> {
    let row = c
        .query_opt(
            "SELECT rating FROM account_ratings WHERE account_id = $1 AND workspace_id = $2",
            &[&account, &workspace],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

pub async fn set_account_rating(
    c: &mut Client,
    workspace: WorkspaceId,
    account: i64,
    rating: Option<i64>,
    now: i64,
) -> Result<()> {
    match rating {
        Some(rating) => {
            c.execute(
                "INSERT INTO account_ratings (account_id, workspace_id, rating, rated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account_id) DO UPDATE SET rating = excluded.rating, rated_at = excluded.rated_at",
                &[&account, &workspace, &rating, &now],
            )
            .await?
        }
        None => {
            c.execute(
                "DELETE FROM account_ratings WHERE account_id = $1 AND workspace_id = $2",
                &[&account, &workspace],
            )
            .await?
        }
    };
    Ok(())
}

pub async fn member_event_counts(
    c: &mut Client,
    workspace: WorkspaceId,
    account: i64,
    since_ms: i64,
    until_ms: i64,
    event: Option<&str>,
) -> Result<MemberEventCounts> {
    // Through account_members to each member's event stream (the events_stream index).
    let row = c
        .query_one(
            "SELECT count(*), count(DISTINCT e.contact_id)
             FROM account_members m JOIN events e ON e.contact_id = m.contact_id
             WHERE m.account_id = $1 AND e.workspace_id = $2 AND e.occurred_at >= $3 AND e.occurred_at < $4
               AND e.type IN ('track', 'page', 'screen')
               AND ($5::text IS NULL OR (e.type = 'track' AND e.name = $5))",
            &[&account, &workspace, &since_ms, &until_ms, &event],
        )
        .await?;
    Ok(MemberEventCounts { events: row.get(0), members: row.get(1) })
}

pub async fn record_health(c: &mut Client, workspace: WorkspaceId, record: &HealthRecord) -> Result<()> {
    c.execute(
        "INSERT INTO account_health_history (account_id, workspace_id, day, score, band, factors, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (account_id, day) DO UPDATE SET score = excluded.score, band = excluded.band,
             factors = excluded.factors, recorded_at = excluded.recorded_at",
        &[
            &record.account_id,
            &workspace,
            &record.day,
            &record.score,
            &record.band,
            &record.factors,
            &record.recorded_at.as_millisecond(),
        ],
    )
    .await?;
    Ok(())
}

pub async fn health_history(
    c: &mut Client,
    workspace: WorkspaceId,
    account: i64,
    limit: usize,
) -> Result<Vec<HealthRecord>> {
    let rows = c
        .query(
            "SELECT account_id, day, score, band, factors, recorded_at FROM account_health_history
             WHERE account_id = $1 AND workspace_id = $2 ORDER BY day DESC LIMIT $3",
            &[&account, &workspace, &(limit as i64)],
        )
        .await?;
    Ok(rows.iter().map(health_record).collect())
}

fn health_record(row: &Row) -> HealthRecord {
    HealthRecord {
        account_id: row.get(0),
        day: row.get(1),
        score: row.get(2),
        band: row.get(3),
        factors: row.get(4),
        recorded_at: from_millis(row.get(5)),
    }
}

pub async fn health_records(c: &Client, workspace: WorkspaceId, since_day: i32) -> Result<Vec<HealthRecord>> {
    let rows = c
        .query(
            "SELECT account_id, day, score, band, factors, recorded_at FROM account_health_history
             WHERE workspace_id = $1 AND day >= $2 ORDER BY account_id, day",
            &[&workspace, &since_day],
        )
        .await?;
    Ok(rows.iter().map(health_record).collect())
}

pub async fn account_memberships(c: &Client, workspace: WorkspaceId) -> Result<Vec<(i64, ContactId)>> {
    let rows = c
        .query(
            "SELECT m.account_id, m.contact_id FROM account_members m JOIN accounts a ON a.id = m.account_id
             WHERE a.workspace_id = $1 ORDER BY m.account_id, m.contact_id",
            &[&workspace],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Replaces the account's observed score and band, returning the one before. The row is
/// locked between the read and the write, so of two nodes observing at once the second sees
/// the first's observation.
pub async fn observe_health(
    c: &mut Client,
    workspace: WorkspaceId,
    account: i64,
    observation: &HealthObservation,
    now: i64,
) -> Result<Option<HealthObservation>> {
    let tx = c.transaction().await?;
    let previous = tx
        .query_opt(
            "SELECT score, band FROM account_health_state WHERE account_id = $1 AND workspace_id = $2 FOR UPDATE",
            &[&account, &workspace],
        )
        .await?
        .map(|row| HealthObservation { score: row.get(0), band: row.get(1) });
    tx.execute(
        "INSERT INTO account_health_state (account_id, workspace_id, score, band, observed_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (account_id) DO UPDATE SET score = excluded.score, band = excluded.band,
             observed_at = excluded.observed_at",
        &[&account, &workspace, &observation.score, &observation.band, &now],
    )
    .await?;
    tx.commit().await?;
    Ok(previous)
}

/// Records the firing and queues its deliveries unless this occurrence was recorded before.
pub async fn fire_for_account(
    c: &mut Client,
    workspace: WorkspaceId,
    firing: &NewAccountFiring,
    deliveries: &[NewDelivery],
    now: i64,
) -> Result<bool> {
    let tx = c.transaction().await?;
    let inserted = tx
        .execute(
            "INSERT INTO account_firings (workspace_id, rule_id, account_id, occurrence, trigger, triggered_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[&workspace, &firing.rule_id, &firing.account_id, &firing.occurrence, &firing.trigger, &now],
        )
        .await?
        > 0;
    if inserted {
        super::nudges::enqueue(&tx, workspace, deliveries, None, None, now).await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

pub async fn account_firings(
    c: &mut Client,
    workspace: WorkspaceId,
    rule: Option<i64>,
    account: Option<i64>,
    limit: usize,
) -> Result<Vec<AccountFiring>> {
    let rows = c
        .query(
            "SELECT id, rule_id, account_id, trigger, triggered_at FROM account_firings
             WHERE workspace_id = $1 AND ($2::BIGINT IS NULL OR rule_id = $2) AND ($3::BIGINT IS NULL OR account_id = $3)
             ORDER BY id DESC LIMIT $4",
            &[&workspace, &rule, &account, &(limit.clamp(1, 1000) as i64)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| AccountFiring {
            id: row.get(0),
            rule_id: row.get(1),
            account_id: row.get(2),
            trigger: row.get(3),
            triggered_at: from_millis(row.get(4)),
        })
        .collect())
}
