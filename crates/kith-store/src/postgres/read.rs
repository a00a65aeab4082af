//! Reads for the API and the web app. Lists page by keyset (`Cursor`), never by offset, so
//! page 1,000 costs what page 1 costs.
//!
//! Orders match the SQLite backend row for row: NULL closeness keys sort as SQLite sorts
//! them (first ascending, last descending), and text sorts byte-wise (`COLLATE "C"`, SQLite's
//! BINARY) rather than by the database's locale.

use std::collections::HashMap;

use kith_core::closeness::InteractionKind;
use kith_core::time::from_millis;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Row};

use crate::records::*;
use crate::sql::{like_pattern, page_cursor, CONTACT_COLUMNS};
use crate::Result;

fn contact_row(row: &Row) -> Result<Contact> {
    let traits: String = row.try_get(3)?;
    let computed: String = row.try_get(4)?;
    Ok(Contact {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        name: row.try_get(2)?,
        traits: serde_json::from_str(&traits).unwrap_or_default(),
        computed_traits: serde_json::from_str(&computed).unwrap_or_default(),
        first_seen_at: from_millis(row.try_get(5)?),
        last_seen_at: from_millis(row.try_get(6)?),
        last_interaction_at: row.try_get::<_, Option<i64>>(7)?.map(from_millis),
        closeness_key: row.try_get(8)?,
        cadence_days: row.try_get(9)?,
        effective_cadence_days: row.try_get(10)?,
        due_at: row.try_get::<_, Option<i64>>(11)?.map(from_millis),
        created_at: from_millis(row.try_get(12)?),
        warm_until: row.try_get::<_, Option<i64>>(13)?.map(from_millis),
    })
}

/// The parameters of a statement built piece by piece, numbered in the order they are added.
#[derive(Default)]
struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    /// Adds a value and returns its placeholder (`$n`).
    fn push(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0.iter().map(|value| &**value as &(dyn ToSql + Sync)).collect()
    }
}

pub async fn contacts(c: &Client, workspace: WorkspaceId, query: &ContactQuery) -> Result<Page<Contact>> {
    let mut sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts c");
    let mut args = Params::default();
    if let Some(audience) = &query.audience {
        let key = args.push(audience.clone());
        sql.push_str(&format!(
            " JOIN audience_members am ON am.contact_id = c.id AND am.is_member
              JOIN audiences au ON au.id = am.audience_id AND au.key = {key}"
        ));
    }
    if let Some(account) = &query.account {
        let group = args.push(account.clone());
        sql.push_str(&format!(
            " JOIN account_members acm ON acm.contact_id = c.id
              JOIN accounts ac ON ac.id = acm.account_id AND ac.group_id = {group}"
        ));
    }
    let workspace = args.push(workspace);
    sql.push_str(&format!(" WHERE c.workspace_id = {workspace}"));
    if let Some(search) = query.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        // SQLite's LIKE ignores case; ILIKE is PostgreSQL's equivalent.
        let pattern = args.push(like_pattern(search));
        sql.push_str(&format!(
            " AND (c.email ILIKE {pattern} ESCAPE '\\' OR c.name ILIKE {pattern} ESCAPE '\\'
                   OR c.traits ILIKE {pattern} ESCAPE '\\')"
        ));
    }
    if let Some((min, max)) = query.key_range {
        if let Some(min) = min {
            let min = args.push(min);
            sql.push_str(&format!(" AND c.closeness_key >= {min}"));
        }
        if let Some(max) = max {
            let max = args.push(max);
            sql.push_str(&format!(" AND (c.closeness_key < {max} OR c.closeness_key IS NULL)"));
        }
    }
    if let Some((from, to)) = query.warm_until_range {
        let from = args.push(from.as_millisecond());
        let to = args.push(to.as_millisecond());
        sql.push_str(&format!(" AND c.warm_until >= {from} AND c.warm_until < {to}"));
    }
    if let Some(before) = query.due_before {
        let before = args.push(before.as_millisecond());
        sql.push_str(&format!(" AND c.due_at IS NOT NULL AND c.due_at <= {before}"));
    }
    match query.owner {
        None => {}
        Some(OwnerFilter::User(user)) => {
            let user = args.push(user);
            sql.push_str(&format!(
                " AND c.id IN (SELECT subject_id FROM owners WHERE subject = 'contact' AND user_id = {user})"
            ));
        }
        Some(OwnerFilter::Nobody) => {
            sql.push_str(" AND c.id NOT IN (SELECT subject_id FROM owners WHERE subject = 'contact')");
        }
    }
    let order = match query.sort {
        ContactSort::LastSeen => {
            if let Some(cursor) = &query.cursor {
                let value = args.push(cursor.value.as_i64().unwrap_or(i64::MAX));
                let id = args.push(cursor.id);
                sql.push_str(&format!(" AND (c.last_seen_at < {value} OR (c.last_seen_at = {value} AND c.id < {id}))"));
            }
            " ORDER BY c.last_seen_at DESC, c.id DESC"
        }
        ContactSort::Closeness => {
            if let Some(cursor) = &query.cursor {
                let id = args.push(cursor.id);
                match cursor.value.as_f64() {
                    Some(key) => {
                        let key = args.push(key);
                        sql.push_str(&format!(
                            " AND (c.closeness_key < {key} OR (c.closeness_key = {key} AND c.id < {id})
                                   OR c.closeness_key IS NULL)"
                        ));
                    }
                    None => sql.push_str(&format!(" AND c.closeness_key IS NULL AND c.id < {id}")),
                }
            }
            " ORDER BY c.closeness_key DESC NULLS LAST, c.id DESC"
        }
        ContactSort::ClosenessAsc => {
            if let Some(cursor) = &query.cursor {
                let id = args.push(cursor.id);
                match cursor.value.as_f64() {
                    Some(key) => {
                        let key = args.push(key);
                        sql.push_str(&format!(
                            " AND (c.closeness_key > {key} OR (c.closeness_key = {key} AND c.id > {id}))"
                        ));
                    }
                    None => sql.push_str(&format!(" AND (c.closeness_key IS NOT NULL OR c.id > {id})")),
                }
            }
            " ORDER BY c.closeness_key ASC NULLS FIRST, c.id ASC"
        }
        ContactSort::Due => {
            sql.push_str(" AND c.due_at IS NOT NULL");
            if let Some(cursor) = &query.cursor {
                let value = args.push(cursor.value.as_i64().unwrap_or(i64::MIN));
                let id = args.push(cursor.id);
                sql.push_str(&format!(" AND (c.due_at > {value} OR (c.due_at = {value} AND c.id > {id}))"));
            }
            " ORDER BY c.due_at ASC, c.id ASC"
        }
    };
    sql.push_str(order);
    let limit = query.limit.clamp(1, 1000);
    let limit_param = args.push(limit as i64 + 1);
    sql.push_str(&format!(" LIMIT {limit_param}"));
    let rows = c.query(&sql, &args.refs()).await?;
    let mut items = rows.iter().map(contact_row).collect::<Result<Vec<Contact>>>()?;
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

