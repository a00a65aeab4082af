//! Journeys on PostgreSQL: the journeys, contacts' entries (created where rule triggers are
//! detected: the write path and the nudge pass), and the job pass that moves entries on. Every
//! node may run the pass at once: entries are claimed with `FOR UPDATE SKIP LOCKED`, and the
//! unique (entry, step) record, inserted in the transaction that queues the step's deliveries,
//! is the claim that a step acts once.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use kith_core::closeness::InteractionKind;
use kith_core::journeys::{JourneySpec, Seen};
use kith_core::rules::event_properties;
use kith_core::time::from_millis;
use serde_json::Value;
use tokio_postgres::{Client, GenericClient, Row};

use super::{admin, nudges, read};
use crate::deliveries::SegmentIdentity;
use crate::journeys::{contact_gone, step_entry, ActiveEntry, EntryUpdate, JourneyStart};
use crate::plan::NewJourneyEntry;
use crate::records::*;
use crate::{Result, StoreError};

const JOURNEY_COLUMNS: &str = "id, spec, created_at, updated_at";

fn journey_row(row: &Row) -> Result<Journey> {
    let id: i64 = row.try_get(0)?;
    let spec: String = row.try_get(1)?;
    let spec = serde_json::from_str(&spec).map_err(|e| StoreError::caused(format!("journey {id}: invalid spec"), e))?;
    Ok(Journey { id, spec, created_at: from_millis(row.try_get(2)?), updated_at: from_millis(row.try_get(3)?) })
}

pub async fn journeys(c: &(impl GenericClient + Sync), workspace: WorkspaceId) -> Result<Vec<Journey>> {
    let rows = c
        .query(&format!("SELECT {JOURNEY_COLUMNS} FROM journeys WHERE workspace_id = $1 ORDER BY id"), &[&workspace])
        .await?;
    rows.iter().map(journey_row).collect()
}

/// Enabled journeys of a workspace.
pub async fn enabled_journeys(
    c: &(impl GenericClient + Sync),
    workspace: WorkspaceId,
) -> Result<Vec<(i64, JourneySpec)>> {
    Ok(journeys(c, workspace).await?.into_iter().filter(|j| j.spec.enabled).map(|j| (j.id, j.spec)).collect())
}

pub async fn journey(c: &(impl GenericClient + Sync), workspace: WorkspaceId, id: i64) -> Result<Option<Journey>> {
    let row = c
        .query_opt(
            &format!("SELECT {JOURNEY_COLUMNS} FROM journeys WHERE workspace_id = $1 AND id = $2"),
            &[&workspace, &id],
        )
        .await?;
    row.as_ref().map(journey_row).transpose()
}

fn spec_json(spec: &JourneySpec) -> String {
    serde_json::to_string(spec).unwrap_or_default()
}

pub async fn create_journey(c: &Client, workspace: WorkspaceId, spec: &JourneySpec, now: i64) -> Result<Journey> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO journeys (workspace_id, spec, enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
                 RETURNING {JOURNEY_COLUMNS}"
            ),
            &[&workspace, &spec_json(spec), &spec.enabled, &now],
        )
        .await?;
    journey_row(&row)
}

pub async fn update_journey(
    c: &mut Client,
    workspace: WorkspaceId,
    id: i64,
    spec: &JourneySpec,
    now: i64,
) -> Result<Option<Journey>> {
    let tx = c.transaction().await?;
    tx.execute(
        "UPDATE journeys SET spec = $3, enabled = $4, updated_at = $5 WHERE workspace_id = $1 AND id = $2",
        &[&workspace, &id, &spec_json(spec), &spec.enabled, &now],
    )
    .await?;
    // Entries look again at once: a resumed journey moves its waiting contacts, an edited one
    // applies its new steps from where each contact is.
    tx.execute(
        "UPDATE journey_entries SET next_due_at = LEAST(next_due_at, $3)
         WHERE journey_id = $1 AND workspace_id = $2 AND state = 'active'",
        &[&id, &workspace, &now],
    )
    .await?;
    let journey = journey(&tx, workspace, id).await?;
    tx.commit().await?;
    Ok(journey)
}

