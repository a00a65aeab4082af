//! Journeys on SQLite: the journeys, contacts' entries (created where rule triggers are
//! detected: the write path and the nudge pass), and the job pass that moves entries on. One
//! writer at a time, so a pass is one transaction; the unique (entry, step) record is the
//! claim that a step acts once, inserted in the transaction that queues its deliveries.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use jiff::Timestamp;
use kith_core::closeness::InteractionKind;
use kith_core::journeys::{JourneySpec, Seen};
use kith_core::rules::event_properties;
use kith_core::time::from_millis;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

use super::{admin, nudges, read};
use crate::deliveries::SegmentIdentity;
use crate::journeys::{contact_gone, step_entry, ActiveEntry, EntryUpdate, JourneyStart};
use crate::plan::NewJourneyEntry;
use crate::records::*;
use crate::{Result, StoreError};

fn journey_row(row: &Row) -> rusqlite::Result<Journey> {
    let spec: String = row.get(1)?;
    let spec = serde_json::from_str(&spec)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(Journey { id: row.get(0)?, spec, created_at: from_millis(row.get(2)?), updated_at: from_millis(row.get(3)?) })
}

pub fn journeys(c: &Connection, workspace: WorkspaceId) -> Result<Vec<Journey>> {
    let mut statement =
        c.prepare_cached("SELECT id, spec, created_at, updated_at FROM journeys WHERE workspace_id = ?1 ORDER BY id")?;
    let rows = statement.query_map([workspace], journey_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Enabled journeys of a workspace.
pub fn enabled_journeys(c: &Connection, workspace: WorkspaceId) -> Result<Vec<(i64, JourneySpec)>> {
    Ok(journeys(c, workspace)?.into_iter().filter(|j| j.spec.enabled).map(|j| (j.id, j.spec)).collect())
}

pub fn journey(c: &Connection, workspace: WorkspaceId, id: i64) -> Result<Option<Journey>> {
    Ok(c.prepare_cached("SELECT id, spec, created_at, updated_at FROM journeys WHERE workspace_id = ?1 AND id = ?2")?
        .query_row(params![workspace, id], journey_row)
        .optional()?)
}

fn spec_json(spec: &JourneySpec) -> String {
    serde_json::to_string(spec).unwrap_or_default()
}

pub fn create_journey(c: &mut Connection, workspace: WorkspaceId, spec: &JourneySpec, now: i64) -> Result<Journey> {
    c.execute(
        "INSERT INTO journeys (id, workspace_id, spec, enabled, created_at, updated_at)
         VALUES ((SELECT MAX(COALESCE((SELECT MAX(id) FROM journeys), 0), floor) + 1
                  FROM id_floors WHERE name = 'journeys'), ?1, ?2, ?3, ?4, ?4)",
        params![workspace, spec_json(spec), spec.enabled, now],
    )?;
    let id = c.last_insert_rowid();
    journey(c, workspace, id)?.ok_or_else(|| StoreError::NotFound(format!("journey {id}")))
}

pub fn update_journey(
    c: &mut Connection,
    workspace: WorkspaceId,
    id: i64,
    spec: &JourneySpec,
    now: i64,
) -> Result<Option<Journey>> {
    let tx = c.transaction()?;
    tx.execute(
        "UPDATE journeys SET spec = ?3, enabled = ?4, updated_at = ?5 WHERE workspace_id = ?1 AND id = ?2",
        params![workspace, id, spec_json(spec), spec.enabled, now],
    )?;
    // Entries look again at once: a resumed journey moves its waiting contacts, an edited one
    // applies its new steps from where each contact is.
    tx.execute(
        "UPDATE journey_entries SET next_due_at = MIN(next_due_at, ?3)
         WHERE journey_id = ?1 AND workspace_id = ?2 AND state = 'active'",
        params![id, workspace, now],
    )?;
    let journey = journey(&tx, workspace, id)?;
    tx.commit()?;
    Ok(journey)
}

pub fn delete_journey(c: &mut Connection, workspace: WorkspaceId, id: i64) -> Result<bool> {
    let tx = c.transaction()?;
    let deleted = tx.execute("DELETE FROM journeys WHERE workspace_id = ?1 AND id = ?2", params![workspace, id])? > 0;
    if deleted {
        // Its id is not given to another journey (see migration `0015_id_floors.sql`).
        tx.execute("UPDATE id_floors SET floor = MAX(floor, ?1) WHERE name = 'journeys'", [id])?;
        tx.execute("DELETE FROM journey_steps WHERE journey_id = ?1 AND workspace_id = ?2", params![id, workspace])?;
        tx.execute("DELETE FROM journey_entries WHERE journey_id = ?1 AND workspace_id = ?2", params![id, workspace])?;
    }
    tx.commit()?;
    Ok(deleted)
}

/// Enters a contact into a journey if the journey's entry policy lets it and this occurrence
/// has not entered it already.
pub fn enter(c: &Connection, entry: &NewJourneyEntry, contact: ContactId) -> Result<bool> {
    let last: Option<i64> = c
        .prepare_cached("SELECT MAX(entered_at) FROM journey_entries WHERE journey_id = ?1 AND contact_id = ?2")?
        .query_row(params![entry.journey_id, contact], |row| row.get(0))?;
    if !entry.policy.admits(last.map(from_millis), from_millis(entry.at)) {
        return Ok(false);
    }
    Ok(c.prepare_cached(
        "INSERT INTO journey_entries (workspace_id, journey_id, contact_id, occurrence, trigger, properties, entered_at,
                                      state, step, step_since, next_due_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'active', ?8, ?7, ?7) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        entry.workspace_id,
        entry.journey_id,
        contact,
        entry.occurrence,
        entry.trigger,
        Value::Object(entry.properties.clone()).to_string(),
        entry.at,
        entry.first_step,
    ])? > 0)
}