pub async fn contact(
    c: &(impl GenericClient + Sync),
    workspace: WorkspaceId,
    key: &ContactKey,
) -> Result<Option<Contact>> {
    let row = match key {
        ContactKey::Id(id) => {
            c.query_opt(
                &format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = $1 AND c.workspace_id = $2"),
                &[id, &workspace],
            )
            .await?
        }
        ContactKey::Email(email) => {
            c.query_opt(
                &format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.email = $1 AND c.workspace_id = $2"),
                &[email, &workspace],
            )
            .await?
        }
    };
    row.as_ref().map(contact_row).transpose()
}

pub async fn activity_exists(c: &(impl GenericClient + Sync), contact: ContactId, day: i32) -> Result<bool> {
    let row = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM interactions WHERE contact_id = $1 AND day = $2 AND kind = 'activity')",
            &[&contact, &day],
        )
        .await?;
    Ok(row.try_get(0)?)
}

pub async fn identities(c: &Client, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Identity>> {
    let rows = c
        .query(
            "SELECT value, kind, created_at FROM identities WHERE contact_id = $1 AND workspace_id = $2
              ORDER BY created_at, value COLLATE \"C\"",
            &[&contact, &workspace],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Identity { value: row.try_get(0)?, kind: row.try_get(1)?, created_at: from_millis(row.try_get(2)?) })
        })
        .collect()
}

/// The keyset bound of a page ordered by `occurred_at DESC, id DESC`.
fn before(cursor: Option<&Cursor>) -> (i64, i64) {
    cursor.map_or((i64::MAX, i64::MAX), |cursor| (cursor.value.as_i64().unwrap_or(i64::MAX), cursor.id))
}

