//! Writes: the ingest batch (plan, then execute in one transaction), manual interactions,
//! deletion, merge and cadences.
//!
//! Nothing read by one batch is trusted by the next: other nodes write the same database. A
//! batch looks up what it mentions with one statement per kind of key, under the contacts lock
//! ([`super::lock_contacts`]), and writes each kind of row with one multi-row statement.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use jiff::Timestamp;
use kith_core::closeness::{days_of_millis, History, InteractionKind, Model};
use kith_core::profile::{display_name, merge_traits};
use kith_core::time::{day_key, from_millis};
use kith_core::{Event, EventKind, Rejection};
use serde_json::{Map, Value};
use tokio_postgres::{Client, GenericClient, Transaction};

use super::{admin, dedup, journeys, lock_contacts, nudges, read};
use crate::plan::{self, ContactChange, ContactRef, Lookups, Needs, PendingEvent, Plan, Planner, WorkspaceRules};
use crate::records::*;
use crate::state::{activity_time, interaction_time, millis_of_days, ContactState};
use crate::{Result, StoreError};

/// Applies `batch`, the event-log entries `applied` (lane, sequence number: those that no
/// longer parse included), in one transaction, which also counts them as applied (fenced by
/// `entries_before`, the count the projection expects), moves their lanes' watermarks and
/// deletes them.
pub async fn apply_events(
    c: &mut Client,
    batch: &[Incoming],
    entries_before: i64,
    applied: &[(i32, i64)],
) -> Result<Vec<Outcome>> {
    // Dropping the transaction on an error rolls everything back, the watermarks included.
    let tx = c.transaction().await?;
    let outcomes = if batch.is_empty() { Vec::new() } else { plan_and_execute(&tx, batch).await? };
    // Fenced: a projection that is not where the database says the log was applied to (a
    // lease lost without its holder knowing) applies nothing.
    let moved = tx
        .execute(
            "UPDATE projection_state SET entries = entries + $2 WHERE shard = 0 AND entries = $1",
            &[&entries_before, &(applied.len() as i64)],
        )
        .await?;
    if moved != 1 {
        return Err(StoreError::unavailable(format!(
            "the projection expected {entries_before} entries of the log applied, and there are not: another node applies it"
        )));
    }
    // Each lane's first and last entry applied.
    let mut lanes: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for (lane, seq) in applied {
        let (first, last) = lanes.entry(*lane).or_insert((*seq, *seq));
        (*first, *last) = ((*first).min(*seq), (*last).max(*seq));
    }
    let lane_ids: Vec<i32> = lanes.keys().copied().collect();
    let (firsts, lasts): (Vec<i64>, Vec<i64>) = lanes.into_values().unzip();
    tx.execute(
        "UPDATE lane_watermarks SET applied = u.applied
         FROM unnest($1::int[], $2::bigint[]) AS u (lane, applied)
         WHERE lane_watermarks.lane = u.lane AND lane_watermarks.applied < u.applied",
        &[&lane_ids, &lasts],
    )
    .await?;
    // A range per lane: within a lane, sequence numbers become visible in order, so the
    // range holds exactly the entries read (an entry of another lane that committed since,
    // inside the same numbers, is left for the next batch).
    tx.execute(
        "DELETE FROM event_log e USING unnest($1::int[], $2::bigint[], $3::bigint[]) AS u (lane, first, last)
         WHERE e.seq >= u.first AND e.seq <= u.last AND e.lane = u.lane",
        &[&lane_ids, &firsts, &lasts],
    )
    .await?;
    tx.commit().await?;
    Ok(outcomes)
}

async fn plan_and_execute(tx: &Transaction<'_>, batch: &[Incoming]) -> Result<Vec<Outcome>> {
    // Manual interactions, merges, deletions and cadences plan from what they read too.
    lock_contacts(tx).await?;
    let workspaces = load_workspaces(tx, batch.iter().map(|incoming| incoming.workspace_id)).await?;
    let mut rules = HashMap::with_capacity(workspaces.len());
    for (id, workspace) in &workspaces {
        let enabled = nudges::enabled_rules(tx, *id).await?;
        let journeys = journeys::enabled_journeys(tx, *id).await?;
        rules.insert(
            *id,
            WorkspaceRules::new(workspace.tz(), enabled, workspace.sends_to_segment()).with_journeys(journeys),
        );
    }
    let needs = plan::needs(batch.iter().map(|incoming| (incoming.workspace_id, &incoming.event, None)));
    // The log holds no duplicate: its appends claimed every messageId.
    let lookups = lookup(tx, &needs).await?;
    let plan = {
        let mut planner = Planner::new(&rules, lookups, batch.len());
        planner.plan_identities(batch);
        loop {
            let links = planner.take_new_links();
            if links.is_empty() {
                break;
            }
            let pending = fetch_pending(tx, &links).await?;
            if pending.is_empty() {
                continue;
            }
            let needs = planner.pending_needs(&pending);
            planner.extend_lookups(lookup(tx, &needs).await?);
            planner.attach_pending(pending);
        }
        planner.plan_activity(batch);
        planner.finish()
    };
    let claimed = batch.iter().map(|incoming| incoming.digest).collect();
    release_unstored_claims(tx, claimed, &plan.claims).await?;
    // The batch's own receive time, so that what it stamps follows the server's clock.
    let now = batch.iter().map(|incoming| incoming.event.received_at.as_millisecond()).max().unwrap_or_default();
    let written = execute(tx, &plan, &workspaces, now).await?;
    Ok(plan
        .resolve_outcomes(|contact| resolve(&written.contact_ids, contact), |day| written.created_days.contains(day)))
}

/// Gives back the messageIds of events the plan does not store (refused or suppressed), so
/// that a corrected retry with the same messageId is not taken for a duplicate.
async fn release_unstored_claims(tx: &Transaction<'_>, claimed: dedup::Digests, stored: &[[u8; 16]]) -> Result<()> {
    if claimed.len() == stored.len() {
        return Ok(());
    }
    let stored: HashSet<&[u8; 16]> = stored.iter().collect();
    let release: Vec<&[u8]> =
        claimed.iter().filter(|digest| !stored.contains(digest)).map(|digest| digest.as_slice()).collect();
    dedup::release(tx, &release).await
}

/// Which events of a batch the planner would refuse after reading what is applied (an
/// identify without email for a user nobody knows), read-only.
pub async fn rejections(c: &(impl GenericClient + Sync), batch: &[Incoming]) -> Result<Vec<Option<Rejection>>> {
    let workspaces = load_workspaces(c, batch.iter().map(|incoming| incoming.workspace_id)).await?;
    let needs = plan::needs(batch.iter().map(|incoming| (incoming.workspace_id, &incoming.event, None)));
    let lookups = lookup(c, &needs).await?;
    Ok(plan::rejections(&workspaces, lookups, batch))
}

async fn load_workspaces(
    tx: &(impl GenericClient + Sync),
    ids: impl Iterator<Item = WorkspaceId>,
) -> Result<HashMap<WorkspaceId, Workspace>> {
    let mut workspaces = HashMap::new();
    for id in ids.collect::<BTreeSet<_>>() {
        let workspace =
            admin::workspace(tx, id).await?.ok_or_else(|| StoreError::NotFound(format!("workspace {id}")))?;
        workspaces.insert(id, workspace);
    }
    Ok(workspaces)
}

/// Text as PostgreSQL can store it: it refuses NUL characters, which events may carry in
/// ids, names and traits (an error would fail the whole batch on every retry). NUL becomes
/// U+FFFD, the same way for what is written and what is looked up.
pub(super) fn text(value: &str) -> Cow<'_, str> {
    if value.contains('\0') {
        Cow::Owned(value.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(value)
    }
}

fn opt_text(value: Option<&str>) -> Option<Cow<'_, str>> {
    value.map(text)
}

