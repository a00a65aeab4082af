//! Workspaces and API keys.

use kith_core::time::from_millis;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{reproject, write};
use crate::records::*;
use crate::sql::KEY_COLUMNS;
use crate::{Result, StoreError};

const WORKSPACE_COLUMNS: &str =
    "id, name, time_zone, half_life_days, weights, pending_days, signing_secret IS NOT NULL,
     created_at, segment_host, segment_write_key IS NOT NULL, digest_time, digest_webhook_url, digest_email,
     refuse_array_bodies, region";

fn workspace_row(row: &Row) -> rusqlite::Result<Workspace> {
    let weights: String = row.get(4)?;
    Ok(Workspace {
        id: row.get(0)?,
        name: row.get(1)?,
        time_zone: row.get(2)?,
        half_life_days: row.get(3)?,
        weights: serde_json::from_str(&weights).unwrap_or_default(),
        pending_days: row.get(5)?,
        signing_secret_set: row.get(6)?,
        created_at: from_millis(row.get(7)?),
        segment_host: row.get(8)?,
        segment_write_key_set: row.get(9)?,
        digest: Digest { time: row.get(10)?, webhook_url: row.get(11)?, email: row.get(12)? },
        refuse_array_bodies: row.get(13)?,
        region: row.get(14)?,
    })
}

pub fn create_workspace(c: &mut Connection, name: &str, now: i64) -> Result<Workspace> {
    c.execute("INSERT INTO workspaces (name, created_at) VALUES (?1, ?2)", params![name, now])?;
    let id = c.last_insert_rowid();
    workspace(c, id)?.ok_or_else(|| StoreError::NotFound(format!("workspace {id}")))
}

