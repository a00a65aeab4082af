//! Users and sessions of the web app.

use jiff::Timestamp;
use kith_core::time::from_millis;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};

use crate::records::*;
use crate::sql::USER_COLUMNS;
use crate::{Result, StoreError};

fn user_row(row: &Row) -> Result<User> {
    Ok(User {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        email: row.try_get(2)?,
        password_hash: row.try_get(3)?,
        created_at: from_millis(row.try_get(4)?),
    })
}

pub async fn create_user(
    c: &Client,
    workspace: WorkspaceId,
    email: &str,
    password_hash: &str,
    now: i64,
) -> Result<User> {
    if c.query_opt("SELECT 1 FROM workspaces WHERE id = $1", &[&workspace]).await?.is_none() {
        return Err(StoreError::NotFound(format!("workspace {workspace}")));
    }
    // The unique email index decides between two nodes creating the same user at once.
    let inserted = c
        .query_one(
            &format!(
                "INSERT INTO users AS u (workspace_id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)
                 RETURNING {USER_COLUMNS}"
            ),
            &[&workspace, &email, &password_hash, &now],
        )
        .await;
    match inserted {
        Ok(row) => user_row(&row),
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            Err(StoreError::Conflict(format!("a user with the email {email} already exists")))
        }
        Err(error) => Err(error.into()),
    }
}

pub async fn user_by_email(c: &Client, email: &str) -> Result<Option<User>> {
    let row = c.query_opt(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.email = $1"), &[&email]).await?;
    row.as_ref().map(user_row).transpose()
}

pub async fn users(c: &Client, workspace: WorkspaceId) -> Result<Vec<User>> {
    let rows = c
        .query(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.workspace_id = $1 ORDER BY u.id"), &[&workspace])
        .await?;
    rows.iter().map(user_row).collect()
}

pub async fn user_count(c: &Client) -> Result<i64> {
    Ok(c.query_one("SELECT COUNT(*) FROM users", &[]).await?.try_get(0)?)
}

pub async fn create_session(
    c: &Client,
    user: i64,
    token_hash: &[u8; 32],
    expires_at: Timestamp,
    now: i64,
) -> Result<()> {
    // Sign-ins are rare, so this is where old sessions are swept; the index keeps it cheap.
    // The sweep stands on its own: it need not share a transaction with the new session.
    c.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now]).await?;
    c.execute(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        &[&token_hash.as_slice(), &user, &now, &expires_at.as_millisecond()],
    )
    .await?;
    Ok(())
}

pub async fn session(c: &Client, token_hash: &[u8; 32], now: Timestamp) -> Result<Option<Session>> {
    let row = c
        .query_opt(
            &format!(
                "SELECT {USER_COLUMNS}, s.expires_at, COALESCE(s.last_seen_at, s.created_at)
                   FROM sessions s JOIN users u ON u.id = s.user_id
                  WHERE s.token_hash = $1 AND s.expires_at > $2"
            ),
            &[&token_hash.as_slice(), &now.as_millisecond()],
        )
        .await?;
    row.map(|row| {
        Ok(Session {
            user: user_row(&row)?,
            expires_at: from_millis(row.try_get(5)?),
            last_seen_at: from_millis(row.try_get(6)?),
        })
    })
    .transpose()
}

pub async fn delete_session(c: &Client, token_hash: &[u8; 32]) -> Result<()> {
    c.execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash.as_slice()]).await?;
    Ok(())
}

pub async fn touch_session(c: &Client, token_hash: &[u8; 32], at: Timestamp) -> Result<()> {
    c.execute(
        "UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1",
        &[&token_hash.as_slice(), &at.as_millisecond()],
    )
    .await?;
    Ok(())
}

pub async fn set_password(c: &mut Client, user: i64, password_hash: &str) -> Result<()> {
    let tx = c.transaction().await?;
    if tx.execute("UPDATE users SET password_hash = $2 WHERE id = $1", &[&user, &password_hash]).await? == 0 {
        return Err(StoreError::NotFound(format!("user {user}")));
    }
    // A new password ends every session: whoever knew the old one is signed out too.
    tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&user]).await?;
    // What the user owned is nobody's now; their tasks stay, for nobody in particular.
    tx.execute("DELETE FROM owners WHERE user_id = $1", &[&user]).await?;
    tx.execute("UPDATE tasks SET assignee_id = NULL WHERE assignee_id = $1", &[&user]).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn delete_user(c: &mut Client, user: i64) -> Result<()> {
    let tx = c.transaction().await?;
    tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&user]).await?;
    if tx.execute("DELETE FROM users WHERE id = $1", &[&user]).await? == 0 {
        return Err(StoreError::NotFound(format!("user {user}")));
    }
    tx.commit().await?;
    Ok(())
}
