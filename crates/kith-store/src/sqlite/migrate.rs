//! Embedded migrations, applied in order at start and by `kith migrate`. An applied
//! migration is never edited: changes go in a new file.

use rusqlite::Connection;

use crate::{Result, StoreError};

/// `(version, name, sql)` of every migration this binary knows.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, "users", include_str!("../../migrations/sqlite/0002_users.sql")),
    (3, "nudges", include_str!("../../migrations/sqlite/0003_nudges.sql")),
    (4, "projection", include_str!("../../migrations/sqlite/0004_projection.sql")),
    (5, "session_idle", include_str!("../../migrations/sqlite/0005_session_idle.sql")),
    (6, "refuse_array_bodies", include_str!("../../migrations/sqlite/0006_refuse_array_bodies.sql")),
    (7, "outbox_contact", include_str!("../../migrations/sqlite/0007_outbox_contact.sql")),
    (8, "messages", include_str!("../../migrations/sqlite/0008_messages.sql")),
    (9, "accounts", include_str!("../../migrations/sqlite/0009_accounts.sql")),
    (10, "message_tracking", include_str!("../../migrations/sqlite/0010_message_tracking.sql")),
    (11, "success", include_str!("../../migrations/sqlite/0011_success.sql")),
    (12, "journeys", include_str!("../../migrations/sqlite/0012_journeys.sql")),
    (14, "reprojections", include_str!("../../migrations/sqlite/0014_reprojections.sql")),
    (15, "id_floors", include_str!("../../migrations/sqlite/0015_id_floors.sql")),
];

/// Applies the migrations the database lacks, recording `now` as when; returns their versions.
pub fn run(connection: &mut Connection, now: i64) -> Result<Vec<i64>> {
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     INTEGER PRIMARY KEY,
             name        TEXT    NOT NULL,
             applied_at  INTEGER NOT NULL
         )",
    )?;
    let applied_versions: Vec<i64> = connection
        .prepare("SELECT version FROM schema_migrations")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let known = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    if let Some(unknown) = applied_versions.iter().find(|v| !MIGRATIONS.iter().any(|(known, _, _)| known == *v)) {
        return Err(StoreError::SchemaTooNew { found: *unknown, known });
    }
    let mut applied = Vec::new();
    // Every migration the database lacks, in order, even one numbered below an applied one.
    for (version, name, sql) in MIGRATIONS.iter().filter(|(version, _, _)| !applied_versions.contains(version)) {
        let tx = connection.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, now],
        )?;
        tx.commit()?;
        applied.push(*version);
    }
    Ok(applied)
}