/// Splits `(workspace, text)` keys into the two arrays `unnest` takes.
fn key_arrays<'a>(keys: impl IntoIterator<Item = &'a (WorkspaceId, String)>) -> (Vec<i64>, Vec<Cow<'a, str>>) {
    keys.into_iter().map(|(workspace, value)| (*workspace, text(value))).unzip()
}

/// The stored form of a `(workspace, text)` key, to find what a query returned for it.
fn stored_key((workspace, value): &(WorkspaceId, String)) -> (WorkspaceId, String) {
    (*workspace, text(value).into_owned())
}

/// Rows of `(workspace, text, value)` by their stored key.
fn keyed<V: for<'a> tokio_postgres::types::FromSql<'a>>(
    rows: &[tokio_postgres::Row],
) -> HashMap<(WorkspaceId, String), V> {
    rows.iter().map(|row| ((row.get(0), row.get(1)), row.get(2))).collect()
}

/// Looks up what the batch mentions: contacts by email (or by the email identity a merge
/// left), suppressions of the emails that reach no contact, and contacts by id.
async fn lookup(c: &(impl GenericClient + Sync), needs: &Needs) -> Result<Lookups> {
    let mut lookups = Lookups::default();
    if !needs.emails.is_empty() {
        let (workspaces, emails) = key_arrays(&needs.emails);
        let rows = c
            .query(
                "SELECT c.workspace_id, c.email, c.id FROM unnest($1::bigint[], $2::text[]) AS k (workspace_id, email)
                 JOIN contacts c ON c.workspace_id = k.workspace_id AND c.email = k.email",
                &[&workspaces, &emails],
            )
            .await?;
        let found: HashMap<_, ContactId> = keyed(&rows);
        let mut missing = Vec::new();
        for key in &needs.emails {
            match found.get(&stored_key(key)) {
                Some(id) => {
                    lookups.contacts_by_email.insert(key.clone(), *id);
                }
                None => missing.push(key),
            }
        }
        if !missing.is_empty() {
            // A merged-away contact's email stays an identity of the contact it went into.
            let (workspaces, emails) = key_arrays(missing.iter().copied());
            let rows = c
                .query(
                    "SELECT i.workspace_id, i.value, i.contact_id
                     FROM unnest($1::bigint[], $2::text[]) AS k (workspace_id, value)
                     JOIN identities i ON i.workspace_id = k.workspace_id AND i.value = k.value
                     WHERE i.kind = 'email'",
                    &[&workspaces, &emails],
                )
                .await?;
            let found: HashMap<_, ContactId> = keyed(&rows);
            missing.retain(|key| match found.get(&stored_key(key)) {
                Some(id) => {
                    lookups.contacts_by_email.insert((*key).clone(), *id);
                    false
                }
                None => true,
            });
        }
        if !missing.is_empty() {
            let (workspaces, emails) = key_arrays(missing.iter().copied());
            let rows = c
                .query(
                    "SELECT s.workspace_id, s.email, true FROM unnest($1::bigint[], $2::text[]) AS k (workspace_id, email)
                     JOIN suppressions s ON s.workspace_id = k.workspace_id AND s.email = k.email",
                    &[&workspaces, &emails],
                )
                .await?;
            let found: HashMap<_, bool> = keyed(&rows);
            lookups.suppressed.extend(missing.into_iter().filter(|key| found.contains_key(&stored_key(key))).cloned());
        }
    }
    if !needs.identities.is_empty() {
        let (workspaces, values) = key_arrays(&needs.identities);
        let rows = c
            .query(
                "SELECT i.workspace_id, i.value, i.contact_id FROM unnest($1::bigint[], $2::text[]) AS k (workspace_id, value)
                 JOIN identities i ON i.workspace_id = k.workspace_id AND i.value = k.value",
                &[&workspaces, &values],
            )
            .await?;
        let found: HashMap<_, ContactId> = keyed(&rows);
        for key in &needs.identities {
            if let Some(id) = found.get(&stored_key(key)) {
                lookups.contacts_by_identity.insert(key.clone(), *id);
            }
        }
    }
    Ok(lookups)
}

/// Pending events carrying any of these ids.
async fn fetch_pending(tx: &Transaction<'_>, ids: &[(WorkspaceId, String)]) -> Result<Vec<PendingEvent>> {
    let (workspaces, values) = key_arrays(ids);
    let rows = tx
        .query(
            "SELECT e.id, e.workspace_id, e.type, e.payload, e.occurred_at, e.received_at
             FROM unnest($1::bigint[], $2::text[]) AS k (workspace_id, value)
             JOIN events e ON e.workspace_id = k.workspace_id AND e.user_id = k.value AND e.contact_id IS NULL
             UNION ALL
             SELECT e.id, e.workspace_id, e.type, e.payload, e.occurred_at, e.received_at
             FROM unnest($1::bigint[], $2::text[]) AS k (workspace_id, value)
             JOIN events e ON e.workspace_id = k.workspace_id AND e.anonymous_id = k.value AND e.contact_id IS NULL",
            &[&workspaces, &values],
        )
        .await?;
    let mut found = Vec::with_capacity(rows.len());
    let mut seen = HashSet::new();
    for row in rows {
        let id: i64 = row.get(0);
        if seen.insert(id) {
            found.push(pending_event(&row));
        }
    }
    Ok(found)
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
async fn execute(
    tx: &Transaction<'_>,
    plan: &Plan,
    workspaces: &HashMap<WorkspaceId, Workspace>,
    now: i64,
) -> Result<Written> {
    let ids = insert_contacts(tx, plan, now).await?;
    let ids = ids.as_slice();
    insert_links(tx, plan, ids, now).await?;

    let mut membership_changed: HashSet<ContactId> = HashSet::new();
    write_accounts(tx, plan, ids, now, &mut membership_changed).await?;
    write_audiences(tx, plan, ids, now, &mut membership_changed).await?;
    let (created_days, new_interactions) = write_days(tx, plan, ids, now).await?;
    update_contacts(tx, plan, ids, workspaces, &membership_changed, new_interactions, now).await?;
    insert_events(tx, plan, ids).await?;

    if !plan.conflicts.is_empty() {
        let mut workspace_ids = Vec::new();
        let mut previous_ids = Vec::new();
        let mut user_ids = Vec::new();
        let mut contacts = Vec::new();
        let mut others = Vec::new();
        for conflict in &plan.conflicts {
            workspace_ids.push(conflict.workspace_id);
            previous_ids.push(text(&conflict.previous_id));
            user_ids.push(text(&conflict.user_id));
            contacts.push(resolve(ids, conflict.contact));
            others.push(resolve(ids, conflict.other));
        }
        tx.execute(
            "INSERT INTO alias_conflicts (workspace_id, previous_id, user_id, contact_id, other_contact_id, created_at)
             SELECT w, p, u, c, o, $6::bigint
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) WITH ORDINALITY
                  AS n (w, p, u, c, o, i)
             ORDER BY i",
            &[&workspace_ids, &previous_ids, &user_ids, &contacts, &others, &now],
        )
        .await?;
    }

    if !plan.firings.is_empty() {
        let mut workspace_ids = Vec::new();
        let mut rule_ids = Vec::new();
        let mut contacts = Vec::new();
        let mut occurrences = Vec::new();
        let mut triggers = Vec::new();
        let mut triggered = Vec::new();
        let mut due = Vec::new();
        for firing in &plan.firings {
            workspace_ids.push(firing.workspace_id);
            rule_ids.push(firing.rule_id);
            contacts.push(resolve(ids, firing.contact));
            occurrences.push(text(&firing.occurrence));
            triggers.push(text(&firing.trigger));
            triggered.push(firing.triggered_at);
            due.push(firing.due_at);
        }
        tx.execute(
            "INSERT INTO rule_firings (workspace_id, rule_id, contact_id, occurrence, trigger, triggered_at, due_at, state)
             SELECT w, r, c, o, t, ta, d, 'waiting'
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])
                  WITH ORDINALITY AS n (w, r, c, o, t, ta, d, i)
             ORDER BY i
             ON CONFLICT DO NOTHING",
            &[&workspace_ids, &rule_ids, &contacts, &occurrences, &triggers, &triggered, &due],
        )
        .await?;
    }
    for entry in &plan.journey_entries {
        journeys::enter(tx, entry, resolve(ids, entry.contact)).await?;
    }
    let wakes: Vec<(ContactId, i64)> =
        plan.journey_wakes.iter().map(|(contact, at)| (resolve(ids, *contact), *at)).collect();
    journeys::wake(tx, &wakes).await?;
    for track in &plan.outbound {
        let workspace = workspace_record(workspaces, track.workspace_id)?;
        let contact = resolve(ids, track.contact);
        nudges::enqueue_track(tx, workspace, contact, &track.event, track.properties.clone(), track.at, now).await?;
    }

    for (workspace, contact) in &plan.deletions {
        erase_contact(tx, *workspace, resolve(ids, *contact), false, now).await?;
    }
    Ok(Written { contact_ids: ids.to_vec(), created_days })
}

