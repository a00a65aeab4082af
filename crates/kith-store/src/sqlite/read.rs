//! Reads for the API and the web app. Lists page by keyset (`Cursor`), never by offset, so
//! page 1,000 costs what page 1 costs.

use kith_core::closeness::InteractionKind;
use kith_core::time::from_millis;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde_json::Value;

use crate::records::*;
use crate::sql::{like_pattern, page_cursor, CONTACT_COLUMNS};
use crate::Result;

fn contact_row(row: &Row) -> rusqlite::Result<Contact> {
    let traits: String = row.get(3)?;
    let computed: String = row.get(4)?;
    Ok(Contact {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        traits: serde_json::from_str(&traits).unwrap_or_default(),
        computed_traits: serde_json::from_str(&computed).unwrap_or_default(),
        first_seen_at: from_millis(row.get(5)?),
        last_seen_at: from_millis(row.get(6)?),
        last_interaction_at: row.get::<_, Option<i64>>(7)?.map(from_millis),
        closeness_key: row.get(8)?,
        cadence_days: row.get(9)?,
        effective_cadence_days: row.get(10)?,
        due_at: row.get::<_, Option<i64>>(11)?.map(from_millis),
        created_at: from_millis(row.get(12)?),
        warm_until: row.get::<_, Option<i64>>(13)?.map(from_millis),
    })
}

pub fn contacts(c: &Connection, workspace: WorkspaceId, query: &ContactQuery) -> Result<Page<Contact>> {
    let mut sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts c");
    let mut args: Vec<SqlValue> = Vec::new();
    if let Some(audience) = &query.audience {
        sql.push_str(
            " JOIN audience_members am ON am.contact_id = c.id AND am.is_member = 1
              JOIN audiences au ON au.id = am.audience_id AND au.key = ?",
        );
        args.push(audience.clone().into());
    }
    if let Some(account) = &query.account {
        sql.push_str(
            " JOIN account_members acm ON acm.contact_id = c.id
              JOIN accounts ac ON ac.id = acm.account_id AND ac.group_id = ?",
        );
        args.push(account.clone().into());
    }
    sql.push_str(" WHERE c.workspace_id = ?");
    args.push(workspace.into());
    if let Some(search) = query.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        sql.push_str(" AND (c.email LIKE ? ESCAPE '\\' OR c.name LIKE ? ESCAPE '\\' OR c.traits LIKE ? ESCAPE '\\')");
        let pattern = like_pattern(search);
        args.extend([pattern.clone().into(), pattern.clone().into(), pattern.into()]);
    }
    if let Some((min, max)) = query.key_range {
        match min {
            Some(min) => {
                sql.push_str(" AND c.closeness_key >= ?");
                args.push(min.into());
            }
            None if max.is_some() => {}
            None => {}
        }
        if let Some(max) = max {
            sql.push_str(" AND (c.closeness_key < ? OR c.closeness_key IS NULL)");
            args.push(max.into());
        }
    }
    if let Some((from, to)) = query.warm_until_range {
        sql.push_str(" AND c.warm_until >= ? AND c.warm_until < ?");
        args.extend([from.as_millisecond().into(), to.as_millisecond().into()]);
    }
    if let Some(before) = query.due_before {
        sql.push_str(" AND c.due_at IS NOT NULL AND c.due_at <= ?");
        args.push(before.as_millisecond().into());
    }
    match query.owner {
        None => {}
        Some(OwnerFilter::User(user)) => {
            sql.push_str(" AND c.id IN (SELECT subject_id FROM owners WHERE subject = 'contact' AND user_id = ?)");
            args.push(user.into());
        }
        Some(OwnerFilter::Nobody) => {
            sql.push_str(" AND c.id NOT IN (SELECT subject_id FROM owners WHERE subject = 'contact')");
        }
    }
    let order = match query.sort {
        ContactSort::LastSeen => {
            if let Some(cursor) = &query.cursor {
                sql.push_str(" AND (c.last_seen_at < ? OR (c.last_seen_at = ? AND c.id < ?))");
                let value = cursor.value.as_i64().unwrap_or(i64::MAX);
                args.extend([value.into(), value.into(), cursor.id.into()]);
            }
            " ORDER BY c.last_seen_at DESC, c.id DESC"
        }
        ContactSort::Closeness => {
            if let Some(cursor) = &query.cursor {
                match cursor.value.as_f64() {
                    Some(key) => {
                        sql.push_str(
                            " AND (c.closeness_key < ? OR (c.closeness_key = ? AND c.id < ?) OR c.closeness_key IS NULL)",
                        );
                        args.extend([key.into(), key.into(), cursor.id.into()]);
                    }
                    None => {
                        sql.push_str(" AND c.closeness_key IS NULL AND c.id < ?");
                        args.push(cursor.id.into());
                    }
                }
            }
            " ORDER BY c.closeness_key DESC, c.id DESC"
        }
        ContactSort::ClosenessAsc => {
            if let Some(cursor) = &query.cursor {
                match cursor.value.as_f64() {
                    Some(key) => {
                        sql.push_str(" AND (c.closeness_key > ? OR (c.closeness_key = ? AND c.id > ?))");
                        args.extend([key.into(), key.into(), cursor.id.into()]);
                    }
                    None => {
                        sql.push_str(" AND (c.closeness_key IS NOT NULL OR c.id > ?)");
                        args.push(cursor.id.into());
                    }
                }
            }
            " ORDER BY c.closeness_key ASC, c.id ASC"
        }
        ContactSort::Due => {
            sql.push_str(" AND c.due_at IS NOT NULL");
            if let Some(cursor) = &query.cursor {
                sql.push_str(" AND (c.due_at > ? OR (c.due_at = ? AND c.id > ?))");
                let value = cursor.value.as_i64().unwrap_or(i64::MIN);
                args.extend([value.into(), value.into(), cursor.id.into()]);
            }
            " ORDER BY c.due_at ASC, c.id ASC"
        }
    };
    sql.push_str(order);
    sql.push_str(" LIMIT ?");
    let limit = query.limit.clamp(1, 1000);
    args.push((limit as i64 + 1).into());
    let mut statement = c.prepare_cached(&sql)?;
    let mut items: Vec<Contact> =
        statement.query_map(params_from_iter(args), contact_row)?.collect::<rusqlite::Result<_>>()?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| Cursor {
            value: match query.sort {
                ContactSort::LastSeen => last.last_seen_at.as_millisecond().into(),
                ContactSort::Closeness | ContactSort::ClosenessAsc => {
                    last.closeness_key.map_or(Value::Null, Value::from)
                }
                ContactSort::Due => last.due_at.map_or(Value::Null, |t| t.as_millisecond().into()),
            },
            id: last.id,
        })
    } else {
        None
    };
    Ok(Page { items, next })
}