pub async fn delete_journey(c: &mut Client, workspace: WorkspaceId, id: i64) -> Result<bool> {
    let tx = c.transaction().await?;
    let deleted = tx.execute("DELETE FROM journeys WHERE workspace_id = $1 AND id = $2", &[&workspace, &id]).await? > 0;
    if deleted {
        tx.execute("DELETE FROM journey_steps WHERE journey_id = $1 AND workspace_id = $2", &[&id, &workspace]).await?;
        tx.execute("DELETE FROM journey_entries WHERE journey_id = $1 AND workspace_id = $2", &[&id, &workspace])
            .await?;
    }
    tx.commit().await?;
    Ok(deleted)
}

/// Enters a contact into a journey if the journey's entry policy lets it and this occurrence
/// has not entered it already. Callers hold the contacts lock, so two entries of one contact
/// are decided one after the other.
pub async fn enter(c: &(impl GenericClient + Sync), entry: &NewJourneyEntry, contact: ContactId) -> Result<bool> {
    let last: Option<i64> = c
        .query_one(
            "SELECT MAX(entered_at) FROM journey_entries WHERE journey_id = $1 AND contact_id = $2",
            &[&entry.journey_id, &contact],
        )
        .await?
        .try_get(0)?;
    if !entry.policy.admits(last.map(from_millis), from_millis(entry.at)) {
        return Ok(false);
    }
    Ok(c.execute(
        "INSERT INTO journey_entries (workspace_id, journey_id, contact_id, occurrence, trigger, properties, entered_at,
                                      state, step, step_since, next_due_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $7, $7) ON CONFLICT DO NOTHING",
        &[
            &entry.workspace_id,
            &entry.journey_id,
            &contact,
            &entry.occurrence,
            &entry.trigger,
            &Value::Object(entry.properties.clone()).to_string(),
            &entry.at,
            &i64::from(entry.first_step),
        ],
    )
    .await?
        > 0)
}

/// Track events of contacts may move their entries on (an awaited event, an exit).
pub async fn wake(c: &(impl GenericClient + Sync), wakes: &[(ContactId, i64)]) -> Result<()> {
    if wakes.is_empty() {
        return Ok(());
    }
    let mut earliest: BTreeMap<ContactId, i64> = BTreeMap::new();
    for (contact, at) in wakes {
        earliest.entry(*contact).and_modify(|t| *t = (*t).min(*at)).or_insert(*at);
    }
    let contacts: Vec<i64> = earliest.keys().copied().collect();
    let times: Vec<i64> = earliest.values().copied().collect();
    c.execute(
        "UPDATE journey_entries e SET next_due_at = w.at
         FROM unnest($1::BIGINT[], $2::BIGINT[]) AS w (contact_id, at)
         WHERE e.contact_id = w.contact_id AND e.state = 'active' AND e.next_due_at > w.at",
        &[&contacts, &times],
    )
    .await?;
    Ok(())
}

/// Enters a contact into the enabled journeys of a workspace that `starts` picks (the nudge
/// pass's bucket changes and due dates).
#[allow(clippy::too_many_arguments)]
pub async fn enter_matching(
    c: &(impl GenericClient + Sync),
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
        enter(c, &start.for_contact(workspace, contact), contact).await?;
    }
    Ok(())
}

/// Enters every member of an account into the journeys its health change starts; the number
/// of entries created. Holds the contacts lock, as every entry does.
pub async fn enter_account_members(
    c: &mut Client,
    workspace: WorkspaceId,
    account: i64,
    starts: &[JourneyStart],
) -> Result<usize> {
    let tx = c.transaction().await?;
    super::lock_contacts(&tx).await?;
    let members: Vec<ContactId> = tx
        .query(
            "SELECT m.contact_id FROM account_members m JOIN accounts a ON a.id = m.account_id
             WHERE a.workspace_id = $1 AND m.account_id = $2 ORDER BY m.contact_id",
            &[&workspace, &account],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    let mut entered = 0;
    for start in starts {
        for &contact in &members {
            entered += usize::from(enter(&tx, &start.for_contact(workspace, contact), contact).await?);
        }
    }
    tx.commit().await?;
    Ok(entered)
}

async fn seen_since(c: &(impl GenericClient + Sync), contact: ContactId, since: i64) -> Result<Vec<Seen>> {
    let rows = c
        .query(
            "SELECT name, occurred_at, payload FROM events
             WHERE contact_id = $1 AND type = 'track' AND occurred_at >= $2 ORDER BY occurred_at, id",
            &[&contact, &since],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let payload: String = row.try_get(2)?;
            Ok(Seen {
                name: row.try_get::<_, Option<String>>(0)?.unwrap_or_default(),
                time: from_millis(row.try_get(1)?),
                properties: event_properties(&payload),
            })
        })
        .collect()
}

