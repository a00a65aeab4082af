//! Owners of accounts and contacts, follow-up tasks and the owners' own digests on PostgreSQL.

use kith_core::time::from_millis;
use tokio_postgres::{Client, Row};

use crate::records::*;
use crate::Result;

pub async fn set_owner(
    c: &mut Client,
    workspace: WorkspaceId,
    subject: OwnerSubject,
    id: i64,
    user: Option<i64>,
    now: i64,
) -> Result<()> {
    match user {
        Some(user) => {
            c.execute(
                "INSERT INTO owners (workspace_id, subject, subject_id, user_id, assigned_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (subject, subject_id) DO UPDATE SET user_id = excluded.user_id,
                     assigned_at = excluded.assigned_at",
                &[&workspace, &subject.as_str(), &id, &user, &now],
            )
            .await?
        }
        None => {
            c.execute(
                "DELETE FROM owners WHERE workspace_id = $1 AND subject = $2 AND subject_id = $3",
                &[&workspace, &subject.as_str(), &id],
            )
            .await?
        }
    };
    Ok(())
}

pub async fn owners(c: &mut Client, workspace: WorkspaceId, subject: OwnerSubject) -> Result<Vec<(i64, i64)>> {
    let rows = c
        .query(
            "SELECT subject_id, user_id FROM owners WHERE workspace_id = $1 AND subject = $2 ORDER BY subject_id",
            &[&workspace, &subject.as_str()],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

pub async fn owner(c: &mut Client, workspace: WorkspaceId, subject: OwnerSubject, id: i64) -> Result<Option<i64>> {
    let row = c
        .query_opt(
            "SELECT user_id FROM owners WHERE workspace_id = $1 AND subject = $2 AND subject_id = $3",
            &[&workspace, &subject.as_str(), &id],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

const TASK_COLUMNS: &str = "id, contact_id, account_id, assignee_id, note, due_day, done_at, created_at, updated_at";

fn task_row(row: &Row) -> Task {
    Task {
        id: row.get(0),
        contact_id: row.get(1),
        account_id: row.get(2),
        assignee_id: row.get(3),
        note: row.get(4),
        due_day: row.get(5),
        done_at: row.get::<_, Option<i64>>(6).map(from_millis),
        created_at: from_millis(row.get(7)),
        updated_at: from_millis(row.get(8)),
    }
}

pub async fn task(c: &mut Client, workspace: WorkspaceId, id: i64) -> Result<Option<Task>> {
    let row = c
        .query_opt(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE workspace_id = $1 AND id = $2"), &[&workspace, &id])
        .await?;
    Ok(row.as_ref().map(task_row))
}

pub async fn create_task(c: &mut Client, workspace: WorkspaceId, spec: &TaskSpec, now: i64) -> Result<Task> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO tasks (workspace_id, contact_id, account_id, assignee_id, note, due_day, created_at,
                                    updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {TASK_COLUMNS}"
            ),
            &[&workspace, &spec.contact_id, &spec.account_id, &spec.assignee_id, &spec.note, &spec.due_day, &now],
        )
        .await?;
    Ok(task_row(&row))
}

pub async fn tasks(c: &mut Client, workspace: WorkspaceId, query: &TaskQuery) -> Result<Vec<Task>> {
    let rows = c
        .query(
            &format!(
                "SELECT {TASK_COLUMNS} FROM tasks
                 WHERE workspace_id = $1 AND ($2::BIGINT IS NULL OR assignee_id = $2)
                   AND ($3::BIGINT IS NULL OR contact_id = $3) AND ($4::BIGINT IS NULL OR account_id = $4)
                   AND ($5::INTEGER IS NULL OR (done_at IS NULL AND due_day <= $5))
                   AND (NOT $6 OR done_at IS NULL)
                 ORDER BY done_at IS NOT NULL, due_day, id LIMIT $7"
            ),
            &[
                &workspace,
                &query.assignee,
                &query.contact,
                &query.account,
                &query.due_by,
                &query.open_only,
                &(query.limit.clamp(1, 500) as i64),
            ],
        )
        .await?;
    Ok(rows.iter().map(task_row).collect())
}

pub async fn update_task(
    c: &mut Client,
    workspace: WorkspaceId,
    id: i64,
    spec: &TaskSpec,
    now: i64,
) -> Result<Option<Task>> {
    let row = c
        .query_opt(
            &format!(
                "UPDATE tasks SET contact_id = $3, account_id = $4, assignee_id = $5, note = $6, due_day = $7,
                                  updated_at = $8
                 WHERE workspace_id = $1 AND id = $2 RETURNING {TASK_COLUMNS}"
            ),
            &[&workspace, &id, &spec.contact_id, &spec.account_id, &spec.assignee_id, &spec.note, &spec.due_day, &now],
        )
        .await?;
    Ok(row.as_ref().map(task_row))
}

pub async fn set_task_done(
    c: &mut Client,
    workspace: WorkspaceId,
    id: i64,
    done: bool,
    now: i64,
) -> Result<Option<Task>> {
    // Completing a done task keeps when it was first done.
    let row = c
        .query_opt(
            &format!(
                "UPDATE tasks SET done_at = CASE WHEN $3 THEN COALESCE(done_at, $4) END, updated_at = $4
                 WHERE workspace_id = $1 AND id = $2 RETURNING {TASK_COLUMNS}"
            ),
            &[&workspace, &id, &done, &now],
        )
        .await?;
    Ok(row.as_ref().map(task_row))
}

pub async fn delete_task(c: &mut Client, workspace: WorkspaceId, id: i64) -> Result<bool> {
    Ok(c.execute("DELETE FROM tasks WHERE workspace_id = $1 AND id = $2", &[&workspace, &id]).await? > 0)
}

pub async fn claim_owner_digest(c: &mut Client, user: i64, day: i32) -> Result<bool> {
    Ok(c.execute("INSERT INTO owner_digests (user_id, day) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&user, &day])
        .await?
        > 0)
}
