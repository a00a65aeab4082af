//! Owners of accounts and contacts, follow-up tasks and the owners' own digests on SQLite.

use kith_core::time::from_millis;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::records::*;
use crate::Result;

pub fn set_owner(
    c: &mut Connection,
    workspace: WorkspaceId,
    subject: OwnerSubject,
    id: i64,
    user: Option<i64>,
    now: i64,
) -> Result<()> {
    match user {
        Some(user) => c.execute(
            "INSERT INTO owners (workspace_id, subject, subject_id, user_id, assigned_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (subject, subject_id) DO UPDATE SET user_id = excluded.user_id,
                 assigned_at = excluded.assigned_at",
            params![workspace, subject.as_str(), id, user, now],
        )?,
        None => c.execute(
            "DELETE FROM owners WHERE workspace_id = ?1 AND subject = ?2 AND subject_id = ?3",
            params![workspace, subject.as_str(), id],
        )?,
    };
    Ok(())
}

pub fn owners(c: &Connection, workspace: WorkspaceId, subject: OwnerSubject) -> Result<Vec<(i64, i64)>> {
    let mut statement = c.prepare_cached(
        "SELECT subject_id, user_id FROM owners WHERE workspace_id = ?1 AND subject = ?2 ORDER BY subject_id",
    )?;
    let rows = statement.query_map(params![workspace, subject.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn owner(c: &Connection, workspace: WorkspaceId, subject: OwnerSubject, id: i64) -> Result<Option<i64>> {
    Ok(c.prepare_cached("SELECT user_id FROM owners WHERE workspace_id = ?1 AND subject = ?2 AND subject_id = ?3")?
        .query_row(params![workspace, subject.as_str(), id], |row| row.get(0))
        .optional()?)
}

const TASK_COLUMNS: &str = "id, contact_id, account_id, assignee_id, note, due_day, done_at, created_at, updated_at";

fn task_row(row: &Row) -> rusqlite::Result<Task> {
    Ok(Task {
        id: row.get(0)?,
        contact_id: row.get(1)?,
        account_id: row.get(2)?,
        assignee_id: row.get(3)?,
        note: row.get(4)?,
        due_day: row.get(5)?,
        done_at: row.get::<_, Option<i64>>(6)?.map(from_millis),
        created_at: from_millis(row.get(7)?),
        updated_at: from_millis(row.get(8)?),
    })
}

pub fn task(c: &Connection, workspace: WorkspaceId, id: i64) -> Result<Option<Task>> {
    Ok(c.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE workspace_id = ?1 AND id = ?2"))?
        .query_row(params![workspace, id], task_row)
        .optional()?)
}

pub fn create_task(c: &mut Connection, workspace: WorkspaceId, spec: &TaskSpec, now: i64) -> Result<Task> {
    c.execute(
        "INSERT INTO tasks (workspace_id, contact_id, account_id, assignee_id, note, due_day, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![workspace, spec.contact_id, spec.account_id, spec.assignee_id, spec.note, spec.due_day, now],
    )?;
    let id = c.last_insert_rowid();
    task(c, workspace, id)?.ok_or_else(|| crate::StoreError::NotFound(format!("task {id}")))
}

pub fn tasks(c: &Connection, workspace: WorkspaceId, query: &TaskQuery) -> Result<Vec<Task>> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks
         WHERE workspace_id = ?1 AND (?2 IS NULL OR assignee_id = ?2) AND (?3 IS NULL OR contact_id = ?3)
           AND (?4 IS NULL OR account_id = ?4) AND (?5 IS NULL OR (done_at IS NULL AND due_day <= ?5))
           AND (?6 = 0 OR done_at IS NULL)
         ORDER BY done_at IS NOT NULL, due_day, id LIMIT ?7"
    ))?;
    let rows = statement.query_map(
        params![
            workspace,
            query.assignee,
            query.contact,
            query.account,
            query.due_by,
            query.open_only,
            query.limit.clamp(1, 500) as i64
        ],
        task_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn update_task(
    c: &mut Connection,
    workspace: WorkspaceId,
    id: i64,
    spec: &TaskSpec,
    now: i64,
) -> Result<Option<Task>> {
    c.execute(
        "UPDATE tasks SET contact_id = ?3, account_id = ?4, assignee_id = ?5, note = ?6, due_day = ?7, updated_at = ?8
         WHERE workspace_id = ?1 AND id = ?2",
        params![workspace, id, spec.contact_id, spec.account_id, spec.assignee_id, spec.note, spec.due_day, now],
    )?;
    task(c, workspace, id)
}

pub fn set_task_done(
    c: &mut Connection,
    workspace: WorkspaceId,
    id: i64,
    done: bool,
    now: i64,
) -> Result<Option<Task>> {
    // Completing a done task keeps when it was first done.
    c.execute(
        "UPDATE tasks SET done_at = CASE WHEN ?3 THEN COALESCE(done_at, ?4) END, updated_at = ?4
         WHERE workspace_id = ?1 AND id = ?2",
        params![workspace, id, done, now],
    )?;
    task(c, workspace, id)
}

pub fn delete_task(c: &mut Connection, workspace: WorkspaceId, id: i64) -> Result<bool> {
    Ok(c.execute("DELETE FROM tasks WHERE workspace_id = ?1 AND id = ?2", params![workspace, id])? > 0)
}

pub fn claim_owner_digest(c: &mut Connection, user: i64, day: i32) -> Result<bool> {
    Ok(c.execute(
        "INSERT INTO owner_digests (user_id, day) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![user, day],
    )? > 0)
}
