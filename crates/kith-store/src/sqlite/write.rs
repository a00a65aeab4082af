//! Writes: the ingest batch (plan, then execute in one transaction), manual interactions,
//! deletion, merge and cadences.

use std::collections::{BTreeSet, HashMap, HashSet};

use jiff::Timestamp;
use kith_core::closeness::{days_of_millis, History, InteractionKind, Model};
use kith_core::profile::{display_name, merge_traits};
use kith_core::time::{day_key, from_millis};
use kith_core::{EventKind, Rejection};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{Map, Value};

use super::cache::WriterCache;
use super::{admin, journeys, nudges, read};
use crate::plan::{self, ContactRef, Lookups, Needs, PendingEvent, Plan, Planner, WorkspaceRules};
use crate::records::*;
use crate::state::{activity_time, interaction_time, millis_of_days, ContactState};
use crate::{Result, StoreError};

/// Applies a batch of events in one transaction; with `applied_through`, that event-log
/// sequence number becomes the projection's watermark in the same transaction.
pub fn write_events(
    c: &mut Connection,
    cache: &mut WriterCache,
    batch: &[Incoming],
    applied_through: Option<i64>,
) -> Result<Vec<Outcome>> {
    if cache.needs_pending_load() {
        cache.load_pending(load_pending_ids(c)?);
    }
    let tx = c.transaction()?;
    let workspaces = load_workspaces(&tx, batch.iter().map(|incoming| incoming.workspace_id))?;
    let rules: HashMap<WorkspaceId, WorkspaceRules> = workspaces
        .iter()
        .map(|(id, workspace)| {
            let rules = nudges::enabled_rules(&tx, *id)?;
            Ok((
                *id,
                WorkspaceRules::new(workspace.tz(), rules, workspace.sends_to_segment())
                    .with_journeys(journeys::enabled_journeys(&tx, *id)?),
            ))
        })
        .collect::<Result<_>>()?;
    // Duplicates never get this far: the event log took each messageId once (`dedup.rs`).
    let needs = plan::needs(batch.iter().map(|incoming| (incoming.workspace_id, &incoming.event, None)));
    let lookups = lookup(&tx, cache, &needs)?;
    let mut planner = Planner::new(&rules, lookups, batch.len());
    planner.plan_identities(batch);
    loop {
        let links = planner.take_new_links();
        if links.is_empty() {
            break;
        }
        let pending = fetch_pending(&tx, cache, &links)?;
        if pending.is_empty() {
            continue;
        }
        let needs = planner.pending_needs(&pending);
        planner.extend_lookups(lookup(&tx, cache, &needs)?);
        planner.attach_pending(pending);
    }
    planner.plan_activity(batch);
    let plan = planner.finish();
    // The batch's own receive time, so that what it stamps follows the server's clock (an
    // empty batch stamps nothing).
    let now = batch.iter().map(|incoming| incoming.event.received_at.as_millisecond()).max().unwrap_or_default();
    let written = execute(&tx, cache, &plan, &workspaces, now)?;
    if let Some(seq) = applied_through {
        tx.prepare_cached("UPDATE projection SET applied_seq = ?1 WHERE id = 1")?.execute([seq])?;
        super::crash::reached("projection-before-commit");
    }
    tx.commit()?;
    Ok(plan
        .resolve_outcomes(|contact| resolve(&written.contact_ids, contact), |day| written.created_days.contains(day)))
}

/// The ids that have pending events, or `None` when there are too many to keep in memory.
fn load_pending_ids(c: &Connection) -> Result<Option<HashSet<(WorkspaceId, String)>>> {
    let mut ids = HashSet::new();
    let mut statement = c.prepare("SELECT workspace_id, user_id, anonymous_id FROM events WHERE contact_id IS NULL")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let workspace: WorkspaceId = row.get(0)?;
        for column in [1, 2] {
            if let Some(id) = row.get::<_, Option<String>>(column)? {
                ids.insert((workspace, id));
            }
        }
        if ids.len() > super::cache::pending_ids_limit() {
            return Ok(None);
        }
    }
    Ok(Some(ids))
}

fn load_workspaces(tx: &Connection, ids: impl Iterator<Item = WorkspaceId>) -> Result<HashMap<WorkspaceId, Workspace>> {
    let mut workspaces = HashMap::new();
    for id in ids.collect::<BTreeSet<_>>() {
        let workspace = admin::workspace(tx, id)?.ok_or_else(|| StoreError::NotFound(format!("workspace {id}")))?;
        workspaces.insert(id, workspace);
    }
    Ok(workspaces)
}

/// Looks up what the batch mentions, asking the database only for what the cache lacks.
fn lookup(tx: &Connection, cache: &mut WriterCache, needs: &Needs) -> Result<Lookups> {
    let mut lookups = Lookups::default();
    let mut by_email = tx.prepare_cached("SELECT id FROM contacts WHERE workspace_id = ?1 AND email = ?2")?;
    let mut by_identity =
        tx.prepare_cached("SELECT contact_id, kind FROM identities WHERE workspace_id = ?1 AND value = ?2")?;
    let mut suppressed = tx.prepare_cached("SELECT 1 FROM suppressions WHERE workspace_id = ?1 AND email = ?2")?;
    for key @ (workspace, email) in &needs.emails {
        if let Some(id) = cache.emails.get(key) {
            lookups.contacts_by_email.insert(key.clone(), *id);
            continue;
        }
        let contact = match by_email.query_row(params![workspace, email], |row| row.get(0)).optional()? {
            Some(id) => Some(id),
            // A merged-away contact's email stays an identity of the contact it went into.
            None => by_identity
                .query_row(params![workspace, email], |row| Ok((row.get(0)?, row.get::<_, String>(1)?)))
                .optional()?
                .filter(|(_, kind)| kind == "email")
                .map(|(id, _)| id),
        };
        match contact {
            Some(id) => {
                cache.note_email(key.clone(), id);
                lookups.contacts_by_email.insert(key.clone(), id);
            }
            None => {
                if suppressed.exists(params![workspace, email])? {
                    lookups.suppressed.insert(key.clone());
                }
            }
        }
    }
    for key @ (workspace, value) in &needs.identities {
        let found = match cache.identities.get(key) {
            Some(id) => Some(*id),
            None => by_identity.query_row(params![workspace, value], |row| row.get(0)).optional()?,
        };
        if let Some(id) = found {
            cache.note_identity(key.clone(), id);
            lookups.contacts_by_identity.insert(key.clone(), id);
        }
    }
    Ok(lookups)
}