async fn member_of(c: &(impl GenericClient + Sync), workspace: WorkspaceId, contact: ContactId) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT a.key FROM audience_members m JOIN audiences a ON a.id = m.audience_id
             WHERE a.workspace_id = $1 AND m.contact_id = $2 AND m.is_member",
            &[&workspace, &contact],
        )
        .await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

fn step_of(value: Option<i64>) -> Option<u32> {
    value.and_then(|step| u32::try_from(step).ok())
}

/// Moves the entries due by `now`; see `Store::advance_journeys`.
pub async fn advance(c: &mut Client, now: Timestamp, limit: usize) -> Result<JourneyReport> {
    let now_ms = now.as_millisecond();
    let tx = c.transaction().await?;
    let due: Vec<ActiveEntry> = tx
        .query(
            "SELECT e.id, e.workspace_id, e.journey_id, e.contact_id, e.trigger, e.properties, e.entered_at, e.step,
                    e.step_since
             FROM journey_entries e JOIN journeys j ON j.id = e.journey_id
             WHERE e.state = 'active' AND e.next_due_at <= $1 AND j.enabled ORDER BY e.next_due_at, e.id LIMIT $2
             FOR UPDATE OF e SKIP LOCKED",
            &[&now_ms, &(limit as i64)],
        )
        .await?
        .iter()
        .map(|row| {
            let properties: String = row.try_get(5)?;
            Ok(ActiveEntry {
                id: row.try_get(0)?,
                workspace_id: row.try_get(1)?,
                journey_id: row.try_get(2)?,
                contact_id: row.try_get(3)?,
                trigger: row.try_get(4)?,
                properties: serde_json::from_str(&properties).unwrap_or_default(),
                entered_at: row.try_get(6)?,
                step: step_of(row.try_get(7)?).unwrap_or(0),
                step_since: row.try_get(8)?,
            })
        })
        .collect::<Result<_>>()?;
    let mut report = JourneyReport::default();
    let mut workspaces: HashMap<WorkspaceId, Option<Workspace>> = HashMap::new();
    let mut specs: HashMap<i64, Option<Journey>> = HashMap::new();
    for entry in due {
        report.entries += 1;
        if let Entry::Vacant(vacant) = workspaces.entry(entry.workspace_id) {
            vacant.insert(admin::workspace(&tx, entry.workspace_id).await?);
        }
        if let Entry::Vacant(vacant) = specs.entry(entry.journey_id) {
            vacant.insert(journey(&tx, entry.workspace_id, entry.journey_id).await?);
        }
        let contact = read::contact(&tx, entry.workspace_id, &ContactKey::Id(entry.contact_id)).await?;
        let (Some(Some(workspace)), Some(Some(journey)), Some(contact)) =
            (workspaces.get(&entry.workspace_id), specs.get(&entry.journey_id), contact)
        else {
            write_update(&tx, entry.id, &contact_gone(&entry, now_ms)).await?;
            report.ended += 1;
            continue;
        };
        let events = seen_since(&tx, entry.contact_id, entry.entered_at).await?;
        let audiences = member_of(&tx, entry.workspace_id, entry.contact_id).await?;
        let (email, user_id) =
            nudges::segment_identity(&tx, entry.contact_id).await?.unwrap_or((contact.email.clone(), None));
        let who = SegmentIdentity { contact_id: entry.contact_id, email: &email, user_id: user_id.as_deref() };
        let stepped = step_entry(&journey.spec, &entry, &contact, who, workspace, &events, &audiences, now);
        for passed in &stepped.passed {
            let claimed = tx
                .execute(
                    "INSERT INTO journey_steps (workspace_id, journey_id, entry_id, contact_id, step, at, recorded_at, why)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                    &[
                        &entry.workspace_id,
                        &entry.journey_id,
                        &entry.id,
                        &entry.contact_id,
                        &i64::from(passed.step),
                        &passed.at,
                        &now_ms,
                        &passed.why,
                    ],
                )
                .await?
                > 0;
            if !claimed {
                continue;
            }
            report.steps += 1;
            nudges::enqueue(&tx, entry.workspace_id, &passed.deliveries, None, Some(entry.contact_id), now_ms).await?;
        }
        if stepped.update.state != "active" {
            report.ended += 1;
        }
        write_update(&tx, entry.id, &stepped.update).await?;
    }
    tx.commit().await?;
    Ok(report)
}