fn workspace_record(workspaces: &HashMap<WorkspaceId, Workspace>, id: WorkspaceId) -> Result<&Workspace> {
    workspaces.get(&id).ok_or_else(|| StoreError::NotFound(format!("workspace {id}")))
}

/// Creates the plan's new contacts; returns their ids in plan order.
async fn insert_contacts(tx: &Transaction<'_>, plan: &Plan, now: i64) -> Result<Vec<ContactId>> {
    if plan.new_contacts.is_empty() {
        return Ok(Vec::new());
    }
    let mut workspace_ids = Vec::with_capacity(plan.new_contacts.len());
    let mut emails = Vec::with_capacity(plan.new_contacts.len());
    let mut first_seen = Vec::with_capacity(plan.new_contacts.len());
    for contact in &plan.new_contacts {
        workspace_ids.push(contact.workspace_id);
        emails.push(contact.email.as_str());
        first_seen.push(contact.first_seen_at);
    }
    let rows = tx
        .query(
            "INSERT INTO contacts (workspace_id, email, first_seen_at, last_seen_at, created_at, updated_at)
             SELECT w, e, f, f, $4::bigint, $4::bigint
             FROM unnest($1::bigint[], $2::text[], $3::bigint[]) WITH ORDINALITY AS n (w, e, f, i)
             ORDER BY i
             RETURNING workspace_id, email, id",
            &[&workspace_ids, &emails, &first_seen, &now],
        )
        .await?;
    // The planner creates one contact per email, so the key finds each one's id.
    let by_key: HashMap<(WorkspaceId, String), ContactId> =
        rows.iter().map(|row| ((row.get(0), row.get(1)), row.get(2))).collect();
    plan.new_contacts
        .iter()
        .map(|contact| {
            by_key
                .get(&(contact.workspace_id, contact.email.clone()))
                .copied()
                .ok_or_else(|| StoreError::unavailable(format!("contact {} was not created", contact.email)))
        })
        .collect()
}

async fn insert_links(tx: &Transaction<'_>, plan: &Plan, ids: &[ContactId], now: i64) -> Result<()> {
    if plan.links.is_empty() {
        return Ok(());
    }
    let mut workspace_ids = Vec::with_capacity(plan.links.len());
    let mut values = Vec::with_capacity(plan.links.len());
    let mut contacts = Vec::with_capacity(plan.links.len());
    let mut kinds = Vec::with_capacity(plan.links.len());
    for link in &plan.links {
        workspace_ids.push(link.workspace_id);
        values.push(text(&link.value));
        contacts.push(resolve(ids, link.contact));
        kinds.push(link.kind);
    }
    tx.execute(
        "INSERT INTO identities (workspace_id, value, contact_id, kind, created_at)
         SELECT w, v, c, k, $5::bigint FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[]) AS n (w, v, c, k)
         ON CONFLICT DO NOTHING",
        &[&workspace_ids, &values, &contacts, &kinds, &now],
    )
    .await?;
    Ok(())
}

async fn write_accounts(
    tx: &Transaction<'_>,
    plan: &Plan,
    ids: &[ContactId],
    now: i64,
    membership_changed: &mut HashSet<ContactId>,
) -> Result<()> {
    if plan.accounts.is_empty() {
        return Ok(());
    }
    let (workspace_ids, group_ids) = key_arrays(plan.accounts.keys());
    let rows = tx
        .query(
            "SELECT a.workspace_id, a.group_id, a.traits FROM unnest($1::bigint[], $2::text[]) AS k (workspace_id, group_id)
             JOIN accounts a ON a.workspace_id = k.workspace_id AND a.group_id = k.group_id",
            &[&workspace_ids, &group_ids],
        )
        .await?;
    let stored: HashMap<_, String> = keyed(&rows);
    let mut names = Vec::with_capacity(plan.accounts.len());
    let mut traits_json = Vec::with_capacity(plan.accounts.len());
    for (key, change) in &plan.accounts {
        let mut traits: Map<String, Value> =
            stored.get(&stored_key(key)).and_then(|traits| serde_json::from_str(traits).ok()).unwrap_or_default();
        merge_traits(&mut traits, &change.traits_patch);
        names.push(display_name(&traits).map(|name| text(&name).into_owned()));
        traits_json.push(Value::Object(traits).to_string());
    }
    let rows = tx
        .query(
            "INSERT INTO accounts (workspace_id, group_id, name, traits, created_at, updated_at)
             SELECT w, g, n, t, $5::bigint, $5::bigint
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS k (w, g, n, t, i)
             ORDER BY i
             ON CONFLICT (workspace_id, group_id) DO UPDATE SET
                 traits = excluded.traits, name = excluded.name, updated_at = excluded.updated_at
             RETURNING workspace_id, group_id, id",
            &[&workspace_ids, &group_ids, &names, &traits_json, &now],
        )
        .await?;
    let account_ids: HashMap<_, i64> = keyed(&rows);

    // The first membership of a contact in an account is the one that counts, as when each
    // is inserted in turn.
    let mut seen = HashSet::new();
    let mut accounts = Vec::new();
    let mut contacts = Vec::new();
    let mut joined = Vec::new();
    for membership in &plan.memberships {
        let Some(account_id) = account_ids.get(&(membership.workspace_id, text(&membership.group_id).into_owned()))
        else {
            continue;
        };
        let contact = resolve(ids, membership.contact);
        if seen.insert((*account_id, contact)) {
            accounts.push(*account_id);
            contacts.push(contact);
            joined.push(membership.at);
        }
    }
    if accounts.is_empty() {
        return Ok(());
    }
    let rows = tx
        .query(
            "INSERT INTO account_members (account_id, contact_id, joined_at)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])
             ON CONFLICT DO NOTHING
             RETURNING contact_id",
            &[&accounts, &contacts, &joined],
        )
        .await?;
    membership_changed.extend(rows.iter().map(|row| row.get::<_, ContactId>(0)));
    Ok(())
}