/// Pending events carrying any of these ids.
fn fetch_pending(tx: &Connection, cache: &WriterCache, ids: &[(WorkspaceId, String)]) -> Result<Vec<PendingEvent>> {
    let ids: Vec<&(WorkspaceId, String)> = ids.iter().filter(|key| cache.may_have_pending(key)).collect();
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for column in ["user_id", "anonymous_id"] {
        let mut statement = tx.prepare_cached(&format!(
            "SELECT id, workspace_id, type, payload, occurred_at, received_at FROM events
             WHERE workspace_id = ?1 AND {column} = ?2 AND contact_id IS NULL"
        ))?;
        for (workspace, value) in &ids {
            let rows = statement.query_map(params![workspace, value], pending_event)?;
            for row in rows {
                let row = row?;
                if seen.insert(row.id) {
                    found.push(row);
                }
            }
        }
    }
    Ok(found)
}

/// A stored event to plan again, from a row of `id, workspace_id, type, payload,
/// occurred_at, received_at` (of the events table, or of the event log with its sequence
/// number as the id).
pub fn pending_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<PendingEvent> {
    Ok(PendingEvent {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        event_type: row.get(2)?,
        payload: row.get(3)?,
        occurred_at: row.get(4)?,
        received_at: row.get(5)?,
    })
}

fn resolve(ids: &[ContactId], contact: ContactRef) -> ContactId {
    match contact {
        ContactRef::Existing(id) => id,
        ContactRef::New(index) => ids[index],
    }
}

/// What writing a plan assigned and created.
struct Written {
    /// Ids of the plan's new contacts, in order.
    contact_ids: Vec<ContactId>,
    /// Contact-days that did not exist before.
    created_days: HashSet<(ContactRef, i32)>,
}