async fn write_update(c: &(impl GenericClient + Sync), entry: i64, update: &EntryUpdate) -> Result<()> {
    c.execute(
        "UPDATE journey_entries SET state = $2, step = $3, step_since = $4, next_due_at = $5, ended_at = $6, reason = $7
         WHERE id = $1",
        &[
            &entry,
            &update.state,
            &update.step.map(i64::from),
            &update.step_since,
            &update.next_due_at,
            &update.ended_at,
            &update.reason,
        ],
    )
    .await?;
    Ok(())
}

pub async fn counts(c: &Client, workspace: WorkspaceId, journey: i64) -> Result<JourneyCounts> {
    let mut counts = JourneyCounts::default();
    for row in c
        .query(
            "SELECT state, COUNT(*) FROM journey_entries WHERE workspace_id = $1 AND journey_id = $2 GROUP BY state",
            &[&workspace, &journey],
        )
        .await?
    {
        let state: String = row.try_get(0)?;
        let n: i64 = row.try_get(1)?;
        counts.entered += n;
        match state.as_str() {
            "active" => counts.active = n,
            "completed" => counts.completed = n,
            _ => counts.exited += n,
        }
    }
    let mut steps: BTreeMap<u32, StepCount> = BTreeMap::new();
    for row in c
        .query(
            "SELECT step, COUNT(*) FROM journey_entries WHERE workspace_id = $1 AND journey_id = $2 AND state = 'active'
             GROUP BY step",
            &[&workspace, &journey],
        )
        .await?
    {
        let Some(step) = step_of(row.try_get(0)?) else { continue };
        steps.entry(step).or_insert(StepCount { step, waiting: 0, done: 0 }).waiting = row.try_get(1)?;
    }
    for row in c
        .query(
            "SELECT step, COUNT(*) FROM journey_steps WHERE workspace_id = $1 AND journey_id = $2 GROUP BY step",
            &[&workspace, &journey],
        )
        .await?
    {
        let Some(step) = step_of(row.try_get(0)?) else { continue };
        steps.entry(step).or_insert(StepCount { step, waiting: 0, done: 0 }).done = row.try_get(1)?;
    }
    counts.steps = steps.into_values().collect();
    Ok(counts)
}

const ENTRY_COLUMNS: &str = "e.id, e.journey_id, e.contact_id, c.email, e.trigger, e.entered_at, e.state, e.step,
                             e.next_due_at, e.ended_at, e.reason";

fn entry_row(row: &Row) -> Result<JourneyEntry> {
    Ok(JourneyEntry {
        id: row.try_get(0)?,
        journey_id: row.try_get(1)?,
        contact_id: row.try_get(2)?,
        email: row.try_get(3)?,
        trigger: row.try_get(4)?,
        entered_at: from_millis(row.try_get(5)?),
        state: row.try_get(6)?,
        step: step_of(row.try_get(7)?),
        next_due_at: row.try_get::<_, Option<i64>>(8)?.map(from_millis),
        ended_at: row.try_get::<_, Option<i64>>(9)?.map(from_millis),
        reason: row.try_get(10)?,
        moves: Vec::new(),
    })
}

async fn with_moves(c: &Client, rows: Vec<Row>) -> Result<Vec<JourneyEntry>> {
    let mut entries = rows.iter().map(entry_row).collect::<Result<Vec<_>>>()?;
    let ids: Vec<i64> = entries.iter().map(|entry| entry.id).collect();
    let mut moves: HashMap<i64, Vec<StepTaken>> = HashMap::new();
    for row in c
        .query("SELECT entry_id, step, at, why FROM journey_steps WHERE entry_id = ANY($1) ORDER BY at, id", &[&ids])
        .await?
    {
        let Some(step) = step_of(row.try_get(1)?) else { continue };
        moves.entry(row.try_get(0)?).or_default().push(StepTaken {
            step,
            at: from_millis(row.try_get(2)?),
            why: row.try_get(3)?,
        });
    }
    for entry in &mut entries {
        entry.moves = moves.remove(&entry.id).unwrap_or_default();
    }
    Ok(entries)
}

