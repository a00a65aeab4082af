//! Workspaces, keys and workspace settings.

use kith_core::time::from_millis;
use tokio_postgres::{Client, GenericClient, Row};

use super::{lock_contacts, reproject, write};
use crate::records::*;
use crate::sql::KEY_COLUMNS;
use crate::{Result, StoreError};

const WORKSPACE_COLUMNS: &str =
    "id, name, time_zone, half_life_days, weights, pending_days, signing_secret IS NOT NULL,
     created_at, segment_host, segment_write_key IS NOT NULL, digest_time, digest_webhook_url, digest_email,
     refuse_array_bodies, region";

fn workspace_row(row: &Row) -> Result<Workspace> {
    let weights: String = row.try_get(4)?;
    Ok(Workspace {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        time_zone: row.try_get(2)?,
        half_life_days: row.try_get(3)?,
        weights: serde_json::from_str(&weights).unwrap_or_default(),
        pending_days: row.try_get(5)?,
        signing_secret_set: row.try_get(6)?,
        created_at: from_millis(row.try_get(7)?),
        segment_host: row.try_get(8)?,
        segment_write_key_set: row.try_get(9)?,
        digest: Digest { time: row.try_get(10)?, webhook_url: row.try_get(11)?, email: row.try_get(12)? },
        refuse_array_bodies: row.try_get(13)?,
        region: row.try_get(14)?,
    })
}

fn not_found(id: WorkspaceId) -> StoreError {
    StoreError::NotFound(format!("workspace {id}"))
}

pub async fn create_workspace(c: &mut Client, name: &str, now: i64) -> Result<Workspace> {
    let row = c
        .query_one(
            &format!("INSERT INTO workspaces (name, created_at) VALUES ($1, $2) RETURNING {WORKSPACE_COLUMNS}"),
            &[&name, &now],
        )
        .await?;
    workspace_row(&row)
}