/// Writes a plan.
fn execute(
    tx: &Transaction,
    cache: &mut WriterCache,
    plan: &Plan,
    workspaces: &HashMap<WorkspaceId, Workspace>,
    now: i64,
) -> Result<Written> {
    let mut ids = Vec::with_capacity(plan.new_contacts.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO contacts (id, workspace_id, email, first_seen_at, last_seen_at, created_at, updated_at)
             VALUES ((SELECT MAX(COALESCE((SELECT MAX(id) FROM contacts), 0), floor) + 1
                      FROM id_floors WHERE name = 'contacts'), ?1, ?2, ?3, ?3, ?4, ?4)",
        )?;
        for contact in &plan.new_contacts {
            insert.execute(params![contact.workspace_id, contact.email, contact.first_seen_at, now])?;
            let id = tx.last_insert_rowid();
            cache.note_email((contact.workspace_id, contact.email.clone()), id);
            ids.push(id);
        }
    }
    let id = |contact: ContactRef| resolve(&ids, contact);

    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO identities (workspace_id, value, contact_id, kind, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
        )?;
        for link in &plan.links {
            insert.execute(params![link.workspace_id, link.value, id(link.contact), link.kind, now])?;
            cache.note_identity((link.workspace_id, link.value.clone()), id(link.contact));
        }
    }

    let mut membership_changed: HashSet<ContactId> = HashSet::new();
    write_accounts(tx, plan, &id, now, &mut membership_changed)?;
    write_audiences(tx, cache, plan, &id, now, &mut membership_changed)?;

    // One write per contact-day: by row id when the writer knows the day exists, otherwise an
    // upsert, after which the day is new if the stored hits equal the batch's.
    let mut created_days = HashSet::new();
    let mut new_interactions: HashMap<ContactId, Vec<(InteractionKind, f64)>> = HashMap::new();
    {
        let mut update = tx.prepare_cached(
            "UPDATE interactions SET
                 hits = hits + ?2,
                 description = CASE WHEN (?3, ?4) < (occurred_at, description) THEN ?4 ELSE description END,
                 occurred_at = MIN(occurred_at, ?3)
             WHERE id = ?1",
        )?;
        let mut upsert = tx.prepare_cached(
            "INSERT INTO interactions (workspace_id, contact_id, kind, day, occurred_at, description, hits, created_at)
             VALUES (?1, ?2, 'activity', ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (contact_id, day) WHERE kind = 'activity' DO UPDATE SET
                 hits = interactions.hits + excluded.hits,
                 description = CASE WHEN (excluded.occurred_at, excluded.description)
                                         < (interactions.occurred_at, interactions.description)
                                    THEN excluded.description ELSE interactions.description END,
                 occurred_at = MIN(interactions.occurred_at, excluded.occurred_at)
             RETURNING id, hits",
        )?;
        for (key @ (contact, day), activity) in &plan.days {
            let contact = id(*contact);
            if let Some(row) = cache.days.get(&(contact, *day)) {
                update.execute(params![row, activity.hits, activity.occurred_at, activity.description])?;
                continue;
            }
            let (row, hits): (i64, i64) = upsert.query_row(
                params![
                    activity.workspace_id,
                    contact,
                    day,
                    activity.occurred_at,
                    activity.description,
                    activity.hits,
                    now
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            cache.note_day((contact, *day), row);
            if hits == activity.hits {
                created_days.insert(*key);
                new_interactions.entry(contact).or_default().push((InteractionKind::Activity, activity_time(*day)));
            }
        }
    }

    let mut touched: HashMap<ContactId, (WorkspaceId, Option<&plan::ContactChange>)> = HashMap::new();
    for (contact, change) in &plan.contacts {
        touched.insert(id(*contact), (change.workspace_id, Some(change)));
    }
    for contact in &membership_changed {
        touched.entry(*contact).or_insert_with(|| (workspace_of(tx, *contact).unwrap_or_default(), None));
    }
    let workspaces_with_rules = workspaces_with_cadence_rules(tx)?;
    for (contact, (workspace_id, change)) in touched {
        let cached = cache.states.remove(&contact);
        let Some(mut state) = (match cached {
            Some(state) => Some(state),
            None => load_state(tx, contact)?,
        }) else {
            continue;
        };
        let profile_changed = change.is_some_and(|change| state.apply(change));
        if let Some(interactions) = new_interactions.remove(&contact) {
            add_interactions(tx, &mut state, &workspaces[&workspace_id].model(), contact, interactions)?;
        }
        if membership_changed.contains(&contact) && workspaces_with_rules.contains(&workspace_id) {
            state.inherited_cadence = inherited_cadence(tx, workspace_id, contact)?;
        }
        if profile_changed {
            save_state(tx, contact, &state, now)?;
        } else {
            save_activity(tx, contact, &state, now)?;
        }
        cache.note_state(contact, state);
    }

    {
        let mut insert_event = tx.prepare_cached(
            "INSERT INTO events (workspace_id, contact_id, message_id, type, name, user_id, anonymous_id,
                                 occurred_at, received_at, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for event in &plan.events {
            if event.contact.is_none() {
                for pending_id in [&event.user_id, &event.anonymous_id].into_iter().flatten() {
                    cache.note_pending((event.workspace_id, pending_id.clone()));
                }
            }
            insert_event.execute(params![
                event.workspace_id,
                event.contact.map(id),
                event.message_id,
                event.event_type,
                event.name,
                event.user_id,
                event.anonymous_id,
                event.occurred_at,
                event.received_at,
                event.payload
            ])?;
        }
        let mut attach = tx.prepare_cached("UPDATE events SET contact_id = ?2 WHERE id = ?1 AND contact_id IS NULL")?;
        for (event, contact) in &plan.attached {
            attach.execute(params![event, id(*contact)])?;
        }
    }

    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO alias_conflicts (workspace_id, previous_id, user_id, contact_id, other_contact_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for conflict in &plan.conflicts {
            insert.execute(params![
                conflict.workspace_id,
                conflict.previous_id,
                conflict.user_id,
                id(conflict.contact),
                id(conflict.other),
                now
            ])?;
        }
    }

    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO rule_firings (workspace_id, rule_id, contact_id, occurrence, trigger, triggered_at, due_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'waiting') ON CONFLICT DO NOTHING",
        )?;
        for firing in &plan.firings {
            insert.execute(params![
                firing.workspace_id,
                firing.rule_id,
                id(firing.contact),
                firing.occurrence,
                firing.trigger,
                firing.triggered_at,
                firing.due_at
            ])?;
        }
    }
    for entry in &plan.journey_entries {
        journeys::enter(tx, entry, id(entry.contact))?;
    }
    for (contact, at) in &plan.journey_wakes {
        journeys::wake(tx, id(*contact), *at)?;
    }
    for track in &plan.outbound {
        let workspace = &workspaces[&track.workspace_id];
        nudges::enqueue_track(tx, workspace, id(track.contact), &track.event, track.properties.clone(), track.at, now)?;
    }

    if !plan.deletions.is_empty() {
        cache.clear();
    }
    for (workspace, contact) in &plan.deletions {
        delete_contact(tx, *workspace, id(*contact), false, now)?;
    }
    Ok(Written { contact_ids: ids, created_days })
}

fn write_accounts(
    tx: &Transaction,
    plan: &Plan,
    id: &dyn Fn(ContactRef) -> ContactId,
    now: i64,
    membership_changed: &mut HashSet<ContactId>,
) -> Result<()> {
    let mut account_ids = HashMap::new();
    for ((workspace, group_id), change) in &plan.accounts {
        let existing: Option<(i64, String)> = tx
            .prepare_cached("SELECT id, traits FROM accounts WHERE workspace_id = ?1 AND group_id = ?2")?
            .query_row(params![workspace, group_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let mut traits: Map<String, Value> =
            existing.as_ref().and_then(|(_, traits)| serde_json::from_str(traits).ok()).unwrap_or_default();
        merge_traits(&mut traits, &change.traits_patch);
        let name = display_name(&traits);
        let traits_json = Value::Object(traits).to_string();
        let account_id = match existing {
            Some((account_id, _)) => {
                tx.prepare_cached("UPDATE accounts SET traits = ?2, name = ?3, updated_at = ?4 WHERE id = ?1")?
                    .execute(params![account_id, traits_json, name, now])?;
                account_id
            }
            None => {
                tx.prepare_cached(
                    "INSERT INTO accounts (workspace_id, group_id, name, traits, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                )?
                .execute(params![workspace, group_id, name, traits_json, now])?;
                tx.last_insert_rowid()
            }
        };
        account_ids.insert((*workspace, group_id.clone()), account_id);
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO account_members (account_id, contact_id, joined_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?;
    for membership in &plan.memberships {
        let Some(account_id) = account_ids.get(&(membership.workspace_id, membership.group_id.clone())) else {
            continue;
        };
        let contact = id(membership.contact);
        if insert.execute(params![account_id, contact, membership.at])? > 0 {
            membership_changed.insert(contact);
        }
    }
    Ok(())
}

fn write_audiences(
    tx: &Transaction,
    cache: &mut WriterCache,
    plan: &Plan,
    id: &dyn Fn(ContactRef) -> ContactId,
    now: i64,
    membership_changed: &mut HashSet<ContactId>,
) -> Result<()> {
    for audience_event in &plan.audiences {
        let change = &audience_event.change;
        let contact = id(audience_event.contact);
        let key = (audience_event.workspace_id, change.key.clone());
        let audience_id = match cache.audiences.get(&key) {
            Some(id) => *id,
            None => {
                let id = upsert_audience(
                    tx,
                    audience_event.workspace_id,
                    &change.key,
                    change.computation_id.as_deref(),
                    change.space_id.as_deref(),
                    now,
                )?;
                cache.audiences.insert(key, id);
                id
            }
        };
        let current: Option<i64> = tx
            .prepare_cached("SELECT changed_at FROM audience_members WHERE audience_id = ?1 AND contact_id = ?2")?
            .query_row(params![audience_id, contact], |row| row.get(0))
            .optional()?;
        // A late-arriving older change is history, not the current state.
        if current.is_none_or(|changed_at| audience_event.at >= changed_at) {
            tx.prepare_cached(
                "INSERT INTO audience_members (audience_id, contact_id, is_member, changed_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (audience_id, contact_id) DO UPDATE SET is_member = excluded.is_member,
                                                                     changed_at = excluded.changed_at",
            )?
            .execute(params![audience_id, contact, change.entered, audience_event.at])?;
            membership_changed.insert(contact);
        }
        tx.prepare_cached(
            "INSERT INTO audience_history (audience_id, contact_id, entered, at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![audience_id, contact, change.entered, audience_event.at])?;
    }
    Ok(())
}

fn upsert_audience(
    tx: &Connection,
    workspace: WorkspaceId,
    key: &str,
    computation_id: Option<&str>,
    space_id: Option<&str>,
    now: i64,
) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO audiences (workspace_id, key, computation_id, space_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (workspace_id, key) DO UPDATE SET
             computation_id = COALESCE(excluded.computation_id, audiences.computation_id),
             space_id = COALESCE(excluded.space_id, audiences.space_id)",
    )?
    .execute(params![workspace, key, computation_id, space_id, now])?;
    Ok(tx
        .prepare_cached("SELECT id FROM audiences WHERE workspace_id = ?1 AND key = ?2")?
        .query_row(params![workspace, key], |row| row.get(0))?)
}

fn workspace_of(tx: &Connection, contact: ContactId) -> Result<WorkspaceId> {
    Ok(tx.prepare_cached("SELECT workspace_id FROM contacts WHERE id = ?1")?.query_row([contact], |row| row.get(0))?)
}

fn workspaces_with_cadence_rules(tx: &Connection) -> Result<HashSet<WorkspaceId>> {
    let mut statement = tx.prepare_cached("SELECT DISTINCT workspace_id FROM cadence_rules")?;
    let rows = statement.query_map([], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The shortest cadence among the rules of the contact's audiences and accounts.
fn inherited_cadence(tx: &Connection, workspace: WorkspaceId, contact: ContactId) -> Result<Option<i64>> {
    Ok(tx
        .prepare_cached(
            "SELECT MIN(r.days) FROM cadence_rules r
             WHERE r.workspace_id = ?1 AND (
                 (r.target = 'audience' AND r.target_key IN (
                     SELECT a.key FROM audience_members m JOIN audiences a ON a.id = m.audience_id
                     WHERE m.contact_id = ?2 AND m.is_member = 1))
              OR (r.target = 'account' AND r.target_key IN (
                     SELECT ac.group_id FROM account_members am JOIN accounts ac ON ac.id = am.account_id
                     WHERE am.contact_id = ?2)))",
        )?
        .query_row(params![workspace, contact], |row| row.get(0))?)
}

/// Loads the part of a contact row the writer changes.
fn load_state(tx: &Connection, contact: ContactId) -> Result<Option<ContactState>> {
    let row = tx
        .prepare_cached(
            "SELECT traits, computed_traits, closeness_key, first_seen_at, last_seen_at, last_interaction_at,
                    cadence_days, effective_cadence_days, created_at, closeness_last_t, warm_until
             FROM contacts WHERE id = ?1",
        )?
        .query_row([contact], |row| {
            let traits: String = row.get(0)?;
            let computed: String = row.get(1)?;
            let cadence_days: Option<i64> = row.get(6)?;
            let effective: Option<i64> = row.get(7)?;
            Ok(ContactState {
                traits: serde_json::from_str(&traits).unwrap_or_default(),
                computed: serde_json::from_str(&computed).unwrap_or_default(),
                closeness: History {
                    key: row.get(2)?,
                    last_t: row.get(9)?,
                    warm_until: ContactState::warm_until_from_ms(row.get(10)?),
                },
                first_seen_at: row.get(3)?,
                last_seen_at: row.get(4)?,
                last_interaction_at: row.get(5)?,
                cadence_days,
                // What is not the contact's own cadence was inherited.
                inherited_cadence: if cadence_days.is_some() { None } else { effective },
                created_at: row.get(8)?,
            })
        })
        .optional()?;
    Ok(row)
}

/// Adds new interactions to a contact's closeness, rebuilding it from the stored
/// interactions when one arrived late.
fn add_interactions(
    tx: &Connection,
    state: &mut ContactState,
    model: &Model,
    contact: ContactId,
    interactions: Vec<(InteractionKind, f64)>,
) -> Result<()> {
    if !state.extend_closeness(model, interactions) {
        state.closeness = closeness_history(tx, model, contact)?;
    }
    Ok(())
}

/// Saves what the writer changed of a contact row.
fn save_state(tx: &Connection, contact: ContactId, state: &ContactState, now: i64) -> Result<()> {
    tx.prepare_cached(
        "UPDATE contacts SET name = ?2, traits = ?3, computed_traits = ?4, closeness_key = ?5, first_seen_at = ?6,
                             last_seen_at = ?7, last_interaction_at = ?8, cadence_days = ?9,
                             effective_cadence_days = ?10, due_at = ?11, updated_at = ?12,
                             closeness_last_t = ?13, warm_until = ?14
         WHERE id = ?1",
    )?
    .execute(params![
        contact,
        state.name(),
        Value::Object(state.traits.clone()).to_string(),
        serde_json::to_string(&state.computed).unwrap_or_default(),
        state.closeness.key,
        state.first_seen_at,
        state.last_seen_at,
        state.last_interaction_at,
        state.cadence_days,
        state.effective_cadence(),
        state.due_at(),
        now,
        state.closeness.last_t,
        state.warm_until_ms()
    ])?;
    Ok(())
}

/// Saves what activity changes of a contact row (times, closeness, due date), leaving the
/// traits as they are: most events of product traffic change nothing else.
fn save_activity(tx: &Connection, contact: ContactId, state: &ContactState, now: i64) -> Result<()> {
    tx.prepare_cached(
        "UPDATE contacts SET closeness_key = ?2, first_seen_at = ?3, last_seen_at = ?4, last_interaction_at = ?5,
                             effective_cadence_days = ?6, due_at = ?7, updated_at = ?8, closeness_last_t = ?9,
                             warm_until = ?10
         WHERE id = ?1",
    )?
    .execute(params![
        contact,
        state.closeness.key,
        state.first_seen_at,
        state.last_seen_at,
        state.last_interaction_at,
        state.effective_cadence(),
        state.due_at(),
        now,
        state.closeness.last_t,
        state.warm_until_ms()
    ])?;
    Ok(())
}

/// For each event of `batch`, the refusal the planner would give it against the stored
/// state (an identify without email whose ids belong to nobody), read-only.
pub fn rejections(c: &Connection, batch: &[Incoming]) -> Result<Vec<Option<Rejection>>> {
    let workspaces = load_workspaces(c, batch.iter().map(|incoming| incoming.workspace_id))?;
    let needs = plan::needs(batch.iter().map(|incoming| (incoming.workspace_id, &incoming.event, None)));
    let lookups = lookup(c, &mut WriterCache::default(), &needs)?;
    Ok(plan::rejections(&workspaces, lookups, batch))
}

/// What writing `incoming` would do (`POST /api/validate`), read-only; `seen` tells whether
/// its messageId is taken.
pub fn preview(c: &Connection, incoming: Incoming, seen: bool) -> Result<Preview> {
    let workspace = incoming.workspace_id;
    let workspace_record =
        admin::workspace(c, workspace)?.ok_or_else(|| StoreError::NotFound(format!("workspace {workspace}")))?;
    let needs = plan::needs([(workspace, &incoming.event, None)]);
    let mut lookups = lookup(c, &mut WriterCache::default(), &needs)?;
    if seen {
        lookups.seen_messages.insert(incoming.digest);
    }
    let rules = HashMap::from([(workspace, WorkspaceRules::new(workspace_record.tz(), Vec::new(), false))]);
    let mut planner = Planner::new(&rules, lookups, 1);
    let batch = [incoming];
    planner.plan_identities(&batch);
    planner.plan_activity(&batch);
    let plan = planner.finish();
    let day = plan.days.keys().next().map(|(_, day)| *day);
    let (contact_id, creates_contact) = match plan.outcomes.first() {
        Some(plan::PlannedOutcome::Stored { contact: Some(ContactRef::Existing(id)), .. }) => (Some(*id), false),
        Some(plan::PlannedOutcome::Stored { contact: Some(ContactRef::New(_)), .. }) => (None, true),
        _ => (None, false),
    };
    let activity = match (contact_id, day, creates_contact) {
        (_, None, _) => Activity::None,
        (_, Some(_), true) => Activity::Added,
        (Some(id), Some(day), false) => {
            if read::activity_exists(c, id, day)? {
                Activity::Merged
            } else {
                Activity::Added
            }
        }
        (None, Some(_), false) => Activity::None,
    };
    let (duplicate, rejection) = match plan.outcomes.first() {
        Some(plan::PlannedOutcome::Done(Outcome::Duplicate)) => (true, None),
        Some(plan::PlannedOutcome::Done(Outcome::Rejected(rejection))) => (false, Some(rejection.clone())),
        _ => (false, None),
    };
    let pending = matches!(plan.outcomes.first(), Some(plan::PlannedOutcome::Stored { contact: None, .. }))
        && plan.deletions.is_empty()
        && !matches!(batch[0].event.kind, EventKind::Delete);
    Ok(Preview { contact_id, creates_contact, pending, activity, day, duplicate, rejection })
}

/// Deletes pending events past their workspace's retention.
pub fn expire_pending(c: &mut Connection, now: i64) -> Result<u64> {
    let tx = c.transaction()?;
    let workspaces = admin::workspaces(&tx)?;
    let mut deleted = 0;
    for workspace in workspaces {
        let cutoff = workspace.pending_cutoff(now);
        deleted += tx.execute(
            "DELETE FROM events WHERE contact_id IS NULL AND received_at < ?2 AND workspace_id = ?1",
            params![workspace.id, cutoff],
        )? as u64;
    }
    tx.commit()?;
    Ok(deleted)
}

fn require_contact(tx: &Connection, workspace: WorkspaceId, contact: ContactId) -> Result<()> {
    let exists = tx
        .prepare_cached("SELECT 1 FROM contacts WHERE id = ?1 AND workspace_id = ?2")?
        .exists(params![contact, workspace])?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("contact {contact}")))
    }
}

/// Adds a manual interaction.
pub fn add_interaction(
    c: &mut Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    interaction: NewInteraction,
    now: i64,
) -> Result<Interaction> {
    let tx = c.transaction()?;
    let added = insert_interaction(&tx, workspace, contact, interaction, now)?;
    tx.commit()?;
    Ok(added)
}

/// Adds an interaction by hand inside the caller's transaction.
fn insert_interaction(
    tx: &Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    interaction: NewInteraction,
    now: i64,
) -> Result<Interaction> {
    require_contact(tx, workspace, contact)?;
    let workspace_record =
        admin::workspace(tx, workspace)?.ok_or_else(|| StoreError::NotFound(format!("workspace {workspace}")))?;
    let at = interaction.occurred_at.as_millisecond();
    let day = day_key(interaction.occurred_at, &workspace_record.tz());
    tx.execute(
        "INSERT INTO interactions (workspace_id, contact_id, kind, day, occurred_at, description, hits, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)",
        params![workspace, contact, interaction.kind.as_str(), day, at, interaction.text, now],
    )?;
    let id = tx.last_insert_rowid();
    let mut state = load_state(tx, contact)?.ok_or_else(|| StoreError::NotFound(format!("contact {contact}")))?;
    add_interactions(tx, &mut state, &workspace_record.model(), contact, vec![(interaction.kind, days_of_millis(at))])?;
    state.note_interaction(at);
    save_state(tx, contact, &state, now)?;
    Ok(Interaction {
        id,
        contact_id: contact,
        kind: interaction.kind,
        day,
        occurred_at: from_millis(at),
        description: interaction.text,
        hits: 1,
    })
}

/// Keeps a deleted contact's id from being given again (see migration `0015_id_floors.sql`).
const ID_FLOOR_CONTACTS: &str = "UPDATE id_floors SET floor = MAX(floor, ?1) WHERE name = 'contacts'";

/// Erases a contact and everything derived from it; with `suppress`, its email stays out of kith
/// afterwards.
pub fn delete_contact(
    tx: &Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    suppress: bool,
    now: i64,
) -> Result<bool> {
    let email: Option<String> = tx
        .prepare_cached("SELECT email FROM contacts WHERE id = ?1 AND workspace_id = ?2")?
        .query_row(params![contact, workspace], |row| row.get(0))
        .optional()?;
    let Some(email) = email else { return Ok(false) };
    // Pending events of the contact's ids are the same person's data.
    tx.execute(
        "DELETE FROM events WHERE workspace_id = ?1 AND contact_id IS NULL AND (
             user_id IN (SELECT value FROM identities WHERE contact_id = ?2)
          OR anonymous_id IN (SELECT value FROM identities WHERE contact_id = ?2))",
        params![workspace, contact],
    )?;
    for statement in [
        "DELETE FROM events WHERE contact_id = ?1",
        "DELETE FROM interactions WHERE contact_id = ?1",
        "DELETE FROM identities WHERE contact_id = ?1",
        "DELETE FROM account_members WHERE contact_id = ?1",
        "DELETE FROM audience_members WHERE contact_id = ?1",
        "DELETE FROM audience_history WHERE contact_id = ?1",
        "DELETE FROM outbox WHERE contact_id = ?1",
        "DELETE FROM rule_firings WHERE contact_id = ?1",
        "DELETE FROM journey_steps WHERE contact_id = ?1",
        "DELETE FROM journey_entries WHERE contact_id = ?1",
        "DELETE FROM tasks WHERE contact_id = ?1",
        "DELETE FROM owners WHERE subject = 'contact' AND subject_id = ?1",
        "DELETE FROM alias_conflicts WHERE contact_id = ?1 OR other_contact_id = ?1",
        "DELETE FROM contacts WHERE id = ?1",
        ID_FLOOR_CONTACTS,
    ] {
        tx.prepare_cached(statement)?.execute([contact])?;
    }
    if suppress {
        tx.execute(
            "INSERT INTO suppressions (workspace_id, email, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![workspace, email, now],
        )?;
    }
    Ok(true)
}

/// Moves everything of `from` into `into` (an explicit merge, e.g. of an alias conflict) and
/// deletes `from`.
pub fn merge_contacts(
    c: &mut Connection,
    workspace: WorkspaceId,
    into: ContactId,
    from: ContactId,
    now: i64,
) -> Result<Contact> {
    if into == from {
        return Err(StoreError::Conflict("a contact cannot be merged into itself".into()));
    }
    let tx = c.transaction()?;
    require_contact(&tx, workspace, into)?;
    require_contact(&tx, workspace, from)?;
    let workspace_record =
        admin::workspace(&tx, workspace)?.ok_or_else(|| StoreError::NotFound(format!("workspace {workspace}")))?;
    let from_email: String = tx.query_row("SELECT email FROM contacts WHERE id = ?1", [from], |row| row.get(0))?;
    let mut target = load_state(&tx, into)?.ok_or_else(|| StoreError::NotFound(format!("contact {into}")))?;
    let source = load_state(&tx, from)?.ok_or_else(|| StoreError::NotFound(format!("contact {from}")))?;

    // The surviving contact's traits win; the other's fill the gaps.
    let mut traits = source.traits.clone();
    merge_traits(&mut traits, &target.traits);
    target.traits = traits;
    for key in source.computed {
        if !target.computed.contains(&key) {
            target.computed.push(key);
        }
    }
    target.first_seen_at = target.first_seen_at.min(source.first_seen_at);
    target.last_seen_at = target.last_seen_at.max(source.last_seen_at);
    if let Some(at) = source.last_interaction_at {
        target.note_interaction(at);
    }
    target.cadence_days = target.cadence_days.or(source.cadence_days);

    // Activity days both contacts have become one interaction: the earlier description, all hits.
    tx.execute(
        "UPDATE interactions AS t SET
             hits = t.hits + f.hits,
             description = CASE WHEN (f.occurred_at, f.description) < (t.occurred_at, t.description)
                                THEN f.description ELSE t.description END,
             occurred_at = MIN(t.occurred_at, f.occurred_at)
         FROM interactions AS f
         WHERE t.contact_id = ?1 AND f.contact_id = ?2 AND t.kind = 'activity' AND f.kind = 'activity' AND t.day = f.day",
        params![into, from],
    )?;
    tx.execute(
        "DELETE FROM interactions WHERE contact_id = ?2 AND kind = 'activity'
           AND day IN (SELECT day FROM interactions WHERE contact_id = ?1 AND kind = 'activity')",
        params![into, from],
    )?;
    for statement in [
        "UPDATE interactions SET contact_id = ?1 WHERE contact_id = ?2",
        "UPDATE events SET contact_id = ?1 WHERE contact_id = ?2",
        "UPDATE identities SET contact_id = ?1 WHERE contact_id = ?2",
        "INSERT INTO account_members (account_id, contact_id, joined_at)
             SELECT account_id, ?1, joined_at FROM account_members WHERE contact_id = ?2 ON CONFLICT DO NOTHING",
        "DELETE FROM account_members WHERE contact_id = ?2",
        "INSERT INTO audience_members (audience_id, contact_id, is_member, changed_at)
             SELECT audience_id, ?1, is_member, changed_at FROM audience_members WHERE contact_id = ?2 AND true
             ON CONFLICT (audience_id, contact_id) DO UPDATE SET
                 is_member = CASE WHEN excluded.changed_at > audience_members.changed_at
                                  THEN excluded.is_member ELSE audience_members.is_member END,
                 changed_at = MAX(excluded.changed_at, audience_members.changed_at)",
        "DELETE FROM audience_members WHERE contact_id = ?2",
        "UPDATE audience_history SET contact_id = ?1 WHERE contact_id = ?2",
        "UPDATE tasks SET contact_id = ?1 WHERE contact_id = ?2",
        // The surviving contact keeps its owner; the other's owner takes it if it had none.
        "INSERT INTO owners (workspace_id, subject, subject_id, user_id, assigned_at)
             SELECT workspace_id, subject, ?1, user_id, assigned_at FROM owners
             WHERE subject = 'contact' AND subject_id = ?2 ON CONFLICT DO NOTHING",
        "DELETE FROM owners WHERE subject = 'contact' AND subject_id = ?2",
        // Journey entries follow the person, so an entry policy sees them; an occurrence both
        // entered with (the same event reached both) stays with the survivor's entry.
        "UPDATE journey_entries SET contact_id = ?1 WHERE contact_id = ?2 AND NOT EXISTS (
             SELECT 1 FROM journey_entries o WHERE o.journey_id = journey_entries.journey_id
               AND o.contact_id = ?1 AND o.occurrence = journey_entries.occurrence)",
        "UPDATE journey_steps SET contact_id = ?1 WHERE contact_id = ?2",
    ] {
        tx.execute(statement, params![into, from])?;
    }
    tx.execute(
        "UPDATE journey_entries SET state = 'exited', step = NULL, ended_at = ?2,
                                    reason = 'the contact was merged into another'
         WHERE contact_id = ?1 AND state = 'active'",
        params![from, now],
    )?;
    tx.execute(
        "UPDATE alias_conflicts SET resolved_at = ?3
         WHERE (contact_id = ?1 AND other_contact_id = ?2) OR (contact_id = ?2 AND other_contact_id = ?1)",
        params![into, from, now],
    )?;
    tx.execute("UPDATE alias_conflicts SET contact_id = ?1 WHERE contact_id = ?2", params![into, from])?;
    tx.execute("UPDATE alias_conflicts SET other_contact_id = ?1 WHERE other_contact_id = ?2", params![into, from])?;
    tx.execute("DELETE FROM contacts WHERE id = ?1", [from])?;
    tx.execute(ID_FLOOR_CONTACTS, [from])?;
    // Identifies naming the merged-away email now reach the surviving contact.
    tx.execute(
        "INSERT INTO identities (workspace_id, value, contact_id, kind, created_at) VALUES (?1, ?2, ?3, 'email', ?4)
         ON CONFLICT (workspace_id, value) DO UPDATE SET contact_id = excluded.contact_id",
        params![workspace, from_email, into, now],
    )?;

    target.closeness = closeness_history(&tx, &workspace_record.model(), into)?;
    if workspaces_with_cadence_rules(&tx)?.contains(&workspace) {
        target.inherited_cadence = inherited_cadence(&tx, workspace, into)?;
    }
    save_state(&tx, into, &target, now)?;
    tx.commit()?;
    read::contact(c, workspace, &ContactKey::Id(into))?.ok_or_else(|| StoreError::NotFound(format!("contact {into}")))
}

/// The closeness history rebuilt from a contact's stored interactions.
pub(super) fn closeness_history(tx: &Connection, model: &Model, contact: ContactId) -> Result<History> {
    let mut statement = tx.prepare_cached("SELECT kind, day, occurred_at FROM interactions WHERE contact_id = ?1")?;
    let rows = statement
        .query_map([contact], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i32>(1)?, row.get::<_, i64>(2)?)))?;
    let mut interactions = Vec::new();
    for row in rows {
        let (kind, day, at) = row?;
        interactions.push(interaction_time(&kind, day, at));
    }
    Ok(model.rebuild(interactions))
}

/// Recomputes every contact's closeness history of a workspace (after a half-life or weight
/// change).
pub fn recompute_closeness(tx: &Connection, workspace: &Workspace) -> Result<()> {
    let model = workspace.model();
    let mut interactions: HashMap<ContactId, Vec<(InteractionKind, f64)>> = HashMap::new();
    {
        let mut statement =
            tx.prepare("SELECT contact_id, kind, day, occurred_at FROM interactions WHERE workspace_id = ?1")?;
        let rows = statement.query_map([workspace.id], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, i32>(2)?, row.get::<_, i64>(3)?))
        })?;
        for row in rows {
            let (contact, kind, day, at) = row?;
            interactions.entry(contact).or_default().push(interaction_time(&kind, day, at));
        }
    }
    let mut update =
        tx.prepare("UPDATE contacts SET closeness_key = ?2, closeness_last_t = ?3, warm_until = ?4 WHERE id = ?1")?;
    for (contact, interactions) in interactions {
        let history = model.rebuild(interactions);
        update.execute(params![contact, history.key, history.last_t, history.warm_until.map(millis_of_days)])?;
    }
    Ok(())
}