async fn write_audiences(
    tx: &Transaction<'_>,
    plan: &Plan,
    ids: &[ContactId],
    now: i64,
    membership_changed: &mut HashSet<ContactId>,
) -> Result<()> {
    if plan.audiences.is_empty() {
        return Ok(());
    }
    // Each audience once, described by the first change that names it.
    let mut keys = HashSet::new();
    let mut workspace_ids = Vec::new();
    let mut audience_keys = Vec::new();
    let mut computation_ids = Vec::new();
    let mut space_ids = Vec::new();
    for audience_event in &plan.audiences {
        let change = &audience_event.change;
        if keys.insert((audience_event.workspace_id, change.key.as_str())) {
            workspace_ids.push(audience_event.workspace_id);
            audience_keys.push(text(&change.key));
            computation_ids.push(opt_text(change.computation_id.as_deref()));
            space_ids.push(opt_text(change.space_id.as_deref()));
        }
    }
    let rows = tx
        .query(
            "INSERT INTO audiences (workspace_id, key, computation_id, space_id, created_at)
             SELECT w, k, c, s, $5::bigint
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS n (w, k, c, s, i)
             ORDER BY i
             ON CONFLICT (workspace_id, key) DO UPDATE SET
                 computation_id = COALESCE(excluded.computation_id, audiences.computation_id),
                 space_id = COALESCE(excluded.space_id, audiences.space_id)
             RETURNING workspace_id, key, id",
            &[&workspace_ids, &audience_keys, &computation_ids, &space_ids, &now],
        )
        .await?;
    let audience_ids: HashMap<_, i64> = keyed(&rows);

    let mut changes = Vec::with_capacity(plan.audiences.len());
    for audience_event in &plan.audiences {
        let key = (audience_event.workspace_id, text(&audience_event.change.key).into_owned());
        let audience_id = *audience_ids
            .get(&key)
            .ok_or_else(|| StoreError::unavailable(format!("audience {} was not stored", key.1)))?;
        changes.push((audience_id, resolve(ids, audience_event.contact), audience_event));
    }
    let (audiences, contacts): (Vec<i64>, Vec<ContactId>) =
        changes.iter().map(|(audience, contact, _)| (*audience, *contact)).unzip();
    let rows = tx
        .query(
            "SELECT m.audience_id, m.contact_id, m.changed_at
             FROM unnest($1::bigint[], $2::bigint[]) AS k (audience_id, contact_id)
             JOIN audience_members m ON m.audience_id = k.audience_id AND m.contact_id = k.contact_id",
            &[&audiences, &contacts],
        )
        .await?;
    let mut changed_at: HashMap<(i64, ContactId), i64> =
        rows.iter().map(|row| ((row.get(0), row.get(1)), row.get(2))).collect();

    // The changes in order, as if each were written in turn: the membership ends as the last
    // that is not older than the one before it.
    let mut memberships: BTreeMap<(i64, ContactId), (bool, i64)> = BTreeMap::new();
    let mut entered = Vec::with_capacity(changes.len());
    let mut at = Vec::with_capacity(changes.len());
    for (audience_id, contact, audience_event) in &changes {
        let key = (*audience_id, *contact);
        // A late-arriving older change is history, not the current state.
        if changed_at.get(&key).is_none_or(|current| audience_event.at >= *current) {
            changed_at.insert(key, audience_event.at);
            memberships.insert(key, (audience_event.change.entered, audience_event.at));
            membership_changed.insert(*contact);
        }
        entered.push(audience_event.change.entered);
        at.push(audience_event.at);
    }
    if !memberships.is_empty() {
        let mut member_audiences = Vec::with_capacity(memberships.len());
        let mut member_contacts = Vec::with_capacity(memberships.len());
        let mut is_member = Vec::with_capacity(memberships.len());
        let mut member_changed_at = Vec::with_capacity(memberships.len());
        for ((audience_id, contact), (member, changed)) in &memberships {
            member_audiences.push(*audience_id);
            member_contacts.push(*contact);
            is_member.push(*member);
            member_changed_at.push(*changed);
        }
        tx.execute(
            "INSERT INTO audience_members (audience_id, contact_id, is_member, changed_at)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::boolean[], $4::bigint[])
             ON CONFLICT (audience_id, contact_id) DO UPDATE SET
                 is_member = excluded.is_member, changed_at = excluded.changed_at",
            &[&member_audiences, &member_contacts, &is_member, &member_changed_at],
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO audience_history (audience_id, contact_id, entered, at)
         SELECT a, c, e, t FROM unnest($1::bigint[], $2::bigint[], $3::boolean[], $4::bigint[]) WITH ORDINALITY
              AS n (a, c, e, t, i)
         ORDER BY i",
        &[&audiences, &contacts, &entered, &at],
    )
    .await?;
    Ok(())
}

/// New interactions per contact, for its closeness history.
type NewInteractions = HashMap<ContactId, Vec<(InteractionKind, f64)>>;

/// One upsert per contact-day, all in one statement; a day is new when its stored hits equal
/// the batch's.
async fn write_days(
    tx: &Transaction<'_>,
    plan: &Plan,
    ids: &[ContactId],
    now: i64,
) -> Result<(HashSet<(ContactRef, i32)>, NewInteractions)> {
    let mut created_days = HashSet::new();
    let mut new_interactions: NewInteractions = HashMap::new();
    if plan.days.is_empty() {
        return Ok((created_days, new_interactions));
    }
    let len = plan.days.len();
    let mut workspace_ids = Vec::with_capacity(len);
    let mut contacts = Vec::with_capacity(len);
    let mut days = Vec::with_capacity(len);
    let mut occurred = Vec::with_capacity(len);
    let mut descriptions = Vec::with_capacity(len);
    let mut hits = Vec::with_capacity(len);
    for ((contact, day), activity) in &plan.days {
        workspace_ids.push(activity.workspace_id);
        contacts.push(resolve(ids, *contact));
        days.push(*day);
        occurred.push(activity.occurred_at);
        descriptions.push(text(&activity.description));
        hits.push(activity.hits);
    }
    // Descriptions compare byte by byte (COLLATE "C"), as the planner compares them.
    let rows = tx
        .query(
            "INSERT INTO interactions (workspace_id, contact_id, kind, day, occurred_at, description, hits, created_at)
             SELECT w, c, 'activity', d, o, s, h, $7::bigint
             FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::bigint[], $5::text[], $6::bigint[])
                  WITH ORDINALITY AS n (w, c, d, o, s, h, i)
             ORDER BY i
             ON CONFLICT (contact_id, day) WHERE kind = 'activity' DO UPDATE SET
                 hits = interactions.hits + excluded.hits,
                 description = CASE WHEN (excluded.occurred_at, excluded.description COLLATE \"C\")
                                         < (interactions.occurred_at, interactions.description COLLATE \"C\")
                                    THEN excluded.description ELSE interactions.description END,
                 occurred_at = LEAST(interactions.occurred_at, excluded.occurred_at)
             RETURNING contact_id, day, hits",
            &[&workspace_ids, &contacts, &days, &occurred, &descriptions, &hits, &now],
        )
        .await?;
    let stored: HashMap<(ContactId, i32), i64> =
        rows.iter().map(|row| ((row.get(0), row.get(1)), row.get(2))).collect();
    for (key @ (contact, day), activity) in &plan.days {
        let contact = resolve(ids, *contact);
        if stored.get(&(contact, *day)) == Some(&activity.hits) {
            created_days.insert(*key);
            new_interactions.entry(contact).or_default().push((InteractionKind::Activity, activity_time(*day)));
        }
    }
    Ok((created_days, new_interactions))
}

/// Applies the plan's changes to the contact rows it touched: traits, times, closeness and
/// the cadence inherited from audiences and accounts whose membership changed.
async fn update_contacts(
    tx: &Transaction<'_>,
    plan: &Plan,
    ids: &[ContactId],
    workspaces: &HashMap<WorkspaceId, Workspace>,
    membership_changed: &HashSet<ContactId>,
    mut new_interactions: NewInteractions,
    now: i64,
) -> Result<()> {
    let mut touched: BTreeMap<ContactId, Option<&ContactChange>> = BTreeMap::new();
    for (contact, change) in &plan.contacts {
        touched.insert(resolve(ids, *contact), Some(change));
    }
    for contact in membership_changed {
        touched.entry(*contact).or_insert(None);
    }
    if touched.is_empty() {
        return Ok(());
    }
    let contacts: Vec<ContactId> = touched.keys().copied().collect();
    let mut states = load_states(tx, &contacts).await?;
    let mut cadences = HashMap::new();
    if !membership_changed.is_empty() {
        let batch_workspaces: Vec<WorkspaceId> = workspaces.keys().copied().collect();
        let rows = tx
            .query("SELECT DISTINCT workspace_id FROM cadence_rules WHERE workspace_id = ANY($1)", &[&batch_workspaces])
            .await?;
        let with_rules: HashSet<WorkspaceId> = rows.iter().map(|row| row.get(0)).collect();
        let refresh: Vec<ContactId> = membership_changed
            .iter()
            .copied()
            .filter(|contact| states.get(contact).is_some_and(|(workspace, _)| with_rules.contains(workspace)))
            .collect();
        cadences = inherited_cadences(tx, &refresh).await?;
    }
    let mut full = Vec::new();
    let mut activity_only = Vec::new();
    for (contact, change) in touched {
        let Some((workspace_id, mut state)) = states.remove(&contact) else { continue };
        let profile_changed = change.is_some_and(|change| state.apply(change));
        if let Some(interactions) = new_interactions.remove(&contact) {
            let model = workspace_record(workspaces, workspace_id)?.model();
            add_interactions(tx, &mut state, &model, contact, interactions).await?;
        }
        if let Some(cadence) = cadences.get(&contact) {
            state.inherited_cadence = *cadence;
        }
        if profile_changed {
            full.push((contact, state));
        } else {
            activity_only.push((contact, state));
        }
    }
    save_states(tx, &full, now).await?;
    save_activity(tx, &activity_only, now).await?;
    Ok(())
}

async fn insert_events(tx: &Transaction<'_>, plan: &Plan, ids: &[ContactId]) -> Result<()> {
    if !plan.events.is_empty() {
        let len = plan.events.len();
        let mut workspace_ids = Vec::with_capacity(len);
        let mut contacts = Vec::with_capacity(len);
        let mut message_ids = Vec::with_capacity(len);
        let mut types = Vec::with_capacity(len);
        let mut names = Vec::with_capacity(len);
        let mut user_ids = Vec::with_capacity(len);
        let mut anonymous_ids = Vec::with_capacity(len);
        let mut occurred = Vec::with_capacity(len);
        let mut received = Vec::with_capacity(len);
        let mut payloads = Vec::with_capacity(len);
        for event in &plan.events {
            workspace_ids.push(event.workspace_id);
            contacts.push(event.contact.map(|contact| resolve(ids, contact)));
            message_ids.push(text(&event.message_id));
            types.push(event.event_type);
            names.push(opt_text(event.name.as_deref()));
            user_ids.push(opt_text(event.user_id.as_deref()));
            anonymous_ids.push(opt_text(event.anonymous_id.as_deref()));
            occurred.push(event.occurred_at);
            received.push(event.received_at);
            payloads.push(text(&event.payload));
        }
        tx.execute(
            "INSERT INTO events (workspace_id, contact_id, message_id, type, name, user_id, anonymous_id,
                                 occurred_at, received_at, payload)
             SELECT w, c, m, t, n, u, a, o, r, p
             FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::bigint[], $9::bigint[], $10::text[]) WITH ORDINALITY AS e (w, c, m, t, n, u, a, o, r, p, i)
             ORDER BY i",
            &[
                &workspace_ids,
                &contacts,
                &message_ids,
                &types,
                &names,
                &user_ids,
                &anonymous_ids,
                &occurred,
                &received,
                &payloads,
            ],
        )
        .await?;
    }
    if !plan.attached.is_empty() {
        let (events, contacts): (Vec<i64>, Vec<ContactId>) =
            plan.attached.iter().map(|(event, contact)| (*event, resolve(ids, *contact))).unzip();
        tx.execute(
            "UPDATE events SET contact_id = u.contact_id
             FROM unnest($1::bigint[], $2::bigint[]) AS u (id, contact_id)
             WHERE events.id = u.id AND events.contact_id IS NULL",
            &[&events, &contacts],
        )
        .await?;
    }
    Ok(())
}

