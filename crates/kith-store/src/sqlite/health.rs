//! Account health on SQLite: the workspace's model, CSM ratings, the event counts the score
//! is computed from, and the daily history.

use kith_core::time::from_millis;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::records::*;
use crate::Result;

pub fn health_model(c: &Connection, workspace: WorkspaceId) -> Result<Option<String>> {
    Ok(c.query_row("SELECT model FROM health_models WHERE workspace_id = ?1", [workspace], |row| row.get(0))
        .optional()?)
}

pub fn set_health_model(c: &mut Connection, workspace: WorkspaceId, model: &str, now: i64) -> Result<()> {
    c.execute(
        "INSERT INTO health_models (workspace_id, model, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (workspace_id) DO UPDATE SET model = excluded.model, updated_at = excluded.updated_at",
        params![workspace, model, now],
    )?;
    Ok(())
}

pub fn account_rating(c: &Connection, workspace: WorkspaceId, account: i64) -> Result<Option<i64>> {
    Ok(c.query_row(
        "SELECT rating FROM account_ratings WHERE account_id = ?1 AND workspace_id = ?2",
        params![account, workspace],
        |row| row.get(0),
    )
    .optional()?)
}

pub fn set_account_rating(
    c: &mut Connection,
    workspace: WorkspaceId,
    account: i64,
    rating: Option<i64>,
    now: i64,
) -> Result<()> {
    match rating {
        Some(rating) => c.execute(
            "INSERT INTO account_ratings (account_id, workspace_id, rating, rated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (account_id) DO UPDATE SET rating = excluded.rating, rated_at = excluded.rated_at",
            params![account, workspace, rating, now],
        )?,
        None => c.execute(
            "DELETE FROM account_ratings WHERE account_id = ?1 AND workspace_id = ?2",
            params![account, workspace],
        )?,
    };
    Ok(())
}

pub fn member_event_counts(
    c: &Connection,
    workspace: WorkspaceId,
    account: i64,
    since_ms: i64,
    until_ms: i64,
    event: Option<&str>,
) -> Result<MemberEventCounts> {
    // Through account_members to each member's event stream (the events_stream index).
    let mut statement = c.prepare_cached(
        "SELECT count(*), count(DISTINCT e.contact_id)
         FROM account_members m JOIN events e ON e.contact_id = m.contact_id
         WHERE m.account_id = ?1 AND e.workspace_id = ?2 AND e.occurred_at >= ?3 AND e.occurred_at < ?4
           AND e.type IN ('track', 'page', 'screen')
           AND (?5 IS NULL OR (e.type = 'track' AND e.name = ?5))",
    )?;
    Ok(statement.query_row(params![account, workspace, since_ms, until_ms, event], |row| {
        Ok(MemberEventCounts { events: row.get(0)?, members: row.get(1)? })
    })?)
}

pub fn record_health(c: &mut Connection, workspace: WorkspaceId, record: &HealthRecord) -> Result<()> {
    c.execute(
        "INSERT INTO account_health_history (account_id, workspace_id, day, score, band, factors, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (account_id, day) DO UPDATE SET score = excluded.score, band = excluded.band,
             factors = excluded.factors, recorded_at = excluded.recorded_at",
        params![
            record.account_id,
            workspace,
            record.day,
            record.score,
            record.band,
            record.factors,
            record.recorded_at.as_millisecond()
        ],
    )?;
    Ok(())
}

pub fn health_history(c: &Connection, workspace: WorkspaceId, account: i64, limit: usize) -> Result<Vec<HealthRecord>> {
    let mut statement = c.prepare_cached(
        "SELECT account_id, day, score, band, factors, recorded_at FROM account_health_history
         WHERE account_id = ?1 AND workspace_id = ?2 ORDER BY day DESC LIMIT ?3",
    )?;
    let rows = statement.query_map(params![account, workspace, limit as i64], health_record)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Replaces the account's observed score and band, returning the one before. The single
/// write connection makes the read and the replacement one step.
pub fn observe_health(
    c: &mut Connection,
    workspace: WorkspaceId,
    account: i64,
    observation: &HealthObservation,
    now: i64,
) -> Result<Option<HealthObservation>> {
    let tx = c.transaction()?;
    let previous = tx
        .query_row(
            "SELECT score, band FROM account_health_state WHERE account_id = ?1 AND workspace_id = ?2",
            params![account, workspace],
            |row| Ok(HealthObservation { score: row.get(0)?, band: row.get(1)? }),
        )
        .optional()?;
    tx.execute(
        "INSERT INTO account_health_state (account_id, workspace_id, score, band, observed_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (account_id) DO UPDATE SET score = excluded.score, band = excluded.band,
             observed_at = excluded.observed_at",
        params![account, workspace, observation.score, observation.band, now],
    )?;
    tx.commit()?;
    Ok(previous)
}

/// Records the firing and queues its deliveries unless this occurrence was recorded before.
pub fn fire_for_account(
    c: &mut Connection,
    workspace: WorkspaceId,
    firing: &NewAccountFiring,
    deliveries: &[NewDelivery],
    now: i64,
) -> Result<bool> {
    let tx = c.transaction()?;
    let inserted = tx.execute(
        "INSERT INTO account_firings (workspace_id, rule_id, account_id, occurrence, trigger, triggered_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        params![workspace, firing.rule_id, firing.account_id, firing.occurrence, firing.trigger, now],
    )? > 0;
    if inserted {
        super::nudges::enqueue(&tx, workspace, deliveries, None, None, now)?;
    }
    tx.commit()?;
    Ok(inserted)
}

pub fn account_firings(
    c: &Connection,
    workspace: WorkspaceId,
    rule: Option<i64>,
    account: Option<i64>,
    limit: usize,
) -> Result<Vec<AccountFiring>> {
    let mut statement = c.prepare_cached(
        "SELECT id, rule_id, account_id, trigger, triggered_at FROM account_firings
         WHERE workspace_id = ?1 AND (?2 IS NULL OR rule_id = ?2) AND (?3 IS NULL OR account_id = ?3)
         ORDER BY id DESC LIMIT ?4",
    )?;
    let rows = statement.query_map(params![workspace, rule, account, limit.clamp(1, 1000) as i64], |row| {
        Ok(AccountFiring {
            id: row.get(0)?,
            rule_id: row.get(1)?,
            account_id: row.get(2)?,
            trigger: row.get(3)?,
            triggered_at: from_millis(row.get(4)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn health_records(c: &Connection, workspace: WorkspaceId, since_day: i32) -> Result<Vec<HealthRecord>> {
    let mut statement = c.prepare_cached(
        "SELECT account_id, day, score, band, factors, recorded_at FROM account_health_history
         WHERE workspace_id = ?1 AND day >= ?2 ORDER BY account_id, day",
    )?;
    let rows = statement.query_map(params![workspace, since_day], health_record)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn account_memberships(c: &Connection, workspace: WorkspaceId) -> Result<Vec<(i64, ContactId)>> {
    let mut statement = c.prepare_cached(
        "SELECT m.account_id, m.contact_id FROM account_members m JOIN accounts a ON a.id = m.account_id
         WHERE a.workspace_id = ?1 ORDER BY m.account_id, m.contact_id",
    )?;
    let rows = statement.query_map(params![workspace], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn health_record(row: &Row) -> rusqlite::Result<HealthRecord> {
    Ok(HealthRecord {
        account_id: row.get(0)?,
        day: row.get(1)?,
        score: row.get(2)?,
        band: row.get(3)?,
        factors: row.get(4)?,
        recorded_at: from_millis(row.get(5)?),
    })
}