pub async fn timeline(
    c: &Client,
    workspace: WorkspaceId,
    contact: ContactId,
    cursor: Option<&Cursor>,
    limit: usize,
) -> Result<Page<Interaction>> {
    let limit = limit.clamp(1, 500);
    let (before, before_id) = before(cursor);
    let rows = c
        .query(
            "SELECT id, contact_id, kind, day, occurred_at, description, hits FROM interactions
              WHERE contact_id = $1 AND workspace_id = $2 AND (occurred_at < $3 OR (occurred_at = $3 AND id < $4))
              ORDER BY occurred_at DESC, id DESC LIMIT $5",
            &[&contact, &workspace, &before, &before_id, &(limit as i64 + 1)],
        )
        .await?;
    let mut items = rows
        .iter()
        .map(|row| {
            let kind: String = row.try_get(2)?;
            Ok(Interaction {
                id: row.try_get(0)?,
                contact_id: row.try_get(1)?,
                kind: InteractionKind::parse(&kind).unwrap_or(InteractionKind::Activity),
                day: row.try_get(3)?,
                occurred_at: from_millis(row.try_get(4)?),
                description: row.try_get(5)?,
                hits: row.try_get(6)?,
            })
        })
        .collect::<Result<Vec<Interaction>>>()?;
    let next = page_cursor(&mut items, limit, |item| (item.occurred_at.as_millisecond(), item.id));
    Ok(Page { items, next })
}

pub async fn events(
    c: &Client,
    workspace: WorkspaceId,
    contact: ContactId,
    cursor: Option<&Cursor>,
    limit: usize,
) -> Result<Page<StoredEvent>> {
    let limit = limit.clamp(1, 500);
    let (before, before_id) = before(cursor);
    let rows = c
        .query(
            "SELECT id, contact_id, message_id, type, name, occurred_at, received_at, payload FROM events
              WHERE contact_id = $1 AND workspace_id = $2 AND (occurred_at < $3 OR (occurred_at = $3 AND id < $4))
              ORDER BY occurred_at DESC, id DESC LIMIT $5",
            &[&contact, &workspace, &before, &before_id, &(limit as i64 + 1)],
        )
        .await?;
    let mut items = rows
        .iter()
        .map(|row| {
            let payload: String = row.try_get(7)?;
            Ok(StoredEvent {
                id: row.try_get(0)?,
                contact_id: row.try_get(1)?,
                message_id: row.try_get(2)?,
                event_type: row.try_get(3)?,
                name: row.try_get(4)?,
                occurred_at: from_millis(row.try_get(5)?),
                received_at: from_millis(row.try_get(6)?),
                payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
            })
        })
        .collect::<Result<Vec<StoredEvent>>>()?;
    let next = page_cursor(&mut items, limit, |item| (item.occurred_at.as_millisecond(), item.id));
    Ok(Page { items, next })
}

pub async fn identify_payloads(
    c: &Client,
    workspace: WorkspaceId,
    contact: ContactId,
    until: i64,
) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT payload FROM events
              WHERE contact_id = $1 AND workspace_id = $2 AND type = 'identify' AND occurred_at <= $3
              ORDER BY occurred_at, id",
            &[&contact, &workspace, &until],
        )
        .await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

pub async fn alias_conflicts(c: &Client, workspace: WorkspaceId) -> Result<Vec<AliasConflictRecord>> {
    let rows = c
        .query(
            "SELECT id, previous_id, user_id, contact_id, other_contact_id, created_at, resolved_at
               FROM alias_conflicts WHERE workspace_id = $1 ORDER BY resolved_at IS NOT NULL, id DESC LIMIT 500",
            &[&workspace],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AliasConflictRecord {
                id: row.try_get(0)?,
                previous_id: row.try_get(1)?,
                user_id: row.try_get(2)?,
                contact_id: row.try_get(3)?,
                other_contact_id: row.try_get(4)?,
                created_at: from_millis(row.try_get(5)?),
                resolved_at: row.try_get::<_, Option<i64>>(6)?.map(from_millis),
            })
        })
        .collect()
}

const ACCOUNT_COLUMNS: &str = "a.id, a.group_id, a.name, a.traits, a.created_at, a.updated_at";

/// Builds accounts from their rows, reading the members' closeness keys of all of them in one
/// statement (in member id order).
async fn with_members(c: &Client, rows: &[Row]) -> Result<Vec<Account>> {
    let ids = rows.iter().map(|row| row.try_get::<_, i64>(0)).collect::<std::result::Result<Vec<i64>, _>>()?;
    let mut member_keys: HashMap<i64, Vec<Option<f64>>> = HashMap::new();
    if !ids.is_empty() {
        let members = c
            .query(
                "SELECT m.account_id, ct.closeness_key FROM account_members m JOIN contacts ct ON ct.id = m.contact_id
                  WHERE m.account_id = ANY($1) ORDER BY m.account_id, m.contact_id",
                &[&ids],
            )
            .await?;
        for member in &members {
            member_keys.entry(member.try_get(0)?).or_default().push(member.try_get(1)?);
        }
    }
    rows.iter()
        .map(|row| {
            let id: i64 = row.try_get(0)?;
            let traits: String = row.try_get(3)?;
            let member_keys = member_keys.remove(&id).unwrap_or_default();
            Ok(Account {
                id,
                group_id: row.try_get(1)?,
                name: row.try_get(2)?,
                traits: serde_json::from_str(&traits).unwrap_or_default(),
                member_count: member_keys.len() as i64,
                max_closeness_key: member_keys.iter().flatten().copied().reduce(f64::max),
                member_keys,
                created_at: from_millis(row.try_get(4)?),
                updated_at: from_millis(row.try_get(5)?),
            })
        })
        .collect()
}