/// The shortest cadence among the rules of each contact's audiences and accounts.
async fn inherited_cadences(
    c: &(impl GenericClient + Sync),
    contacts: &[ContactId],
) -> Result<HashMap<ContactId, Option<i64>>> {
    if contacts.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = c
        .query(
            "SELECT c.id, (
                 SELECT MIN(r.days) FROM cadence_rules r
                 WHERE r.workspace_id = c.workspace_id AND (
                     (r.target = 'audience' AND r.target_key IN (
                         SELECT a.key FROM audience_members m JOIN audiences a ON a.id = m.audience_id
                         WHERE m.contact_id = c.id AND m.is_member))
                  OR (r.target = 'account' AND r.target_key IN (
                         SELECT ac.group_id FROM account_members am JOIN accounts ac ON ac.id = am.account_id
                         WHERE am.contact_id = c.id))))
             FROM contacts c WHERE c.id = ANY($1)",
            &[&contacts],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

async fn inherited_cadence(c: &(impl GenericClient + Sync), contact: ContactId) -> Result<Option<i64>> {
    Ok(inherited_cadences(c, &[contact]).await?.remove(&contact).flatten())
}

/// Loads the part of contact rows the writer changes, with each contact's workspace.
async fn load_states(
    c: &(impl GenericClient + Sync),
    contacts: &[ContactId],
) -> Result<HashMap<ContactId, (WorkspaceId, ContactState)>> {
    if contacts.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = c
        .query(
            "SELECT id, workspace_id, traits, computed_traits, closeness_key, first_seen_at, last_seen_at,
                    last_interaction_at, cadence_days, effective_cadence_days, created_at, closeness_last_t, warm_until
             FROM contacts WHERE id = ANY($1)",
            &[&contacts],
        )
        .await?;
    let mut states = HashMap::with_capacity(rows.len());
    for row in rows {
        let traits: &str = row.get(2);
        let computed: &str = row.get(3);
        let cadence_days: Option<i64> = row.get(8);
        let effective: Option<i64> = row.get(9);
        let state = ContactState {
            traits: serde_json::from_str(traits).unwrap_or_default(),
            computed: serde_json::from_str(computed).unwrap_or_default(),
            closeness: History {
                key: row.get(4),
                last_t: row.get(11),
                warm_until: ContactState::warm_until_from_ms(row.get(12)),
            },
            first_seen_at: row.get(5),
            last_seen_at: row.get(6),
            last_interaction_at: row.get(7),
            cadence_days,
            // What is not the contact's own cadence was inherited.
            inherited_cadence: if cadence_days.is_some() { None } else { effective },
            created_at: row.get(10),
        };
        states.insert(row.get(0), (row.get(1), state));
    }
    Ok(states)
}

async fn load_state(c: &(impl GenericClient + Sync), contact: ContactId) -> Result<Option<ContactState>> {
    Ok(load_states(c, &[contact]).await?.remove(&contact).map(|(_, state)| state))
}

/// Adds new interactions to a contact's closeness, rebuilding it from the stored
/// interactions when one arrived late.
async fn add_interactions(
    c: &(impl GenericClient + Sync),
    state: &mut ContactState,
    model: &Model,
    contact: ContactId,
    interactions: Vec<(InteractionKind, f64)>,
) -> Result<()> {
    if !state.extend_closeness(model, interactions) {
        state.closeness = closeness_history(c, model, contact).await?;
    }
    Ok(())
}

/// Saves what the writer changed of contact rows.
async fn save_states(c: &(impl GenericClient + Sync), states: &[(ContactId, ContactState)], now: i64) -> Result<()> {
    if states.is_empty() {
        return Ok(());
    }
    let len = states.len();
    let mut contacts = Vec::with_capacity(len);
    let mut names = Vec::with_capacity(len);
    let mut traits = Vec::with_capacity(len);
    let mut computed = Vec::with_capacity(len);
    let mut keys = Vec::with_capacity(len);
    let mut first_seen = Vec::with_capacity(len);
    let mut last_seen = Vec::with_capacity(len);
    let mut last_interaction = Vec::with_capacity(len);
    let mut cadence = Vec::with_capacity(len);
    let mut effective = Vec::with_capacity(len);
    let mut due = Vec::with_capacity(len);
    let mut last_t = Vec::with_capacity(len);
    let mut warm_until = Vec::with_capacity(len);
    for (contact, state) in states {
        contacts.push(*contact);
        names.push(state.name().map(|name| text(&name).into_owned()));
        traits.push(Value::Object(state.traits.clone()).to_string());
        computed.push(serde_json::to_string(&state.computed).unwrap_or_default());
        keys.push(state.closeness.key);
        first_seen.push(state.first_seen_at);
        last_seen.push(state.last_seen_at);
        last_interaction.push(state.last_interaction_at);
        cadence.push(state.cadence_days);
        effective.push(state.effective_cadence());
        due.push(state.due_at());
        last_t.push(state.closeness.last_t);
        warm_until.push(state.warm_until_ms());
    }
    c.execute(
        "UPDATE contacts SET name = u.name, traits = u.traits, computed_traits = u.computed, closeness_key = u.key,
                             first_seen_at = u.first_seen, last_seen_at = u.last_seen,
                             last_interaction_at = u.last_interaction, cadence_days = u.cadence,
                             effective_cadence_days = u.effective, due_at = u.due, updated_at = $14::bigint,
                             closeness_last_t = u.last_t, warm_until = u.warm_until
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::double precision[], $6::bigint[],
                     $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::double precision[],
                     $13::bigint[])
              AS u (id, name, traits, computed, key, first_seen, last_seen, last_interaction, cadence, effective, due,
                    last_t, warm_until)
         WHERE contacts.id = u.id",
        &[
            &contacts,
            &names,
            &traits,
            &computed,
            &keys,
            &first_seen,
            &last_seen,
            &last_interaction,
            &cadence,
            &effective,
            &due,
            &last_t,
            &warm_until,
            &now,
        ],
    )
    .await?;
    Ok(())
}