pub async fn workspaces(c: &(impl GenericClient + Sync)) -> Result<Vec<Workspace>> {
    let rows = c.query(&format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY id"), &[]).await?;
    rows.iter().map(workspace_row).collect()
}

pub async fn workspace(c: &(impl GenericClient + Sync), id: WorkspaceId) -> Result<Option<Workspace>> {
    let row = c.query_opt(&format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = $1"), &[&id]).await?;
    row.as_ref().map(workspace_row).transpose()
}

pub async fn update_workspace(c: &mut Client, id: WorkspaceId, patch: WorkspacePatch, now: i64) -> Result<Workspace> {
    let tx = c.transaction().await?;
    // A new half-life or new weights rewrite every contact's closeness key, which must not
    // interleave with an ingest batch planning from the old keys.
    lock_contacts(&tx).await?;
    let before = workspace(&tx, id).await?.ok_or_else(|| not_found(id))?;
    if let Some(name) = &patch.name {
        tx.execute("UPDATE workspaces SET name = $2 WHERE id = $1", &[&id, name]).await?;
    }
    if let Some(time_zone) = &patch.time_zone {
        tx.execute("UPDATE workspaces SET time_zone = $2 WHERE id = $1", &[&id, time_zone]).await?;
    }
    if let Some(half_life) = patch.half_life_days {
        tx.execute("UPDATE workspaces SET half_life_days = $2 WHERE id = $1", &[&id, &half_life]).await?;
    }
    if let Some(weights) = patch.weights {
        let weights = serde_json::to_string(&weights).unwrap_or_default();
        tx.execute("UPDATE workspaces SET weights = $2 WHERE id = $1", &[&id, &weights]).await?;
    }
    if let Some(days) = patch.pending_days {
        tx.execute("UPDATE workspaces SET pending_days = $2 WHERE id = $1", &[&id, &days]).await?;
    }
    if let Some(refuse) = patch.refuse_array_bodies {
        tx.execute("UPDATE workspaces SET refuse_array_bodies = $2 WHERE id = $1", &[&id, &refuse]).await?;
    }
    if let Some(region) = &patch.region {
        tx.execute("UPDATE workspaces SET region = $2 WHERE id = $1", &[&id, region]).await?;
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
            tx.execute(&format!("UPDATE workspaces SET {column} = $2 WHERE id = $1"), &[&id, value]).await?;
        }
    }
    let after = workspace(&tx, id).await?.ok_or_else(|| not_found(id))?;
    if after.model() != before.model() {
        write::recompute_closeness(&tx, &after).await?;
    }
    if before.needs_reprojection(&after) {
        reproject::request(&tx, id, Reprojection::AFTER_TIME_ZONE_CHANGE, now).await?;
    }
    tx.commit().await?;
    Ok(after)
}

pub async fn signing_secret(c: &Client, id: WorkspaceId) -> Result<Option<String>> {
    let row = c.query_opt("SELECT signing_secret FROM workspaces WHERE id = $1", &[&id]).await?;
    Ok(match row {
        Some(row) => row.try_get(0)?,
        None => None,
    })
}

/// The outbound Segment host and write key, when both are set.
pub async fn segment_destination(c: &Client, id: WorkspaceId) -> Result<Option<(String, String)>> {
    let row = c.query_opt("SELECT segment_host, segment_write_key FROM workspaces WHERE id = $1", &[&id]).await?;
    let Some(row) = row else { return Ok(None) };
    let host: Option<String> = row.try_get(0)?;
    let key: Option<String> = row.try_get(1)?;
    Ok(host.zip(key))
}

/// Marks the digest of `day` as sent; `false` if it already was (by this node or another).
/// The condition and the write are one statement, so two nodes cannot both claim a day.
pub async fn claim_digest(c: &Client, id: WorkspaceId, day: i32) -> Result<bool> {
    let changed = c
        .execute(
            "UPDATE workspaces SET digest_last_day = $2
              WHERE id = $1 AND (digest_last_day IS NULL OR digest_last_day < $2)",
            &[&id, &day],
        )
        .await?;
    Ok(changed > 0)
}

fn key_row(row: &Row) -> Result<ApiKey> {
    let kind: String = row.try_get(2)?;
    Ok(ApiKey {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        kind: KeyKind::parse(&kind).unwrap_or(KeyKind::Write),
        name: row.try_get(3)?,
        prefix: row.try_get(4)?,
        created_at: from_millis(row.try_get(5)?),
        revoked_at: row.try_get::<_, Option<i64>>(6)?.map(from_millis),
    })
}

pub async fn create_key(
    c: &Client,
    workspace: WorkspaceId,
    kind: KeyKind,
    name: &str,
    key: &str,
    now: i64,
) -> Result<ApiKey> {
    let prefix = shown_prefix(key);
    let hash = key_hash(key);
    let row = c
        .query_one(
            &format!(
                "INSERT INTO api_keys (workspace_id, kind, name, prefix, key_hash, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {KEY_COLUMNS}"
            ),
            &[&workspace, &kind.as_str(), &name, &prefix, &hash.as_slice(), &now],
        )
        .await?;
    key_row(&row)
}

pub async fn find_key(c: &Client, hash: &[u8; 32]) -> Result<Option<ApiKey>> {
    let row =
        c.query_opt(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"), &[&hash.as_slice()]).await?;
    row.as_ref().map(key_row).transpose()
}

pub async fn keys(c: &Client, workspace: WorkspaceId) -> Result<Vec<ApiKey>> {
    let rows = c
        .query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE workspace_id = $1 ORDER BY id DESC"), &[&workspace])
        .await?;
    rows.iter().map(key_row).collect()
}

/// Revokes a key; `true` if the key exists in the workspace, revoked now or before (an
/// already revoked key keeps its first revocation time).
pub async fn revoke_key(c: &Client, workspace: WorkspaceId, id: i64, now: i64) -> Result<bool> {
    let changed = c
        .execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 AND workspace_id = $2",
            &[&id, &workspace, &now],
        )
        .await?;
    Ok(changed > 0)
}
