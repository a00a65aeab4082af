//! Embedded migrations, applied in order at start and by `kith migrate`. An applied
//! migration is never edited: changes go in a new file.

use rusqlite::Connection;

use crate::{Result, StoreError};

/// `(version, name, sql)` of every migration this binary knows.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "init", include_str!("../../migrations/sqlite/0001_init.sql"))];

/// Applies the migrations the database lacks; returns their versions.
pub fn run(connection: &mut Connection) -> Result<Vec<i64>> {
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     INTEGER PRIMARY KEY,
             name        TEXT    NOT NULL,
             applied_at  INTEGER NOT NULL
         )",
    )?;
    let current: i64 =
        connection.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |row| row.get(0))?;
    let known = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    if current > known {
        return Err(StoreError::SchemaTooNew { found: current, known });
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|(version, _, _)| *version > current) {
        let tx = connection.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, super::now_ms()],
        )?;
        tx.commit()?;
        applied.push(*version);
    }
    Ok(applied)
}