/// A track event of the contact may move its entries on (an awaited event, an exit).
pub fn wake(c: &Connection, contact: ContactId, at: i64) -> Result<()> {
    c.prepare_cached(
        "UPDATE journey_entries SET next_due_at = ?2 WHERE contact_id = ?1 AND state = 'active' AND next_due_at > ?2",
    )?
    .execute(params![contact, at])?;
    Ok(())
}

/// Enters a contact into the enabled journeys of a workspace that `starts` picks (the nudge
/// pass's bucket changes and due dates).
#[allow(clippy::too_many_arguments)]
pub fn enter_matching(
    c: &Connection,
    workspace: WorkspaceId,
    journeys: &[(i64, JourneySpec)],
    contact: ContactId,
    occurrence: &str,
    trigger: &str,
    at: i64,
    starts: impl Fn(&JourneySpec) -> bool,
) -> Result<()> {
    for (journey_id, journey) in journeys.iter().filter(|(_, journey)| starts(journey)) {
        let start = JourneyStart::of(*journey_id, journey, occurrence.to_owned(), trigger.to_owned(), at);
        enter(c, &start.for_contact(workspace, contact), contact)?;
    }
    Ok(())
}

/// Enters every member of an account into the journeys its health change starts; the number
/// of entries created.
pub fn enter_account_members(
    c: &mut Connection,
    workspace: WorkspaceId,
    account: i64,
    starts: &[JourneyStart],
) -> Result<usize> {
    let tx = c.transaction()?;
    let members: Vec<ContactId> = {
        let mut statement = tx.prepare_cached(
            "SELECT m.contact_id FROM account_members m JOIN accounts a ON a.id = m.account_id
             WHERE a.workspace_id = ?1 AND m.account_id = ?2 ORDER BY m.contact_id",
        )?;
        let rows = statement.query_map(params![workspace, account], |row| row.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut entered = 0;
    for start in starts {
        for &contact in &members {
            entered += usize::from(enter(&tx, &start.for_contact(workspace, contact), contact)?);
        }
    }
    tx.commit()?;
    Ok(entered)
}

fn seen_since(c: &Connection, contact: ContactId, since: i64) -> Result<Vec<Seen>> {
    let mut statement = c.prepare_cached(
        "SELECT name, occurred_at, payload FROM events
         WHERE contact_id = ?1 AND type = 'track' AND occurred_at >= ?2 ORDER BY occurred_at, id",
    )?;
    let rows = statement.query_map(params![contact, since], |row| {
        let payload: String = row.get(2)?;
        Ok(Seen {
            name: row.get::<_, Option<String>>(0)?.unwrap_or_default(),
            time: from_millis(row.get(1)?),
            properties: event_properties(&payload),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Moves the entries due by `now`; see `Store::advance_journeys`.
pub fn advance(c: &mut Connection, now: Timestamp, limit: usize) -> Result<JourneyReport> {
    let now_ms = now.as_millisecond();
    let tx = c.transaction()?;
    let due: Vec<ActiveEntry> = {
        let mut statement = tx.prepare_cached(
            "SELECT e.id, e.workspace_id, e.journey_id, e.contact_id, e.trigger, e.properties, e.entered_at, e.step,
                    e.step_since
             FROM journey_entries e JOIN journeys j ON j.id = e.journey_id
             WHERE e.state = 'active' AND e.next_due_at <= ?1 AND j.enabled ORDER BY e.next_due_at, e.id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![now_ms, limit as i64], |row| {
            let properties: String = row.get(5)?;
            Ok(ActiveEntry {
                id: row.get(0)?,
                workspace_id: row.get(1)?,
                journey_id: row.get(2)?,
                contact_id: row.get(3)?,
                trigger: row.get(4)?,
                properties: serde_json::from_str(&properties).unwrap_or_default(),
                entered_at: row.get(6)?,
                step: row.get(7)?,
                step_since: row.get(8)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut report = JourneyReport::default();
    let mut workspaces: HashMap<WorkspaceId, Option<Workspace>> = HashMap::new();
    let mut specs: HashMap<i64, Option<Journey>> = HashMap::new();
    for entry in due {
        report.entries += 1;
        if let Entry::Vacant(vacant) = workspaces.entry(entry.workspace_id) {
            vacant.insert(admin::workspace(&tx, entry.workspace_id)?);
        }
        if let Entry::Vacant(vacant) = specs.entry(entry.journey_id) {
            vacant.insert(journey(&tx, entry.workspace_id, entry.journey_id)?);
        }
        let contact = read::contact(&tx, entry.workspace_id, &ContactKey::Id(entry.contact_id))?;
        let (Some(Some(workspace)), Some(Some(journey)), Some(contact)) =
            (workspaces.get(&entry.workspace_id), specs.get(&entry.journey_id), contact)
        else {
            write_update(&tx, entry.id, &contact_gone(&entry, now_ms))?;
            report.ended += 1;
            continue;
        };
        let events = seen_since(&tx, entry.contact_id, entry.entered_at)?;
        let audiences: Vec<String> = read::contact_audiences(&tx, entry.workspace_id, entry.contact_id)?
            .into_iter()
            .filter(|membership| membership.is_member)
            .map(|membership| membership.key)
            .collect();
        let (email, user_id) =
            nudges::segment_identity(&tx, entry.contact_id)?.unwrap_or((contact.email.clone(), None));
        let who = SegmentIdentity { contact_id: entry.contact_id, email: &email, user_id: user_id.as_deref() };
        let stepped = step_entry(&journey.spec, &entry, &contact, who, workspace, &events, &audiences, now);
        for passed in &stepped.passed {
            let claimed = tx
                .prepare_cached(
                    "INSERT INTO journey_steps (workspace_id, journey_id, entry_id, contact_id, step, at, recorded_at, why)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    entry.workspace_id,
                    entry.journey_id,
                    entry.id,
                    entry.contact_id,
                    passed.step,
                    passed.at,
                    now_ms,
                    passed.why
                ])?
                > 0;
            if !claimed {
                continue;
            }
            report.steps += 1;
            nudges::enqueue(&tx, entry.workspace_id, &passed.deliveries, None, Some(entry.contact_id), now_ms)?;
        }
        if stepped.update.state != "active" {
            report.ended += 1;
        }
        write_update(&tx, entry.id, &stepped.update)?;
    }
    tx.commit()?;
    Ok(report)
}

fn write_update(c: &Connection, entry: i64, update: &EntryUpdate) -> Result<()> {
    c.prepare_cached(
        "UPDATE journey_entries SET state = ?2, step = ?3, step_since = ?4, next_due_at = ?5, ended_at = ?6, reason = ?7
         WHERE id = ?1",
    )?
    .execute(params![
        entry,
        update.state,
        update.step,
        update.step_since,
        update.next_due_at,
        update.ended_at,
        update.reason
    ])?;
    Ok(())
}

pub fn counts(c: &Connection, workspace: WorkspaceId, journey: i64) -> Result<JourneyCounts> {
    let mut counts = JourneyCounts::default();
    {
        let mut statement = c.prepare_cached(
            "SELECT state, COUNT(*) FROM journey_entries WHERE workspace_id = ?1 AND journey_id = ?2 GROUP BY state",
        )?;
        let rows =
            statement.query_map(params![workspace, journey], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))?;
        for row in rows {
            let (state, n): (String, i64) = row?;
            counts.entered += n;
            match state.as_str() {
                "active" => counts.active = n,
                "completed" => counts.completed = n,
                _ => counts.exited += n,
            }
        }
    }
    let mut steps: std::collections::BTreeMap<u32, StepCount> = std::collections::BTreeMap::new();
    let mut statement = c.prepare_cached(
        "SELECT step, COUNT(*) FROM journey_entries WHERE workspace_id = ?1 AND journey_id = ?2 AND state = 'active'
         GROUP BY step",
    )?;
    for row in statement.query_map(params![workspace, journey], |row| Ok((row.get::<_, u32>(0)?, row.get(1)?)))? {
        let (step, n) = row?;
        steps.entry(step).or_insert(StepCount { step, waiting: 0, done: 0 }).waiting = n;
    }
    let mut statement = c.prepare_cached(
        "SELECT step, COUNT(*) FROM journey_steps WHERE workspace_id = ?1 AND journey_id = ?2 GROUP BY step",
    )?;
    for row in statement.query_map(params![workspace, journey], |row| Ok((row.get::<_, u32>(0)?, row.get(1)?)))? {
        let (step, n) = row?;
        steps.entry(step).or_insert(StepCount { step, waiting: 0, done: 0 }).done = n;
    }
    counts.steps = steps.into_values().collect();
    Ok(counts)
}

const ENTRY_COLUMNS: &str = "e.id, e.journey_id, e.contact_id, c.email, e.trigger, e.entered_at, e.state, e.step,
                             e.next_due_at, e.ended_at, e.reason";

fn entry_row(row: &Row) -> rusqlite::Result<JourneyEntry> {
    Ok(JourneyEntry {
        id: row.get(0)?,
        journey_id: row.get(1)?,
        contact_id: row.get(2)?,
        email: row.get(3)?,
        trigger: row.get(4)?,
        entered_at: from_millis(row.get(5)?),
        state: row.get(6)?,
        step: row.get(7)?,
        next_due_at: row.get::<_, Option<i64>>(8)?.map(from_millis),
        ended_at: row.get::<_, Option<i64>>(9)?.map(from_millis),
        reason: row.get(10)?,
        moves: Vec::new(),
    })
}

fn with_moves(c: &Connection, mut entries: Vec<JourneyEntry>) -> Result<Vec<JourneyEntry>> {
    let mut statement =
        c.prepare_cached("SELECT step, at, why FROM journey_steps WHERE entry_id = ?1 ORDER BY at, id")?;
    for entry in &mut entries {
        let rows = statement.query_map([entry.id], |row| {
            Ok(StepTaken { step: row.get(0)?, at: from_millis(row.get(1)?), why: row.get(2)? })
        })?;
        entry.moves = rows.collect::<rusqlite::Result<_>>()?;
    }
    Ok(entries)
}

pub fn step_entries(
    c: &Connection,
    workspace: WorkspaceId,
    journey: i64,
    step: u32,
    limit: usize,
) -> Result<Vec<JourneyEntry>> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM journey_entries e JOIN contacts c ON c.id = e.contact_id
         WHERE e.workspace_id = ?1 AND e.journey_id = ?2 AND e.state = 'active' AND e.step = ?3
         ORDER BY e.entered_at, e.id LIMIT ?4"
    ))?;
    let rows = statement.query_map(params![workspace, journey, step, limit.clamp(1, 1000) as i64], entry_row)?;
    with_moves(c, rows.collect::<rusqlite::Result<_>>()?)
}

pub fn contact_journeys(c: &Connection, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<JourneyEntry>> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM journey_entries e JOIN contacts c ON c.id = e.contact_id
         WHERE e.workspace_id = ?1 AND e.contact_id = ?2 ORDER BY e.entered_at DESC, e.id DESC LIMIT 200"
    ))?;
    let rows = statement.query_map(params![workspace, contact], entry_row)?;
    with_moves(c, rows.collect::<rusqlite::Result<_>>()?)
}

pub fn track_history(c: &Connection, workspace: WorkspaceId, since: i64, until: i64) -> Result<Vec<TrackRecord>> {
    let mut statement = c.prepare_cached(
        "SELECT contact_id, name, occurred_at, payload FROM events
         WHERE workspace_id = ?1 AND contact_id IS NOT NULL AND type = 'track' AND occurred_at >= ?2
           AND occurred_at <= ?3
         ORDER BY contact_id, occurred_at, id",
    )?;
    let rows = statement.query_map(params![workspace, since, until], |row| {
        let payload: String = row.get(3)?;
        Ok(TrackRecord {
            contact_id: row.get(0)?,
            name: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
            time: from_millis(row.get(2)?),
            properties: event_properties(&payload),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn audience_changes(
    c: &Connection,
    workspace: WorkspaceId,
    audience: &str,
    since: i64,
    until: i64,
) -> Result<Vec<AudienceChange>> {
    let mut statement = c.prepare_cached(
        "SELECT h.contact_id, h.entered, h.at FROM audience_history h JOIN audiences a ON a.id = h.audience_id
         WHERE a.workspace_id = ?1 AND a.key = ?2 AND h.at >= ?3 AND h.at <= ?4 ORDER BY h.at, h.id",
    )?;
    let rows = statement.query_map(params![workspace, audience, since, until], |row| {
        Ok(AudienceChange { contact_id: row.get(0)?, entered: row.get(1)?, at: from_millis(row.get(2)?) })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn interaction_history(c: &Connection, workspace: WorkspaceId, until: i64) -> Result<Vec<InteractionRecord>> {
    let mut statement = c.prepare_cached(
        "SELECT contact_id, kind, occurred_at FROM interactions WHERE workspace_id = ?1 AND occurred_at <= ?2
         ORDER BY contact_id, occurred_at, id",
    )?;
    let rows = statement.query_map(params![workspace, until], |row| {
        let kind: String = row.get(1)?;
        Ok(InteractionRecord {
            contact_id: row.get(0)?,
            kind: InteractionKind::parse(&kind).unwrap_or(InteractionKind::Activity),
            occurred_at: from_millis(row.get(2)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn cadences(c: &Connection, workspace: WorkspaceId) -> Result<Vec<ContactCadence>> {
    let mut statement = c.prepare_cached(
        "SELECT id, effective_cadence_days, created_at FROM contacts
         WHERE workspace_id = ?1 AND effective_cadence_days IS NOT NULL ORDER BY id",
    )?;
    let rows = statement.query_map(params![workspace], |row| {
        Ok(ContactCadence { contact_id: row.get(0)?, days: row.get(1)?, created_at: from_millis(row.get(2)?) })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