/// Saves what activity changes of contact rows (times, closeness, due date), leaving the
/// traits as they are: most events of product traffic change nothing else.
async fn save_activity(tx: &Transaction<'_>, states: &[(ContactId, ContactState)], now: i64) -> Result<()> {
    if states.is_empty() {
        return Ok(());
    }
    let len = states.len();
    let mut contacts = Vec::with_capacity(len);
    let mut keys = Vec::with_capacity(len);
    let mut first_seen = Vec::with_capacity(len);
    let mut last_seen = Vec::with_capacity(len);
    let mut last_interaction = Vec::with_capacity(len);
    let mut effective = Vec::with_capacity(len);
    let mut due = Vec::with_capacity(len);
    let mut last_t = Vec::with_capacity(len);
    let mut warm_until = Vec::with_capacity(len);
    for (contact, state) in states {
        contacts.push(*contact);
        keys.push(state.closeness.key);
        first_seen.push(state.first_seen_at);
        last_seen.push(state.last_seen_at);
        last_interaction.push(state.last_interaction_at);
        effective.push(state.effective_cadence());
        due.push(state.due_at());
        last_t.push(state.closeness.last_t);
        warm_until.push(state.warm_until_ms());
    }
    tx.execute(
        "UPDATE contacts SET closeness_key = u.key, first_seen_at = u.first_seen, last_seen_at = u.last_seen,
                             last_interaction_at = u.last_interaction, effective_cadence_days = u.effective,
                             due_at = u.due, updated_at = $10::bigint, closeness_last_t = u.last_t,
                             warm_until = u.warm_until
         FROM unnest($1::bigint[], $2::double precision[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                     $7::bigint[], $8::double precision[], $9::bigint[])
              AS u (id, key, first_seen, last_seen, last_interaction, effective, due, last_t, warm_until)
         WHERE contacts.id = u.id",
        &[&contacts, &keys, &first_seen, &last_seen, &last_interaction, &effective, &due, &last_t, &warm_until, &now],
    )
    .await?;
    Ok(())
}

/// What writing `event` would do (`POST /api/validate`), read-only.
pub async fn preview(c: &Client, workspace: WorkspaceId, event: Event) -> Result<Preview> {
    let workspace_record =
        admin::workspace(c, workspace).await?.ok_or_else(|| StoreError::NotFound(format!("workspace {workspace}")))?;
    let incoming = Incoming::new(workspace, event);
    let needs = plan::needs([(workspace, &incoming.event, None)]);
    let mut lookups = lookup(c, &needs).await?;
    if dedup::taken(c, &incoming.digest, incoming.event.received_at.as_millisecond()).await? {
        lookups.seen_messages.insert(incoming.digest);
    }
    let rules = HashMap::from([(workspace, WorkspaceRules::new(workspace_record.tz(), Vec::new(), false))]);
    let batch = [incoming];
    let plan = {
        let mut planner = Planner::new(&rules, lookups, 1);
        planner.plan_identities(&batch);
        planner.plan_activity(&batch);
        planner.finish()
    };
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
            if read::activity_exists(c, id, day).await? {
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
pub async fn expire_pending(c: &mut Client, now: i64) -> Result<u64> {
    let tx = c.transaction().await?;
    // An ingest batch may be attaching these very events: it finishes first, or finds them gone.
    lock_contacts(&tx).await?;
    let workspaces = admin::workspaces(&tx).await?;
    let mut deleted = 0;
    for workspace in workspaces {
        let cutoff = workspace.pending_cutoff(now);
        deleted += tx
            .execute(
                "DELETE FROM events WHERE contact_id IS NULL AND received_at < $2 AND workspace_id = $1",
                &[&workspace.id, &cutoff],
            )
            .await?;
    }
    tx.commit().await?;
    Ok(deleted)
}

async fn require_contact(tx: &Transaction<'_>, workspace: WorkspaceId, contact: ContactId) -> Result<()> {
    let exists = tx
        .query_opt("SELECT 1 FROM contacts WHERE id = $1 AND workspace_id = $2", &[&contact, &workspace])
        .await?
        .is_some();
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("contact {contact}")))
    }
}

/// Adds a manual interaction.
pub async fn add_interaction(
    c: &mut Client,
    workspace: WorkspaceId,
    contact: ContactId,
    interaction: NewInteraction,
    now: i64,
) -> Result<Interaction> {
    let tx = c.transaction().await?;
    lock_contacts(&tx).await?;
    let added = insert_interaction(&tx, workspace, contact, interaction, now).await?;
    tx.commit().await?;
    Ok(added)
}