pub async fn accounts(
    c: &Client,
    workspace: WorkspaceId,
    group_id: Option<&str>,
    limit: usize,
) -> Result<Vec<Account>> {
    let rows = c
        .query(
            &format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts a
                  WHERE a.workspace_id = $1 AND ($2::text IS NULL OR a.group_id = $2)
                  ORDER BY (SELECT COUNT(*) FROM account_members m WHERE m.account_id = a.id) DESC, a.id
                  LIMIT $3"
            ),
            &[&workspace, &group_id, &(limit.clamp(1, 1000) as i64)],
        )
        .await?;
    with_members(c, &rows).await
}

pub async fn contact_accounts(c: &Client, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Account>> {
    let rows = c
        .query(
            &format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts a JOIN account_members m ON m.account_id = a.id
                  WHERE a.workspace_id = $1 AND m.contact_id = $2 ORDER BY m.joined_at, a.id"
            ),
            &[&workspace, &contact],
        )
        .await?;
    with_members(c, &rows).await
}

pub async fn audiences(c: &Client, workspace: WorkspaceId, key: Option<&str>) -> Result<Vec<Audience>> {
    let rows = c
        .query(
            "SELECT a.id, a.key, a.computation_id, a.space_id, a.created_at,
                    (SELECT COUNT(*) FROM audience_members m WHERE m.audience_id = a.id AND m.is_member),
                    (SELECT COUNT(*) FROM audience_history h WHERE h.audience_id = a.id AND h.entered),
                    (SELECT COUNT(*) FROM audience_history h WHERE h.audience_id = a.id AND NOT h.entered)
               FROM audiences a WHERE a.workspace_id = $1 AND ($2::text IS NULL OR a.key = $2)
              ORDER BY a.key COLLATE \"C\"",
            &[&workspace, &key],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Audience {
                id: row.try_get(0)?,
                key: row.try_get(1)?,
                computation_id: row.try_get(2)?,
                space_id: row.try_get(3)?,
                created_at: from_millis(row.try_get(4)?),
                member_count: row.try_get(5)?,
                entered_count: row.try_get(6)?,
                exited_count: row.try_get(7)?,
            })
        })
        .collect()
}

pub async fn contact_audiences(
    c: &Client,
    workspace: WorkspaceId,
    contact: ContactId,
) -> Result<Vec<AudienceMembership>> {
    let rows = c
        .query(
            "SELECT a.key, m.is_member, m.changed_at FROM audience_members m JOIN audiences a ON a.id = m.audience_id
              WHERE a.workspace_id = $1 AND m.contact_id = $2 ORDER BY m.is_member DESC, a.key COLLATE \"C\"",
            &[&workspace, &contact],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AudienceMembership {
                key: row.try_get(0)?,
                is_member: row.try_get(1)?,
                changed_at: from_millis(row.try_get(2)?),
            })
        })
        .collect()
}

pub async fn audience_history(
    c: &Client,
    workspace: WorkspaceId,
    audience: Option<&str>,
    contact: Option<ContactId>,
    limit: usize,
) -> Result<Vec<AudienceHistoryEntry>> {
    let rows = c
        .query(
            "SELECT a.key, h.contact_id, h.entered, h.at FROM audience_history h JOIN audiences a ON a.id = h.audience_id
              WHERE a.workspace_id = $1 AND ($2::text IS NULL OR a.key = $2) AND ($3::bigint IS NULL OR h.contact_id = $3)
              ORDER BY h.at DESC, h.id DESC LIMIT $4",
            &[&workspace, &audience, &contact, &(limit.clamp(1, 1000) as i64)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AudienceHistoryEntry {
                key: row.try_get(0)?,
                contact_id: row.try_get(1)?,
                entered: row.try_get(2)?,
                at: from_millis(row.try_get(3)?),
            })
        })
        .collect()
}

pub async fn cadence_rules(c: &Client, workspace: WorkspaceId) -> Result<Vec<CadenceRule>> {
    let rows = c
        .query(
            "SELECT id, target, target_key, days FROM cadence_rules WHERE workspace_id = $1
              ORDER BY target COLLATE \"C\", target_key COLLATE \"C\"",
            &[&workspace],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(CadenceRule {
                id: row.try_get(0)?,
                target: row.try_get(1)?,
                target_key: row.try_get(2)?,
                days: row.try_get(3)?,
            })
        })
        .collect()
}