/// Sets or clears a contact's own cadence.
pub fn set_cadence(
    c: &mut Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    days: Option<i64>,
    now: i64,
) -> Result<Contact> {
    let tx = c.transaction()?;
    change_cadence(&tx, workspace, contact, days, now)?;
    tx.commit()?;
    read::contact(c, workspace, &ContactKey::Id(contact))?
        .ok_or_else(|| StoreError::NotFound(format!("contact {contact}")))
}

/// Sets a contact's own cadence inside the caller's transaction.
fn change_cadence(
    tx: &Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    days: Option<i64>,
    now: i64,
) -> Result<()> {
    require_contact(tx, workspace, contact)?;
    let mut state = load_state(tx, contact)?.ok_or_else(|| StoreError::NotFound(format!("contact {contact}")))?;
    state.cadence_days = days;
    state.inherited_cadence = inherited_cadence(tx, workspace, contact)?;
    save_state(tx, contact, &state, now)
}

/// Applies a journey's note or cadence step to its contact and marks the step's delivery sent,
/// in one transaction; `false` if the delivery was applied already. So a delivery the job
/// takes up again after a crash (its lease expired before it was marked) acts once.
pub fn apply_to_contact(
    c: &mut Connection,
    delivery: i64,
    workspace: WorkspaceId,
    contact: ContactId,
    change: StepChange,
    now: Timestamp,
) -> Result<bool> {
    let tx = c.transaction()?;
    let status: Option<String> =
        tx.query_row("SELECT status FROM outbox WHERE id = ?1", [delivery], |row| row.get(0)).optional()?;
    if status.as_deref() != Some("pending") {
        return Ok(false);
    }
    let now_ms = now.as_millisecond();
    match change {
        StepChange::Note(text) => {
            let note = NewInteraction { kind: InteractionKind::Note, occurred_at: now, text };
            insert_interaction(&tx, workspace, contact, note, now_ms)?;
        }
        StepChange::Cadence(days) => change_cadence(&tx, workspace, contact, days, now_ms)?,
    }
    nudges::finish_delivery(&tx, delivery, &DeliveryResult::Sent, now)?;
    tx.commit()?;
    Ok(true)
}