pub fn workspaces(c: &Connection) -> Result<Vec<Workspace>> {
    let mut statement = c.prepare_cached(&format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY id"))?;
    let rows = statement.query_map([], workspace_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn workspace(c: &Connection, id: WorkspaceId) -> Result<Option<Workspace>> {
    let mut statement = c.prepare_cached(&format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = ?1"))?;
    Ok(statement.query_row([id], workspace_row).optional()?)
}

pub fn update_workspace(c: &mut Connection, id: WorkspaceId, patch: WorkspacePatch, now: i64) -> Result<Workspace> {
    let tx = c.transaction()?;
    let before = workspace(&tx, id)?.ok_or_else(|| StoreError::NotFound(format!("workspace {id}")))?;
    if let Some(name) = &patch.name {
        tx.execute("UPDATE workspaces SET name = ?2 WHERE id = ?1", params![id, name])?;
    }
    if let Some(time_zone) = &patch.time_zone {
        tx.execute("UPDATE workspaces SET time_zone = ?2 WHERE id = ?1", params![id, time_zone])?;
    }
    if let Some(half_life) = patch.half_life_days {
        tx.execute("UPDATE workspaces SET half_life_days = ?2 WHERE id = ?1", params![id, half_life])?;
    }
    if let Some(weights) = patch.weights {
        let weights = serde_json::to_string(&weights).unwrap_or_default();
        tx.execute("UPDATE workspaces SET weights = ?2 WHERE id = ?1", params![id, weights])?;
    }
    if let Some(days) = patch.pending_days {
        tx.execute("UPDATE workspaces SET pending_days = ?2 WHERE id = ?1", params![id, days])?;
    }
    if let Some(refuse) = patch.refuse_array_bodies {
        tx.execute("UPDATE workspaces SET refuse_array_bodies = ?2 WHERE id = ?1", params![id, refuse])?;
    }
    if let Some(region) = &patch.region {
        tx.execute("UPDATE workspaces SET region = ?2 WHERE id = ?1", params![id, region])?;
    }
    for (column, value) in [
        ("signing_secret", &patch.signing_secret),
        ("segment_host", &patch.segment_host),
        ("segment_write_key", &patch.segment_write_key),
        ("digest_time", &patch.digest_time),
        ("digest_webhook_url", &patch.digest_webhook_url),
        ("digest_email", &patch.digest_email),
    ] {
        if let Some(value) = value {
            tx.execute(&format!("UPDATE workspaces SET {column} = ?2 WHERE id = ?1"), params![id, value])?;
        }
    }
    let after = workspace(&tx, id)?.ok_or_else(|| StoreError::NotFound(format!("workspace {id}")))?;
    if after.model() != before.model() {
        write::recompute_closeness(&tx, &after)?;
    }
    if before.needs_reprojection(&after) {
        reproject::request(&tx, id, Reprojection::AFTER_TIME_ZONE_CHANGE, now)?;
    }
    tx.commit()?;
    Ok(after)
}

pub fn signing_secret(c: &Connection, id: WorkspaceId) -> Result<Option<String>> {
    Ok(c.query_row("SELECT signing_secret FROM workspaces WHERE id = ?1", [id], |row| row.get(0)).optional()?.flatten())
}

/// The outbound Segment host and write key, when both are set.
pub fn segment_destination(c: &Connection, id: WorkspaceId) -> Result<Option<(String, String)>> {
    let found: Option<(Option<String>, Option<String>)> = c
        .query_row("SELECT segment_host, segment_write_key FROM workspaces WHERE id = ?1", [id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    Ok(match found {
        Some((Some(host), Some(key))) => Some((host, key)),
        _ => None,
    })
}

/// Marks the digest of `day` as sent; `false` if it already was (by this node or another).
pub fn claim_digest(c: &mut Connection, id: WorkspaceId, day: i32) -> Result<bool> {
    let changed = c.execute(
        "UPDATE workspaces SET digest_last_day = ?2 WHERE id = ?1 AND (digest_last_day IS NULL OR digest_last_day < ?2)",
        params![id, day],
    )?;
    Ok(changed > 0)
}

fn key_row(row: &Row) -> rusqlite::Result<ApiKey> {
    let kind: String = row.get(2)?;
    Ok(ApiKey {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        kind: KeyKind::parse(&kind).unwrap_or(KeyKind::Write),
        name: row.get(3)?,
        prefix: row.get(4)?,
        created_at: from_millis(row.get(5)?),
        revoked_at: row.get::<_, Option<i64>>(6)?.map(from_millis),
    })
}

pub fn create_key(
    c: &mut Connection,
    workspace: WorkspaceId,
    kind: KeyKind,
    name: &str,
    key: &str,
    now: i64,
) -> Result<ApiKey> {
    let prefix = shown_prefix(key);
    c.execute(
        "INSERT INTO api_keys (workspace_id, kind, name, prefix, key_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![workspace, kind.as_str(), name, prefix, key_hash(key).as_slice(), now],
    )?;
    let id = c.last_insert_rowid();
    Ok(c.query_row(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"), [id], key_row)?)
}

pub fn find_key(c: &Connection, hash: &[u8; 32]) -> Result<Option<ApiKey>> {
    let mut statement = c.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"))?;
    Ok(statement.query_row([hash.as_slice()], key_row).optional()?)
}

pub fn keys(c: &Connection, workspace: WorkspaceId) -> Result<Vec<ApiKey>> {
    let mut statement =
        c.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE workspace_id = ?1 ORDER BY id DESC"))?;
    let rows = statement.query_map([workspace], key_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn revoke_key(c: &mut Connection, workspace: WorkspaceId, id: i64, now: i64) -> Result<bool> {
    let exists = c
        .query_row("SELECT 1 FROM api_keys WHERE id = ?1 AND workspace_id = ?2", params![id, workspace], |_| Ok(()))
        .optional()?
        .is_some();
    c.execute(
        "UPDATE api_keys SET revoked_at = ?3 WHERE id = ?1 AND workspace_id = ?2 AND revoked_at IS NULL",
        params![id, workspace, now],
    )?;
    Ok(exists)
}
