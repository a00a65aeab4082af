//! Rebuilding a workspace's history from its stored events, a few thousand contacts per
//! transaction (see [`Reprojection`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc;

use jiff::tz::TimeZone;
use kith_core::Event;
use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Row};

use super::{admin, write};
use crate::plan::{activity_days, reparse, DayActivity, PendingEvent};
use crate::records::*;
use crate::state::{interaction_time, millis_of_days};
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
///
/// The step's events and interactions are each read with one query over its range of
/// contacts, in contact order, and only the rows whose content changes are written: a rebuild
/// that finds everything right writes nothing but its progress.
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
    // `+workspace_id`: walked in id order from the cursor, not found through an index on the
    // workspace and sorted, which reads all the workspace's contacts at every step.
    let contacts: Vec<StoredContact> = tx
        .prepare_cached(
            "SELECT id, closeness_key, closeness_last_t, warm_until FROM contacts
             WHERE +workspace_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?
        .query_map(params![workspace_id, cursor, limit as i64], |row| {
            Ok(StoredContact { id: row.get(0)?, closeness: (row.get(1)?, row.get(2)?, row.get(3)?) })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let through = contacts.last().map_or(cursor, |contact| contact.id);
    let mut step = ReprojectionStep { workspace_id, contacts: contacts.len() as u64, ..ReprojectionStep::default() };
    let (events, mut rebuilt) = rebuild_days(&tx, workspace_id, &tz, &contacts, cursor, through)?;
    step.events = events;
    let stored: Vec<StoredInteraction> = tx
        .prepare_cached(
            "SELECT contact_id, id, kind, day, occurred_at, description, hits FROM interactions
             WHERE contact_id > ?1 AND contact_id <= ?2 ORDER BY contact_id",
        )?
        .query_map(params![cursor, through], |row| {
            Ok(StoredInteraction {
                contact: row.get(0)?,
                id: row.get(1)?,
                kind: row.get(2)?,
                day: row.get(3)?,
                occurred_at: row.get(4)?,
                description: row.get(5)?,
                hits: row.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut writes = Writes::prepare(&tx)?;
    let mut rest = stored.as_slice();
    for contact in &contacts {
        // Both are in contact order: the contact's interactions lead what is left.
        rest = &rest[rest.partition_point(|row| row.contact < contact.id)..];
        let (own, after) = rest.split_at(rest.partition_point(|row| row.contact == contact.id));
        rest = after;
        let days = rebuilt.remove(&contact.id).unwrap_or_default();
        writes.days(workspace_id, contact.id, own, &days, now)?;
        let history = model.rebuild(
            own.iter()
                .filter(|row| row.kind != ACTIVITY)
                .map(|row| interaction_time(&row.kind, row.day, row.occurred_at))
                .chain(days.iter().map(|(day, activity)| interaction_time(ACTIVITY, *day, activity.occurred_at))),
        );
        let closeness = (history.key, history.last_t, history.warm_until.map(millis_of_days));
        if closeness != contact.closeness {
            writes.closeness.execute(params![contact.id, closeness.0, closeness.1, closeness.2])?;
        }
    }
    drop(writes);
    step.finished = contacts.len() < limit;
    tx.execute(
        "UPDATE reprojections SET done_through = ?2, contacts_done = contacts_done + ?3, events_done = events_done + ?4,
                                  finished_at = ?5
         WHERE workspace_id = ?1",
        params![workspace_id, through, step.contacts as i64, step.events as i64, step.finished.then_some(now)],
    )?;
    tx.commit()?;
    Ok(Some(step))
}

/// The kind of the interactions a reprojection rebuilds.
const ACTIVITY: &str = "activity";

/// A contact's activity days, by day.
type Days = BTreeMap<i32, DayActivity>;

/// Stored events handed to the parsing thread at a time.
const CHUNK: usize = 256;

/// The activity days of the step's contacts that have events, rebuilt from those events, and
/// how many events they have. Parsing each payload again costs about as much as reading it, so
/// a second thread parses while this one reads.
fn rebuild_days(
    tx: &Connection,
    workspace_id: WorkspaceId,
    tz: &TimeZone,
    contacts: &[StoredContact],
    cursor: ContactId,
    through: ContactId,
) -> Result<(u64, HashMap<ContactId, Days>)> {
    // Contact ids are shared by all workspaces: events of the range that belong to another
    // workspace's contacts are passed over.
    let wanted: HashSet<ContactId> = contacts.iter().map(|contact| contact.id).collect();
    let mut statement = tx.prepare_cached(
        "SELECT id, workspace_id, type, payload, occurred_at, received_at, contact_id FROM events
         WHERE contact_id > ?1 AND contact_id <= ?2 ORDER BY contact_id",
    )?;
    let rows = statement
        .query_map(params![cursor, through], |row| Ok((row.get::<_, ContactId>(6)?, write::pending_event(row)?)))?;
    std::thread::scope(|scope| {
        let (send, receive) = mpsc::sync_channel::<Vec<(ContactId, PendingEvent)>>(8);
        let parser = scope.spawn(move || {
            let mut rebuilt = HashMap::new();
            let mut current: Option<(ContactId, Vec<Event>)> = None;
            for (contact, stored) in receive.into_iter().flatten() {
                if current.as_ref().is_none_or(|(id, _)| *id != contact) {
                    if let Some((id, events)) = current.replace((contact, Vec::new())) {
                        rebuilt.insert(id, activity_days(workspace_id, &events, tz));
                    }
                }
                if let (Some((_, events)), Some(event)) = (current.as_mut(), reparse(&stored)) {
                    events.push(event);
                }
            }
            if let Some((id, events)) = current {
                rebuilt.insert(id, activity_days(workspace_id, &events, tz));
            }
            rebuilt
        });
        let mut events = 0;
        let mut chunk = Vec::with_capacity(CHUNK);
        for row in rows {
            let (contact, stored) = row?;
            if !wanted.contains(&contact) {
                continue;
            }
            events += 1;
            chunk.push((contact, stored));
            if chunk.len() == CHUNK && send.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))).is_err() {
                break;
            }
        }
        if !chunk.is_empty() {
            // A parser that stopped early is reported by its join below.
            let _ = send.send(chunk);
        }
        drop(send);
        let rebuilt = parser.join().map_err(|_| StoreError::Unavailable {
            message: "the thread parsing the reprojection's events stopped".to_owned(),
            source: None,
        })?;
        Ok((events, rebuilt))
    })
}

/// A contact of a step, with its stored closeness (`closeness_key`, `closeness_last_t`,
/// `warm_until`).
struct StoredContact {
    id: ContactId,
    closeness: (Option<f64>, Option<f64>, Option<i64>),
}

/// An interaction row as stored before the step.
struct StoredInteraction {
    contact: ContactId,
    id: i64,
    kind: String,
    day: i32,
    occurred_at: i64,
    description: String,
    hits: i64,
}

/// The statements that write a step's changes.
struct Writes<'tx> {
    insert: CachedStatement<'tx>,
    update: CachedStatement<'tx>,
    delete: CachedStatement<'tx>,
    closeness: CachedStatement<'tx>,
}

impl<'tx> Writes<'tx> {
    fn prepare(tx: &'tx Connection) -> Result<Writes<'tx>> {
        Ok(Writes {
            insert: tx.prepare_cached(
                "INSERT INTO interactions (workspace_id, contact_id, kind, day, occurred_at, description, hits, created_at)
                 VALUES (?1, ?2, 'activity', ?3, ?4, ?5, ?6, ?7)",
            )?,
            update: tx.prepare_cached(
                "UPDATE interactions SET occurred_at = ?2, description = ?3, hits = ?4, created_at = ?5 WHERE id = ?1",
            )?,
            delete: tx.prepare_cached("DELETE FROM interactions WHERE id = ?1")?,
            closeness: tx.prepare_cached(
                "UPDATE contacts SET closeness_key = ?2, closeness_last_t = ?3, warm_until = ?4 WHERE id = ?1",
            )?,
        })
    }

    /// Makes the contact's stored activity days the rebuilt `days`, writing only the rows
    /// that differ.
    fn days(
        &mut self,
        workspace_id: WorkspaceId,
        contact: ContactId,
        stored: &[StoredInteraction],
        days: &Days,
        now: i64,
    ) -> Result<()> {
        let mut kept = HashSet::new();
        for row in stored.iter().filter(|row| row.kind == ACTIVITY) {
            match days.get(&row.day) {
                Some(activity) => {
                    kept.insert(row.day);
                    if (row.occurred_at, row.description.as_str(), row.hits)
                        != (activity.occurred_at, activity.description.as_str(), activity.hits)
                    {
                        self.update.execute(params![
                            row.id,
                            activity.occurred_at,
                            activity.description,
                            activity.hits,
                            now
                        ])?;
                    }
                }
                None => {
                    self.delete.execute([row.id])?;
                }
            }
        }
        for (day, activity) in days.iter().filter(|(day, _)| !kept.contains(*day)) {
            self.insert.execute(params![
                workspace_id,
                contact,
                day,
                activity.occurred_at,
                activity.description,
                activity.hits,
                now
            ])?;
        }
        Ok(())
    }
}