fn refresh_rule_members(tx: &Connection, workspace: WorkspaceId, target: &str, key: &str, now: i64) -> Result<()> {
    let members: Vec<ContactId> = {
        let sql = match target {
            "audience" => {
                "SELECT m.contact_id FROM audience_members m JOIN audiences a ON a.id = m.audience_id
                 WHERE a.workspace_id = ?1 AND a.key = ?2"
            }
            _ => {
                "SELECT m.contact_id FROM account_members m JOIN accounts a ON a.id = m.account_id
                 WHERE a.workspace_id = ?1 AND a.group_id = ?2"
            }
        };
        let mut statement = tx.prepare(sql)?;
        let rows = statement.query_map(params![workspace, key], |row| row.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for contact in members {
        if let Some(mut state) = load_state(tx, contact)? {
            state.inherited_cadence = inherited_cadence(tx, workspace, contact)?;
            save_state(tx, contact, &state, now)?;
        }
    }
    Ok(())
}

/// Creates or replaces a cadence rule and updates its members' due dates.
pub fn set_cadence_rule(
    c: &mut Connection,
    workspace: WorkspaceId,
    target: &str,
    key: &str,
    days: i64,
    now: i64,
) -> Result<CadenceRule> {
    let tx = c.transaction()?;
    tx.execute(
        "INSERT INTO cadence_rules (workspace_id, target, target_key, days, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (workspace_id, target, target_key) DO UPDATE SET days = excluded.days",
        params![workspace, target, key, days, now],
    )?;
    let id: i64 = tx.query_row(
        "SELECT id FROM cadence_rules WHERE workspace_id = ?1 AND target = ?2 AND target_key = ?3",
        params![workspace, target, key],
        |row| row.get(0),
    )?;
    refresh_rule_members(&tx, workspace, target, key, now)?;
    tx.commit()?;
    Ok(CadenceRule { id, target: target.to_owned(), target_key: key.to_owned(), days })
}

/// Deletes a cadence rule and updates its members' due dates.
pub fn delete_cadence_rule(c: &mut Connection, workspace: WorkspaceId, id: i64, now: i64) -> Result<bool> {
    let tx = c.transaction()?;
    let rule: Option<(String, String)> = tx
        .query_row(
            "SELECT target, target_key FROM cadence_rules WHERE id = ?1 AND workspace_id = ?2",
            params![id, workspace],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((target, key)) = rule else { return Ok(false) };
    tx.execute("DELETE FROM cadence_rules WHERE id = ?1", [id])?;
    refresh_rule_members(&tx, workspace, &target, &key, now)?;
    tx.commit()?;
    Ok(true)
}
