//! Rebuilding a workspace's history from its stored events, a few thousand contacts per
//! transaction (see [`Reprojection`]).

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{admin, write};
use crate::plan::{activity_days, reparse};
use crate::records::*;
use crate::state::millis_of_days;
use crate::{Result, StoreError};

const COLUMNS: &str = "workspace_id, reason, requested_at, contacts_total, contacts_done, events_done, finished_at";

fn reprojection_row(row: &Row) -> rusqlite::Result<Reprojection> {
    Ok(Reprojection {
        workspace_id: row.get(0)?,
        reason: row.get(1)?,
        requested_at: kith_core::time::from_millis(row.get(2)?),
        contacts_total: row.get(3)?,
        contacts_done: row.get(4)?,
        events_done: row.get(5)?,
        finished_at: row.get::<_, Option<i64>>(6)?.map(kith_core::time::from_millis),
    })
}

/// Asks for the workspace's history to be rebuilt, from its first contact: a reprojection
/// under way starts over, since what it rebuilt may no longer hold.
pub fn request(c: &Connection, workspace: WorkspaceId, reason: &str, now: i64) -> Result<()> {
    let total: i64 =
        c.query_row("SELECT count(*) FROM contacts WHERE workspace_id = ?1", [workspace], |row| row.get(0))?;
    c.execute(
        "INSERT INTO reprojections (workspace_id, reason, requested_at, done_through, contacts_total, contacts_done,
                                    events_done, finished_at)
         VALUES (?1, ?2, ?3, 0, ?4, 0, 0, NULL)
         ON CONFLICT (workspace_id) DO UPDATE SET
             reason = excluded.reason, requested_at = excluded.requested_at, done_through = 0,
             contacts_total = excluded.contacts_total, contacts_done = 0, events_done = 0, finished_at = NULL",
        params![workspace, reason, now, total],
    )?;
    Ok(())
}

/// The workspace's latest reprojection.
pub fn status(c: &Connection, workspace: WorkspaceId) -> Result<Option<Reprojection>> {
    Ok(c.query_row(
        &format!("SELECT {COLUMNS} FROM reprojections WHERE workspace_id = ?1"),
        [workspace],
        reprojection_row,
    )
    .optional()?)
}

/// Rebuilds the next `limit` contacts of the oldest unfinished reprojection: their activity
/// days from their events, in the workspace's zone, and their closeness from all their
/// interactions. The step and its progress commit together, so a crash repeats at most the
/// step, which gives the same result again.
pub fn step(c: &mut Connection, limit: usize, now: i64) -> Result<Option<ReprojectionStep>> {
    let tx = c.transaction()?;
    let Some((workspace_id, cursor)) = tx
        .query_row(
            "SELECT workspace_id, done_through FROM reprojections WHERE finished_at IS NULL
             ORDER BY requested_at, workspace_id LIMIT 1",
            [],
            |row| Ok((row.get::<_, WorkspaceId>(0)?, row.get::<_, ContactId>(1)?)),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let workspace = admin::workspace(&tx, workspace_id)?
        .ok_or_else(|| StoreError::NotFound(format!("workspace {workspace_id}")))?;
    let (tz, model) = (workspace.tz(), workspace.model());
    let contacts: Vec<ContactId> = tx
        .prepare("SELECT id FROM contacts WHERE workspace_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3")?
        .query_map(params![workspace_id, cursor, limit as i64], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut step = ReprojectionStep { workspace_id, contacts: contacts.len() as u64, ..ReprojectionStep::default() };
    {
        let mut events = tx.prepare(
            "SELECT id, workspace_id, type, payload, occurred_at, received_at FROM events WHERE contact_id = ?1",
        )?;
        let mut forget = tx.prepare("DELETE FROM interactions WHERE contact_id = ?1 AND kind = 'activity'")?;
        let mut insert = tx.prepare(
            "INSERT INTO interactions (workspace_id, contact_id, kind, day, occurred_at, description, hits, created_at)
             VALUES (?1, ?2, 'activity', ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut closeness =
            tx.prepare("UPDATE contacts SET closeness_key = ?2, closeness_last_t = ?3, warm_until = ?4 WHERE id = ?1")?;
        for contact in &contacts {
            let stored = events.query_map([contact], write::pending_event)?.collect::<rusqlite::Result<Vec<_>>>()?;
            step.events += stored.len() as u64;
            let parsed: Vec<kith_core::Event> = stored.iter().filter_map(reparse).collect();
            forget.execute([contact])?;
            for (day, activity) in activity_days(workspace_id, &parsed, &tz) {
                insert.execute(params![
                    workspace_id,
                    contact,
                    day,
                    activity.occurred_at,
                    activity.description,
                    activity.hits,
                    now
                ])?;
            }
            let history = write::closeness_history(&tx, &model, *contact)?;
            closeness.execute(params![contact, history.key, history.last_t, history.warm_until.map(millis_of_days)])?;
        }
    }
    step.finished = contacts.len() < limit;
    tx.execute(
        "UPDATE reprojections SET done_through = ?2, contacts_done = contacts_done + ?3, events_done = events_done + ?4,
                                  finished_at = ?5
         WHERE workspace_id = ?1",
        params![
            workspace_id,
            contacts.last().copied().unwrap_or(cursor),
            step.contacts as i64,
            step.events as i64,
            step.finished.then_some(now)
        ],
    )?;
    tx.commit()?;
    Ok(Some(step))
}