pub async fn step_entries(
    c: &Client,
    workspace: WorkspaceId,
    journey: i64,
    step: u32,
    limit: usize,
) -> Result<Vec<JourneyEntry>> {
    let rows = c
        .query(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM journey_entries e JOIN contacts c ON c.id = e.contact_id
                 WHERE e.workspace_id = $1 AND e.journey_id = $2 AND e.state = 'active' AND e.step = $3
                 ORDER BY e.entered_at, e.id LIMIT $4"
            ),
            &[&workspace, &journey, &i64::from(step), &(limit.clamp(1, 1000) as i64)],
        )
        .await?;
    with_moves(c, rows).await
}

pub async fn contact_journeys(c: &Client, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<JourneyEntry>> {
    let rows = c
        .query(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM journey_entries e JOIN contacts c ON c.id = e.contact_id
                 WHERE e.workspace_id = $1 AND e.contact_id = $2 ORDER BY e.entered_at DESC, e.id DESC LIMIT 200"
            ),
            &[&workspace, &contact],
        )
        .await?;
    with_moves(c, rows).await
}

pub async fn track_history(c: &Client, workspace: WorkspaceId, since: i64, until: i64) -> Result<Vec<TrackRecord>> {
    let rows = c
        .query(
            "SELECT contact_id, name, occurred_at, payload FROM events
             WHERE workspace_id = $1 AND contact_id IS NOT NULL AND type = 'track' AND occurred_at >= $2
               AND occurred_at <= $3
             ORDER BY contact_id, occurred_at, id",
            &[&workspace, &since, &until],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let payload: String = row.try_get(3)?;
            Ok(TrackRecord {
                contact_id: row.try_get(0)?,
                name: row.try_get::<_, Option<String>>(1)?.unwrap_or_default(),
                time: from_millis(row.try_get(2)?),
                properties: event_properties(&payload),
            })
        })
        .collect()
}

pub async fn audience_changes(
    c: &Client,
    workspace: WorkspaceId,
    audience: &str,
    since: i64,
    until: i64,
) -> Result<Vec<AudienceChange>> {
    let rows = c
        .query(
            "SELECT h.contact_id, h.entered, h.at FROM audience_history h JOIN audiences a ON a.id = h.audience_id
             WHERE a.workspace_id = $1 AND a.key = $2 AND h.at >= $3 AND h.at <= $4 ORDER BY h.at, h.id",
            &[&workspace, &super::write::text(audience), &since, &until],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AudienceChange {
                contact_id: row.try_get(0)?,
                entered: row.try_get(1)?,
                at: from_millis(row.try_get(2)?),
            })
        })
        .collect()
}

pub async fn interaction_history(c: &Client, workspace: WorkspaceId, until: i64) -> Result<Vec<InteractionRecord>> {
    let rows = c
        .query(
            "SELECT contact_id, kind, occurred_at FROM interactions WHERE workspace_id = $1 AND occurred_at <= $2
             ORDER BY contact_id, occurred_at, id",
            &[&workspace, &until],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get(1)?;
            Ok(InteractionRecord {
                contact_id: row.try_get(0)?,
                kind: InteractionKind::parse(&kind).unwrap_or(InteractionKind::Activity),
                occurred_at: from_millis(row.try_get(2)?),
            })
        })
        .collect()
}

pub async fn cadences(c: &Client, workspace: WorkspaceId) -> Result<Vec<ContactCadence>> {
    let rows = c
        .query(
            "SELECT id, effective_cadence_days, created_at FROM contacts
             WHERE workspace_id = $1 AND effective_cadence_days IS NOT NULL ORDER BY id",
            &[&workspace],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ContactCadence {
                contact_id: row.try_get(0)?,
                days: row.try_get(1)?,
                created_at: from_millis(row.try_get(2)?),
            })
        })
        .collect()
}
