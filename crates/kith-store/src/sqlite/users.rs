//! Users of the web app and their sessions.

use jiff::Timestamp;
use kith_core::time::from_millis;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::records::*;
use crate::sql::USER_COLUMNS;
use crate::{Result, StoreError};

fn user_row(row: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        email: row.get(2)?,
        password_hash: row.get(3)?,
        created_at: from_millis(row.get(4)?),
    })
}

pub fn create_user(
    c: &mut Connection,
    workspace: WorkspaceId,
    email: &str,
    password_hash: &str,
    now: i64,
) -> Result<User> {
    let tx = c.transaction()?;
    if tx.query_row("SELECT 1 FROM workspaces WHERE id = ?1", [workspace], |_| Ok(())).optional()?.is_none() {
        return Err(StoreError::NotFound(format!("workspace {workspace}")));
    }
    if user_by_email(&tx, email)?.is_some() {
        return Err(StoreError::Conflict(format!("a user with the email {email} already exists")));
    }
    tx.execute(
        "INSERT INTO users (workspace_id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![workspace, email, password_hash, now],
    )?;
    let id = tx.last_insert_rowid();
    let user = tx.query_row(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?1"), [id], user_row)?;
    tx.commit()?;
    Ok(user)
}

pub fn users(c: &Connection, workspace: WorkspaceId) -> Result<Vec<User>> {
    let mut statement =
        c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.workspace_id = ?1 ORDER BY u.id"))?;
    let rows = statement.query_map([workspace], user_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn user_by_email(c: &Connection, email: &str) -> Result<Option<User>> {
    let mut statement = c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.email = ?1"))?;
    Ok(statement.query_row([email], user_row).optional()?)
}

pub fn user_count(c: &Connection) -> Result<i64> {
    Ok(c.query_row("SELECT COUNT(*) FROM users", [], |row| row.get(0))?)
}

pub fn create_session(
    c: &mut Connection,
    user: i64,
    token_hash: &[u8; 32],
    expires_at: Timestamp,
    now: i64,
) -> Result<()> {
    let tx = c.transaction()?;
    // Sign-ins are rare, so this is where old sessions are swept; the index keeps it cheap.
    tx.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?;
    tx.execute(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![token_hash.as_slice(), user, now, expires_at.as_millisecond()],
    )?;
    tx.commit()?;
    Ok(())
}

pub fn session(c: &Connection, token_hash: &[u8; 32], now: Timestamp) -> Result<Option<Session>> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT {USER_COLUMNS}, s.expires_at, COALESCE(s.last_seen_at, s.created_at)
           FROM sessions s JOIN users u ON u.id = s.user_id
          WHERE s.token_hash = ?1 AND s.expires_at > ?2"
    ))?;
    let found = statement
        .query_row(params![token_hash.as_slice(), now.as_millisecond()], |row| {
            Ok(Session {
                user: user_row(row)?,
                expires_at: from_millis(row.get(5)?),
                last_seen_at: from_millis(row.get(6)?),
            })
        })
        .optional()?;
    Ok(found)
}

pub fn delete_session(c: &mut Connection, token_hash: &[u8; 32]) -> Result<()> {
    c.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash.as_slice()])?;
    Ok(())
}

pub fn touch_session(c: &mut Connection, token_hash: &[u8; 32], at: Timestamp) -> Result<()> {
    c.execute(
        "UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1",
        params![token_hash.as_slice(), at.as_millisecond()],
    )?;
    Ok(())
}

pub fn set_password(c: &mut Connection, user: i64, password_hash: &str) -> Result<()> {
    let tx = c.transaction()?;
    if tx.execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", params![user, password_hash])? == 0 {
        return Err(StoreError::NotFound(format!("user {user}")));
    }
    // A new password ends every session: whoever knew the old one is signed out too.
    tx.execute("DELETE FROM sessions WHERE user_id = ?1", [user])?;
    // What the user owned is nobody's now; their tasks stay, for nobody in particular.
    tx.execute("DELETE FROM owners WHERE user_id = ?1", [user])?;
    tx.execute("UPDATE tasks SET assignee_id = NULL WHERE assignee_id = ?1", [user])?;
    tx.commit()?;
    Ok(())
}

pub fn delete_user(c: &mut Connection, user: i64) -> Result<()> {
    let tx = c.transaction()?;
    tx.execute("DELETE FROM sessions WHERE user_id = ?1", [user])?;
    if tx.execute("DELETE FROM users WHERE id = ?1", [user])? == 0 {
        return Err(StoreError::NotFound(format!("user {user}")));
    }
    tx.commit()?;
    Ok(())
}