/// Adds an interaction by hand inside the caller's transaction, which holds the contacts lock.
async fn insert_interaction(
    tx: &Transaction<'_>,
    workspace: WorkspaceId,
    contact: ContactId,
    interaction: NewInteraction,
    now: i64,
) -> Result<Interaction> {
    require_contact(tx, workspace, contact).await?;
    let workspace_record =
        admin::workspace(tx, workspace).await?.ok_or_else(|| StoreError::NotFound(format!("workspace {workspace}")))?;
    let at = interaction.occurred_at.as_millisecond();
    let day = day_key(interaction.occurred_at, &workspace_record.tz());
    let id: i64 = tx
        .query_one(
            "INSERT INTO interactions (workspace_id, contact_id, kind, day, occurred_at, description, hits, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7) RETURNING id",
            &[&workspace, &contact, &interaction.kind.as_str(), &day, &at, &text(&interaction.text), &now],
        )
        .await?
        .get(0);
    let mut state = load_state(tx, contact).await?.ok_or_else(|| StoreError::NotFound(format!("contact {contact}")))?;
    add_interactions(tx, &mut state, &workspace_record.model(), contact, vec![(interaction.kind, days_of_millis(at))])
        .await?;
    state.note_interaction(at);
    save_states(tx, &[(contact, state)], now).await?;
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

/// Erases a contact and everything derived from it; with `suppress`, its email stays out of kith
/// afterwards.
pub async fn delete_contact(
    c: &mut Client,
    workspace: WorkspaceId,
    contact: ContactId,
    suppress: bool,
    now: i64,
) -> Result<bool> {
    let tx = c.transaction().await?;
    lock_contacts(&tx).await?;
    let deleted = erase_contact(&tx, workspace, contact, suppress, now).await?;
    tx.commit().await?;
    Ok(deleted)
}

/// Erases a contact within the caller's transaction.
async fn erase_contact(
    tx: &Transaction<'_>,
    workspace: WorkspaceId,
    contact: ContactId,
    suppress: bool,
    now: i64,
) -> Result<bool> {
    let row =
        tx.query_opt("SELECT email FROM contacts WHERE id = $1 AND workspace_id = $2", &[&contact, &workspace]).await?;
    let Some(row) = row else { return Ok(false) };
    let email: String = row.get(0);
    // Pending events of the contact's ids are the same person's data.
    tx.execute(
        "DELETE FROM events WHERE workspace_id = $1 AND contact_id IS NULL AND (
             user_id IN (SELECT value FROM identities WHERE contact_id = $2)
          OR anonymous_id IN (SELECT value FROM identities WHERE contact_id = $2))",
        &[&workspace, &contact],
    )
    .await?;
    for statement in [
        "DELETE FROM events WHERE contact_id = $1",
        "DELETE FROM interactions WHERE contact_id = $1",
        "DELETE FROM identities WHERE contact_id = $1",
        "DELETE FROM account_members WHERE contact_id = $1",
        "DELETE FROM audience_members WHERE contact_id = $1",
        "DELETE FROM audience_history WHERE contact_id = $1",
        "DELETE FROM outbox WHERE contact_id = $1",
        "DELETE FROM rule_firings WHERE contact_id = $1",
        "DELETE FROM journey_steps WHERE contact_id = $1",
        "DELETE FROM journey_entries WHERE contact_id = $1",
        "DELETE FROM tasks WHERE contact_id = $1",
        "DELETE FROM owners WHERE subject = 'contact' AND subject_id = $1",
        "DELETE FROM alias_conflicts WHERE contact_id = $1 OR other_contact_id = $1",
        "DELETE FROM contacts WHERE id = $1",
    ] {
        tx.execute(statement, &[&contact]).await?;
    }
    if suppress {
        tx.execute(
            "INSERT INTO suppressions (workspace_id, email, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&workspace, &email, &now],
        )
        .await?;
    }
    Ok(true)
}

/// Moves everything of `from` into `into` (an explicit merge, e.g. of an alias conflict) and
/// deletes `from`.
pub async fn merge_contacts(
    c: &mut Client,
    workspace: WorkspaceId,
    into: ContactId,
    from: ContactId,
    now: i64,
) -> Result<Contact> {
    if into == from {
        return Err(StoreError::Conflict("a contact cannot be merged into itself".into()));
    }
    let tx = c.transaction().await?;
    lock_contacts(&tx).await?;
    require_contact(&tx, workspace, into).await?;
    require_contact(&tx, workspace, from).await?;
    let workspace_record = admin::workspace(&tx, workspace)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("workspace {workspace}")))?;
    let from_email: String = tx.query_one("SELECT email FROM contacts WHERE id = $1", &[&from]).await?.get(0);
    let mut target = load_state(&tx, into).await?.ok_or_else(|| StoreError::NotFound(format!("contact {into}")))?;
    let source = load_state(&tx, from).await?.ok_or_else(|| StoreError::NotFound(format!("contact {from}")))?;

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
             description = CASE WHEN (f.occurred_at, f.description COLLATE \"C\") < (t.occurred_at, t.description COLLATE \"C\")
                                THEN f.description ELSE t.description END,
             occurred_at = LEAST(t.occurred_at, f.occurred_at)
         FROM interactions AS f
         WHERE t.contact_id = $1 AND f.contact_id = $2 AND t.kind = 'activity' AND f.kind = 'activity' AND t.day = f.day",
        &[&into, &from],
    )
    .await?;
    tx.execute(
        "DELETE FROM interactions WHERE contact_id = $2 AND kind = 'activity'
           AND day IN (SELECT day FROM interactions WHERE contact_id = $1 AND kind = 'activity')",
        &[&into, &from],
    )
    .await?;
    for statement in [
        "UPDATE interactions SET contact_id = $1 WHERE contact_id = $2",
        "UPDATE events SET contact_id = $1 WHERE contact_id = $2",
        "UPDATE identities SET contact_id = $1 WHERE contact_id = $2",
        "INSERT INTO account_members (account_id, contact_id, joined_at)
             SELECT account_id, $1::bigint, joined_at FROM account_members WHERE contact_id = $2 ON CONFLICT DO NOTHING",
        "INSERT INTO audience_members (audience_id, contact_id, is_member, changed_at)
             SELECT audience_id, $1::bigint, is_member, changed_at FROM audience_members WHERE contact_id = $2
             ON CONFLICT (audience_id, contact_id) DO UPDATE SET
                 is_member = CASE WHEN excluded.changed_at > audience_members.changed_at
                                  THEN excluded.is_member ELSE audience_members.is_member END,
                 changed_at = GREATEST(excluded.changed_at, audience_members.changed_at)",
        "UPDATE audience_history SET contact_id = $1 WHERE contact_id = $2",
        "UPDATE tasks SET contact_id = $1 WHERE contact_id = $2",
        // The surviving contact keeps its owner; the other's owner takes it if it had none.
        "INSERT INTO owners (workspace_id, subject, subject_id, user_id, assigned_at)
             SELECT workspace_id, subject, $1, user_id, assigned_at FROM owners
             WHERE subject = 'contact' AND subject_id = $2 ON CONFLICT DO NOTHING",
        // Journey entries follow the person, so an entry policy sees them; an occurrence both
        // entered with (the same event reached both) stays with the survivor's entry.
        "UPDATE journey_entries e SET contact_id = $1 WHERE contact_id = $2 AND NOT EXISTS (
             SELECT 1 FROM journey_entries o WHERE o.journey_id = e.journey_id
               AND o.contact_id = $1 AND o.occurrence = e.occurrence)",
        "UPDATE journey_steps SET contact_id = $1 WHERE contact_id = $2",
    ] {
        tx.execute(statement, &[&into, &from]).await?;
    }
    tx.execute(
        "UPDATE journey_entries SET state = 'exited', step = NULL, ended_at = $2,
                                    reason = 'the contact was merged into another'
         WHERE contact_id = $1 AND state = 'active'",
        &[&from, &now],
    )
    .await?;
    for statement in [
        "DELETE FROM account_members WHERE contact_id = $1",
        "DELETE FROM audience_members WHERE contact_id = $1",
        "DELETE FROM owners WHERE subject = 'contact' AND subject_id = $1",
    ] {
        tx.execute(statement, &[&from]).await?;
    }
    // Conflicts between the two contacts are what the merge resolves.
    tx.execute(
        "UPDATE alias_conflicts SET resolved_at = $3
         WHERE (contact_id = $1 AND other_contact_id = $2) OR (contact_id = $2 AND other_contact_id = $1)",
        &[&into, &from, &now],
    )
    .await?;
    tx.execute("UPDATE alias_conflicts SET contact_id = $1 WHERE contact_id = $2", &[&into, &from]).await?;
    tx.execute("UPDATE alias_conflicts SET other_contact_id = $1 WHERE other_contact_id = $2", &[&into, &from]).await?;
    tx.execute("DELETE FROM contacts WHERE id = $1", &[&from]).await?;
    // Identifies naming the merged-away email now reach the surviving contact.
    tx.execute(
        "INSERT INTO identities (workspace_id, value, contact_id, kind, created_at) VALUES ($1, $2, $3, 'email', $4)
         ON CONFLICT (workspace_id, value) DO UPDATE SET contact_id = excluded.contact_id",
        &[&workspace, &from_email, &into, &now],
    )
    .await?;

    target.closeness = closeness_history(&tx, &workspace_record.model(), into).await?;
    if tx.query_opt("SELECT 1 FROM cadence_rules WHERE workspace_id = $1 LIMIT 1", &[&workspace]).await?.is_some() {
        target.inherited_cadence = inherited_cadence(&tx, into).await?;
    }
    save_states(&tx, &[(into, target)], now).await?;
    tx.commit().await?;
    read::contact(&*c, workspace, &ContactKey::Id(into))
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("contact {into}")))
}