pub fn contact(c: &Connection, workspace: WorkspaceId, key: &ContactKey) -> Result<Option<Contact>> {
    let found = match key {
        ContactKey::Id(id) => c
            .prepare_cached(&format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = ?1 AND c.workspace_id = ?2"
            ))?
            .query_row(params![id, workspace], contact_row)
            .optional()?,
        ContactKey::Email(email) => c
            .prepare_cached(&format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.email = ?1 AND c.workspace_id = ?2"
            ))?
            .query_row(params![email, workspace], contact_row)
            .optional()?,
    };
    Ok(found)
}

pub fn identities(c: &Connection, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Identity>> {
    let mut statement = c.prepare_cached(
        "SELECT value, kind, created_at FROM identities WHERE contact_id = ?1 AND workspace_id = ?2 ORDER BY created_at, value",
    )?;
    let rows = statement.query_map(params![contact, workspace], |row| {
        Ok(Identity { value: row.get(0)?, kind: row.get(1)?, created_at: from_millis(row.get(2)?) })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn timeline(
    c: &Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    cursor: Option<&Cursor>,
    limit: usize,
) -> Result<Page<Interaction>> {
    let limit = limit.clamp(1, 500);
    let (before, before_id) =
        cursor.map_or((i64::MAX, i64::MAX), |cursor| (cursor.value.as_i64().unwrap_or(i64::MAX), cursor.id));
    let mut statement = c.prepare_cached(
        "SELECT id, contact_id, kind, day, occurred_at, description, hits FROM interactions
         WHERE contact_id = ?1 AND workspace_id = ?2 AND (occurred_at < ?3 OR (occurred_at = ?3 AND id < ?4))
         ORDER BY occurred_at DESC, id DESC LIMIT ?5",
    )?;
    let rows = statement.query_map(params![contact, workspace, before, before_id, limit as i64 + 1], |row| {
        let kind: String = row.get(2)?;
        Ok(Interaction {
            id: row.get(0)?,
            contact_id: row.get(1)?,
            kind: InteractionKind::parse(&kind).unwrap_or(InteractionKind::Activity),
            day: row.get(3)?,
            occurred_at: from_millis(row.get(4)?),
            description: row.get(5)?,
            hits: row.get(6)?,
        })
    })?;
    let mut items: Vec<Interaction> = rows.collect::<rusqlite::Result<_>>()?;
    let next = page_cursor(&mut items, limit, |item| (item.occurred_at.as_millisecond(), item.id));
    Ok(Page { items, next })
}

pub fn events(
    c: &Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    cursor: Option<&Cursor>,
    limit: usize,
) -> Result<Page<StoredEvent>> {
    let limit = limit.clamp(1, 500);
    let (before, before_id) =
        cursor.map_or((i64::MAX, i64::MAX), |cursor| (cursor.value.as_i64().unwrap_or(i64::MAX), cursor.id));
    let mut statement = c.prepare_cached(
        "SELECT id, contact_id, message_id, type, name, occurred_at, received_at, payload FROM events
         WHERE contact_id = ?1 AND workspace_id = ?2 AND (occurred_at < ?3 OR (occurred_at = ?3 AND id < ?4))
         ORDER BY occurred_at DESC, id DESC LIMIT ?5",
    )?;
    let rows = statement.query_map(params![contact, workspace, before, before_id, limit as i64 + 1], |row| {
        let payload: String = row.get(7)?;
        Ok(StoredEvent {
            id: row.get(0)?,
            contact_id: row.get(1)?,
            message_id: row.get(2)?,
            event_type: row.get(3)?,
            name: row.get(4)?,
            occurred_at: from_millis(row.get(5)?),
            received_at: from_millis(row.get(6)?),
            payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
        })
    })?;
    let mut items: Vec<StoredEvent> = rows.collect::<rusqlite::Result<_>>()?;
    let next = page_cursor(&mut items, limit, |item| (item.occurred_at.as_millisecond(), item.id));
    Ok(Page { items, next })
}

pub fn identify_payloads(
    c: &Connection,
    workspace: WorkspaceId,
    contact: ContactId,
    until: i64,
) -> Result<Vec<String>> {
    let mut statement = c.prepare_cached(
        "SELECT payload FROM events WHERE contact_id = ?1 AND workspace_id = ?2 AND type = 'identify' AND occurred_at <= ?3
         ORDER BY occurred_at, id",
    )?;
    let rows = statement.query_map(params![contact, workspace, until], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn activity_exists(c: &Connection, contact: ContactId, day: i32) -> Result<bool> {
    Ok(c.prepare_cached("SELECT 1 FROM interactions WHERE contact_id = ?1 AND day = ?2 AND kind = 'activity'")?
        .exists(params![contact, day])?)
}

pub fn alias_conflicts(c: &Connection, workspace: WorkspaceId) -> Result<Vec<AliasConflictRecord>> {
    let mut statement = c.prepare_cached(
        "SELECT id, previous_id, user_id, contact_id, other_contact_id, created_at, resolved_at FROM alias_conflicts
         WHERE workspace_id = ?1 ORDER BY resolved_at IS NOT NULL, id DESC LIMIT 500",
    )?;
    let rows = statement.query_map([workspace], |row| {
        Ok(AliasConflictRecord {
            id: row.get(0)?,
            previous_id: row.get(1)?,
            user_id: row.get(2)?,
            contact_id: row.get(3)?,
            other_contact_id: row.get(4)?,
            created_at: from_millis(row.get(5)?),
            resolved_at: row.get::<_, Option<i64>>(6)?.map(from_millis),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn account_row(c: &Connection, row: &Row) -> rusqlite::Result<Account> {
    let id: i64 = row.get(0)?;
    let traits: String = row.get(3)?;
    let member_keys: Vec<Option<f64>> = c
        .prepare_cached(
            "SELECT ct.closeness_key FROM account_members m JOIN contacts ct ON ct.id = m.contact_id WHERE m.account_id = ?1",
        )?
        .query_map([id], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Account {
        id,
        group_id: row.get(1)?,
        name: row.get(2)?,
        traits: serde_json::from_str(&traits).unwrap_or_default(),
        member_count: member_keys.len() as i64,
        max_closeness_key: member_keys.iter().flatten().copied().reduce(f64::max),
        member_keys,
        created_at: from_millis(row.get(4)?),
        updated_at: from_millis(row.get(5)?),
    })
}

pub fn accounts(c: &Connection, workspace: WorkspaceId, group_id: Option<&str>, limit: usize) -> Result<Vec<Account>> {
    let mut statement = c.prepare_cached(
        "SELECT a.id, a.group_id, a.name, a.traits, a.created_at, a.updated_at FROM accounts a
         WHERE a.workspace_id = ?1 AND (?2 IS NULL OR a.group_id = ?2)
         ORDER BY (SELECT COUNT(*) FROM account_members m WHERE m.account_id = a.id) DESC, a.id
         LIMIT ?3",
    )?;
    let rows =
        statement.query_map(params![workspace, group_id, limit.clamp(1, 1000) as i64], |row| account_row(c, row))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn contact_accounts(c: &Connection, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Account>> {
    let mut statement = c.prepare_cached(
        "SELECT a.id, a.group_id, a.name, a.traits, a.created_at, a.updated_at FROM accounts a
         JOIN account_members m ON m.account_id = a.id
         WHERE a.workspace_id = ?1 AND m.contact_id = ?2 ORDER BY m.joined_at",
    )?;
    let rows = statement.query_map(params![workspace, contact], |row| account_row(c, row))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn audiences(c: &Connection, workspace: WorkspaceId, key: Option<&str>) -> Result<Vec<Audience>> {
    let mut statement = c.prepare_cached(
        "SELECT a.id, a.key, a.computation_id, a.space_id, a.created_at,
                (SELECT COUNT(*) FROM audience_members m WHERE m.audience_id = a.id AND m.is_member = 1),
                (SELECT COUNT(*) FROM audience_history h WHERE h.audience_id = a.id AND h.entered = 1),
                (SELECT COUNT(*) FROM audience_history h WHERE h.audience_id = a.id AND h.entered = 0)
         FROM audiences a WHERE a.workspace_id = ?1 AND (?2 IS NULL OR a.key = ?2) ORDER BY a.key",
    )?;
    let rows = statement.query_map(params![workspace, key], |row| {
        Ok(Audience {
            id: row.get(0)?,
            key: row.get(1)?,
            computation_id: row.get(2)?,
            space_id: row.get(3)?,
            created_at: from_millis(row.get(4)?),
            member_count: row.get(5)?,
            entered_count: row.get(6)?,
            exited_count: row.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn contact_audiences(
    c: &Connection,
    workspace: WorkspaceId,
    contact: ContactId,
) -> Result<Vec<AudienceMembership>> {
    let mut statement = c.prepare_cached(
        "SELECT a.key, m.is_member, m.changed_at FROM audience_members m JOIN audiences a ON a.id = m.audience_id
         WHERE a.workspace_id = ?1 AND m.contact_id = ?2 ORDER BY m.is_member DESC, a.key",
    )?;
    let rows = statement.query_map(params![workspace, contact], |row| {
        Ok(AudienceMembership { key: row.get(0)?, is_member: row.get(1)?, changed_at: from_millis(row.get(2)?) })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn audience_history(
    c: &Connection,
    workspace: WorkspaceId,
    audience: Option<&str>,
    contact: Option<ContactId>,
    limit: usize,
) -> Result<Vec<AudienceHistoryEntry>> {
    let mut statement = c.prepare_cached(
        "SELECT a.key, h.contact_id, h.entered, h.at FROM audience_history h JOIN audiences a ON a.id = h.audience_id
         WHERE a.workspace_id = ?1 AND (?2 IS NULL OR a.key = ?2) AND (?3 IS NULL OR h.contact_id = ?3)
         ORDER BY h.at DESC, h.id DESC LIMIT ?4",
    )?;
    let rows = statement.query_map(params![workspace, audience, contact, limit.clamp(1, 1000) as i64], |row| {
        Ok(AudienceHistoryEntry {
            key: row.get(0)?,
            contact_id: row.get(1)?,
            entered: row.get(2)?,
            at: from_millis(row.get(3)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn cadence_rules(c: &Connection, workspace: WorkspaceId) -> Result<Vec<CadenceRule>> {
    let mut statement = c.prepare_cached(
        "SELECT id, target, target_key, days FROM cadence_rules WHERE workspace_id = ?1 ORDER BY target, target_key",
    )?;
    let rows = statement.query_map([workspace], |row| {
        Ok(CadenceRule { id: row.get(0)?, target: row.get(1)?, target_key: row.get(2)?, days: row.get(3)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
