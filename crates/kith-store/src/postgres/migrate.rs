//! Embedded migrations for PostgreSQL, applied in order at start and by `kith migrate`, under
//! an advisory lock so that nodes starting together apply each one once.

use tokio_postgres::Client;

use super::MIGRATION_LOCK;
use crate::{Result, StoreError};

/// `(version, name, sql)` of every migration this binary knows.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/postgres/0001_init.sql")),
    (2, "session_idle", include_str!("../../migrations/postgres/0002_session_idle.sql")),
    (3, "refuse_array_bodies", include_str!("../../migrations/postgres/0003_refuse_array_bodies.sql")),
    (4, "outbox_contact", include_str!("../../migrations/postgres/0004_outbox_contact.sql")),
    (5, "messages", include_str!("../../migrations/postgres/0005_messages.sql")),
    (6, "accounts", include_str!("../../migrations/postgres/0006_accounts.sql")),
    (7, "message_tracking", include_str!("../../migrations/postgres/0007_message_tracking.sql")),
    (8, "success", include_str!("../../migrations/postgres/0008_success.sql")),
    (9, "journeys", include_str!("../../migrations/postgres/0009_journeys.sql")),
    (11, "reprojections", include_str!("../../migrations/postgres/0011_reprojections.sql")),
    (12, "event_log", include_str!("../../migrations/postgres/0012_event_log.sql")),
    (13, "message_id_days", include_str!("../../migrations/postgres/0013_message_id_days.sql")),
    (14, "append_lanes", include_str!("../../migrations/postgres/0014_append_lanes.sql")),
];

/// Applies the migrations the database lacks, recording `now` as when; returns their versions.
pub async fn run(client: &mut Client, now: i64) -> Result<Vec<i64>> {
    // A migration may rewrite a large table, and a node starting beside one that is migrating
    // waits for its lock: neither is a statement the statement timeout is meant to cut short.
    client.batch_execute("SET statement_timeout = 0").await?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let result = apply_missing(client, now).await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    client.batch_execute("RESET statement_timeout").await?;
    result
}

async fn apply_missing(client: &mut Client, now: i64) -> Result<Vec<i64>> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version     BIGINT PRIMARY KEY,
                 name        TEXT   NOT NULL,
                 applied_at  BIGINT NOT NULL
             )",
        )
        .await?;
    let applied_versions: Vec<i64> =
        client.query("SELECT version FROM schema_migrations", &[]).await?.iter().map(|row| row.get(0)).collect();
    let known = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    if let Some(unknown) = applied_versions.iter().find(|v| !MIGRATIONS.iter().any(|(known, _, _)| known == *v)) {
        return Err(StoreError::SchemaTooNew { found: *unknown, known });
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|(version, _, _)| !applied_versions.contains(version)) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[version, name, &now],
        )
        .await?;
        tx.commit().await?;
        applied.push(*version);
    }
    Ok(applied)
}