/// The closeness history rebuilt from a contact's stored interactions.
/// A stored event to plan again, from a row of `id, workspace_id, type, payload, occurred_at,
/// received_at` of the events table.
pub(super) fn pending_event(row: &tokio_postgres::Row) -> PendingEvent {
    PendingEvent {
        id: row.get(0),
        workspace_id: row.get(1),
        event_type: row.get(2),
        payload: row.get(3),
        occurred_at: row.get(4),
        received_at: row.get(5),
    }
}

pub(super) async fn closeness_history(
    c: &(impl GenericClient + Sync),
    model: &Model,
    contact: ContactId,
) -> Result<History> {
    let rows = c
        .query("SELECT kind, day, occurred_at FROM interactions WHERE contact_id = $1 ORDER BY id", &[&contact])
        .await?;
    Ok(model.rebuild(rows.iter().map(|row| interaction_time(row.get(0), row.get(1), row.get(2)))))
}

/// Recomputes every contact's closeness history of a workspace (after a half-life or weight
/// change).
pub async fn recompute_closeness(c: &(impl GenericClient + Sync), workspace: &Workspace) -> Result<()> {
    // Keys written by a batch planned under the old model would be wrong under the new one.
    lock_contacts(c).await?;
    let model = workspace.model();
    let rows = c
        .query(
            "SELECT contact_id, kind, day, occurred_at FROM interactions WHERE workspace_id = $1 ORDER BY id",
            &[&workspace.id],
        )
        .await?;
    let mut interactions: HashMap<ContactId, Vec<(InteractionKind, f64)>> = HashMap::new();
    for row in &rows {
        interactions.entry(row.get(0)).or_default().push(interaction_time(row.get(1), row.get(2), row.get(3)));
    }
    if interactions.is_empty() {
        return Ok(());
    }
    let len = interactions.len();
    let mut contacts = Vec::with_capacity(len);
    let mut keys = Vec::with_capacity(len);
    let mut last_t = Vec::with_capacity(len);
    let mut warm_until = Vec::with_capacity(len);
    for (contact, interactions) in interactions {
        let history = model.rebuild(interactions);
        contacts.push(contact);
        keys.push(history.key);
        last_t.push(history.last_t);
        warm_until.push(history.warm_until.map(millis_of_days));
    }
    c.execute(
        "UPDATE contacts SET closeness_key = u.key, closeness_last_t = u.last_t, warm_until = u.warm_until
         FROM unnest($1::bigint[], $2::double precision[], $3::double precision[], $4::bigint[])
              AS u (id, key, last_t, warm_until)
         WHERE contacts.id = u.id",
        &[&contacts, &keys, &last_t, &warm_until],
    )
    .await?;
    Ok(())
}

/// Sets or clears a contact's own cadence.
pub async fn set_cadence(
    c: &mut Client,
    workspace: WorkspaceId,
    contact: ContactId,
    days: Option<i64>,
    now: i64,
) -> Result<Contact> {
    let tx = c.transaction().await?;
    lock_contacts(&tx).await?;
    change_cadence(&tx, workspace, contact, days, now).await?;
    tx.commit().await?;
    read::contact(&*c, workspace, &ContactKey::Id(contact))
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("contact {contact}")))
}

/// Sets a contact's own cadence inside the caller's transaction, which holds the contacts lock.
async fn change_cadence(
    tx: &Transaction<'_>,
    workspace: WorkspaceId,
    contact: ContactId,
    days: Option<i64>,
    now: i64,
) -> Result<()> {
    require_contact(tx, workspace, contact).await?;
    let mut state = load_state(tx, contact).await?.ok_or_else(|| StoreError::NotFound(format!("contact {contact}")))?;
    state.cadence_days = days;
    state.inherited_cadence = inherited_cadence(tx, contact).await?;
    save_states(tx, &[(contact, state)], now).await
}

/// Applies a journey's note or cadence step to its contact and marks the step's delivery sent,
/// in one transaction; `false` if the delivery was applied already. The delivery's row is
/// locked first, so a node that takes it up after another's lease expired waits and then
/// finds it sent: the step acts once.
pub async fn apply_to_contact(
    c: &mut Client,
    delivery: i64,
    workspace: WorkspaceId,
    contact: ContactId,
    change: StepChange,
    now: Timestamp,
) -> Result<bool> {
    let tx = c.transaction().await?;
    lock_contacts(&tx).await?;
    let status: Option<String> = tx
        .query_opt("SELECT status FROM outbox WHERE id = $1 FOR UPDATE", &[&delivery])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    if status.as_deref() != Some("pending") {
        return Ok(false);
    }
    let now_ms = now.as_millisecond();
    match change {
        StepChange::Note(text) => {
            let note = NewInteraction { kind: InteractionKind::Note, occurred_at: now, text };
            insert_interaction(&tx, workspace, contact, note, now_ms).await?;
        }
        StepChange::Cadence(days) => change_cadence(&tx, workspace, contact, days, now_ms).await?,
    }
    nudges::finish_delivery(&tx, delivery, &DeliveryResult::Sent, now).await?;
    tx.commit().await?;
    Ok(true)
}

/// Recomputes the inherited cadence of every member of the audience or account a rule names.
async fn refresh_rule_members(
    tx: &Transaction<'_>,
    workspace: WorkspaceId,
    target: &str,
    key: &str,
    now: i64,
) -> Result<()> {
    let sql = match target {
        "audience" => {
            "SELECT m.contact_id FROM audience_members m JOIN audiences a ON a.id = m.audience_id
             WHERE a.workspace_id = $1 AND a.key = $2"
        }
        _ => {
            "SELECT m.contact_id FROM account_members m JOIN accounts a ON a.id = m.account_id
             WHERE a.workspace_id = $1 AND a.group_id = $2"
        }
    };
    let members: Vec<ContactId> =
        tx.query(sql, &[&workspace, &text(key)]).await?.iter().map(|row| row.get(0)).collect();
    let mut states = load_states(tx, &members).await?;
    let cadences = inherited_cadences(tx, &members).await?;
    let mut changed = Vec::with_capacity(states.len());
    for contact in members {
        if let Some((_, mut state)) = states.remove(&contact) {
            state.inherited_cadence = cadences.get(&contact).copied().flatten();
            changed.push((contact, state));
        }
    }
    save_states(tx, &changed, now).await
}

/// Creates or replaces a cadence rule and updates its members' due dates.
pub async fn set_cadence_rule(
    c: &mut Client,
    workspace: WorkspaceId,
    target: &str,
    key: &str,
    days: i64,
    now: i64,
) -> Result<CadenceRule> {
    let tx = c.transaction().await?;
    lock_contacts(&tx).await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO cadence_rules (workspace_id, target, target_key, days, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (workspace_id, target, target_key) DO UPDATE SET days = excluded.days
             RETURNING id",
            &[&workspace, &target, &text(key), &days, &now],
        )
        .await?
        .get(0);
    refresh_rule_members(&tx, workspace, target, key, now).await?;
    tx.commit().await?;
    Ok(CadenceRule { id, target: target.to_owned(), target_key: key.to_owned(), days })
}

/// Deletes a cadence rule and updates its members' due dates.
pub async fn delete_cadence_rule(c: &mut Client, workspace: WorkspaceId, id: i64, now: i64) -> Result<bool> {
    let tx = c.transaction().await?;
    lock_contacts(&tx).await?;
    let rule = tx
        .query_opt(
            "SELECT target, target_key FROM cadence_rules WHERE id = $1 AND workspace_id = $2",
            &[&id, &workspace],
        )
        .await?;
    let Some(rule) = rule else { return Ok(false) };
    let (target, key): (String, String) = (rule.get(0), rule.get(1));
    tx.execute("DELETE FROM cadence_rules WHERE id = $1", &[&id]).await?;
    refresh_rule_members(&tx, workspace, &target, &key, now).await?;
    tx.commit().await?;
    Ok(true)
}
