//! Rebuilding a workspace's history from its stored events, a few thousand contacts per
//! transaction (see [`Reprojection`]).

use std::collections::HashMap;

use tokio_postgres::{Client, GenericClient, Row};

use super::{admin, lock_contacts, write};
use crate::plan::{activity_days, reparse};
use crate::records::*;
use crate::state::millis_of_days;
use crate::{Result, StoreError};

const COLUMNS: &str = "workspace_id, reason, requested_at, contacts_total, contacts_done, events_done, finished_at";

fn reprojection_row(row: &Row) -> Reprojection {
    Reprojection {
        workspace_id: row.get(0),
        reason: row.get(1),
        requested_at: kith_core::time::from_millis(row.get(2)),
        contacts_total: row.get(3),
        contacts_done: row.get(4),
        events_done: row.get(5),
        finished_at: row.get::<_, Option<i64>>(6).map(kith_core::time::from_millis),
    }
}

/// Asks for the workspace's history to be rebuilt, from its first contact: a reprojection
/// under way starts over, since what it rebuilt may no longer hold.
pub async fn request(c: &impl GenericClient, workspace: WorkspaceId, reason: &str, now: i64) -> Result<()> {
    let total: i64 = c.query_one("SELECT count(*) FROM contacts WHERE workspace_id = $1", &[&workspace]).await?.get(0);
    c.execute(
        "INSERT INTO reprojections (workspace_id, reason, requested_at, done_through, contacts_total, contacts_done,
                                    events_done, finished_at)
         VALUES ($1, $2, $3, 0, $4, 0, 0, NULL)
         ON CONFLICT (workspace_id) DO UPDATE SET
             reason = excluded.reason, requested_at = excluded.requested_at, done_through = 0,
             contacts_total = excluded.contacts_total, contacts_done = 0, events_done = 0, finished_at = NULL",
        &[&workspace, &reason, &now, &total],
    )
    .await?;
    Ok(())
}

/// [`request`], then the reprojection as it now stands.
pub async fn request_and_status(
    c: &mut Client,
    workspace: WorkspaceId,
    reason: &str,
    now: i64,
) -> Result<Reprojection> {
    let tx = c.transaction().await?;
    request(&tx, workspace, reason, now).await?;
    let status = status(&tx, workspace).await?.ok_or_else(|| StoreError::NotFound(format!("workspace {workspace}")))?;
    tx.commit().await?;
    Ok(status)
}

/// The workspace's latest reprojection.
pub async fn status(c: &impl GenericClient, workspace: WorkspaceId) -> Result<Option<Reprojection>> {
    let row =
        c.query_opt(&format!("SELECT {COLUMNS} FROM reprojections WHERE workspace_id = $1"), &[&workspace]).await?;
    Ok(row.as_ref().map(reprojection_row))
}

/// Rebuilds the next `limit` contacts of the oldest unfinished reprojection: their activity
/// days from their events, in the workspace's zone, and their closeness from all their
/// interactions. The step and its progress commit together, so a crash repeats at most the
/// step, which gives the same result again. Nodes take turns: the step holds the lock ingest
/// plans its writes under, so no batch reads a day the step is rewriting.
pub async fn step(c: &mut Client, limit: usize, now: i64) -> Result<Option<ReprojectionStep>> {
    let tx = c.transaction().await?;
    lock_contacts(&tx).await?;
    let Some(row) = tx
        .query_opt(
            "SELECT workspace_id, done_through FROM reprojections WHERE finished_at IS NULL
             ORDER BY requested_at, workspace_id LIMIT 1",
            &[],
        )
        .await?
    else {
        return Ok(None);
    };
    let (workspace_id, done_through): (WorkspaceId, ContactId) = (row.get(0), row.get(1));
    let workspace = admin::workspace(&tx, workspace_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("workspace {workspace_id}")))?;
    let (tz, model) = (workspace.tz(), workspace.model());
    let contacts: Vec<ContactId> = tx
        .query(
            "SELECT id FROM contacts WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            &[&workspace_id, &done_through, &(limit as i64)],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut step = ReprojectionStep { workspace_id, contacts: contacts.len() as u64, ..ReprojectionStep::default() };

    let mut events: HashMap<ContactId, Vec<kith_core::Event>> = HashMap::new();
    let rows = tx
        .query(
            "SELECT id, workspace_id, type, payload, occurred_at, received_at, contact_id FROM events
             WHERE contact_id = ANY($1)",
            &[&contacts],
        )
        .await?;
    step.events = rows.len() as u64;
    for row in &rows {
        if let Some(event) = reparse(&write::pending_event(row)) {
            events.entry(row.get(6)).or_default().push(event);
        }
    }
    tx.execute("DELETE FROM interactions WHERE contact_id = ANY($1) AND kind = 'activity'", &[&contacts]).await?;
    let (mut owners, mut days, mut times, mut descriptions, mut hits) = (vec![], vec![], vec![], vec![], vec![]);
    for (contact, events) in &events {
        for (day, activity) in activity_days(workspace_id, events, &tz) {
            owners.push(*contact);
            days.push(day);
            times.push(activity.occurred_at);
            descriptions.push(activity.description);
            hits.push(activity.hits);
        }
    }
    tx.execute(
        "INSERT INTO interactions (workspace_id, contact_id, kind, day, occurred_at, description, hits, created_at)
         SELECT $1, contact_id, 'activity', day, occurred_at, description, hits, $7
         FROM unnest($2::bigint[], $3::int[], $4::bigint[], $5::text[], $6::bigint[])
              AS d (contact_id, day, occurred_at, description, hits)",
        &[&workspace_id, &owners, &days, &times, &descriptions, &hits, &now],
    )
    .await?;
    for contact in &contacts {
        let history = write::closeness_history(&tx, &model, *contact).await?;
        tx.execute(
            "UPDATE contacts SET closeness_key = $2, closeness_last_t = $3, warm_until = $4 WHERE id = $1",
            &[contact, &history.key, &history.last_t, &history.warm_until.map(millis_of_days)],
        )
        .await?;
    }
    step.finished = contacts.len() < limit;
    tx.execute(
        "UPDATE reprojections SET done_through = $2, contacts_done = contacts_done + $3,
                                  events_done = events_done + $4, finished_at = $5
         WHERE workspace_id = $1",
        &[
            &workspace_id,
            &contacts.last().copied().unwrap_or(done_through),
            &(step.contacts as i64),
            &(step.events as i64),
            &step.finished.then_some(now),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(step))
}
