//! Owners of accounts and contacts, follow-up tasks (`/api/tasks`) and a user's Today list
//! (`/api/today`).
//!
//! A secret key belongs to the workspace, not to a person: a request says whose "me" it means
//! with the `Kith-User` header (a user's email or id).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use kith_store::{OwnerFilter, TaskQuery, User, Workspace};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{workspace_of, Body};
use crate::auth::SecretKey;
use crate::error::{ApiError, ApiResult};
use crate::service::contacts::find_contact;
use crate::service::owners::{self, TaskDetail, TaskInput, TodayItem};
use crate::AppState;

/// The header naming the user a request speaks for.
pub const USER_HEADER: &str = "kith-user";

/// The user the `Kith-User` header names, if it is sent; a 400 if it names nobody of the
/// workspace.
pub async fn acting_user(state: &AppState, workspace: i64, headers: &HeaderMap) -> ApiResult<Option<User>> {
    let Some(value) = headers.get(USER_HEADER) else { return Ok(None) };
    let text = value.to_str().map_err(|_| {
        ApiError::bad_request("unknown_user", USER_HEADER, "the Kith-User header is a user's email or id")
    })?;
    owners::find_user(state, workspace, text, USER_HEADER).await.map(Some)
}

/// The owner filter of a list, `?owner=me|none|<email or id>`.
pub async fn owner_param(
    state: &AppState,
    workspace: i64,
    headers: &HeaderMap,
    owner: Option<&str>,
) -> ApiResult<Option<OwnerFilter>> {
    let Some(owner) = owner.filter(|owner| !owner.trim().is_empty()) else { return Ok(None) };
    let me = acting_user(state, workspace, headers).await?;
    owners::owner_filter(state, workspace, owner, me.as_ref()).await.map(Some)
}

/// A user as an owner or an assignee.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserRef {
    /// The user's id.
    pub id: i64,
    /// Their email (what they sign in with).
    pub email: String,
}

impl From<User> for UserRef {
    fn from(user: User) -> Self {
        UserRef { id: user.id, email: user.email }
    }
}

/// An owner to set: a user's email or id, or null to clear it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerBody {
    /// The user's email or id; null clears the owner.
    #[schema(value_type = Option<String>)]
    pub user: Option<serde_json::Value>,
}

impl OwnerBody {
    fn user(&self) -> ApiResult<Option<String>> {
        match &self.user {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
            Some(serde_json::Value::Number(id)) => Ok(Some(id.to_string())),
            Some(_) => Err(ApiError::bad_request("unknown_user", "user", "`user` is a user's email or id, or null")),
        }
    }
}

/// Who owns an account or a contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct OwnerView {
    /// The owner, or null.
    pub owner: Option<UserRef>,
}

/// Sets or clears the owner of an account: one of the workspace's users.
#[utoipa::path(put, path = "/api/accounts/{group_id}/owner", tag = "owners", params(("group_id" = String, Path)),
    request_body = OwnerBody,
    responses((status = 200, body = OwnerView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn set_account_owner(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(group_id): Path<String>,
    Body(body): Body<OwnerBody>,
) -> ApiResult<Json<OwnerView>> {
    let user = body.user()?;
    let owner = owners::set_account_owner(&state, key.workspace_id, &group_id, user.as_deref()).await?;
    Ok(Json(OwnerView { owner: owner.map(Into::into) }))
}

/// Sets or clears the owner of a contact (by id or email): one of the workspace's users.
#[utoipa::path(put, path = "/api/contacts/{id}/owner", tag = "owners", params(("id" = String, Path)),
    request_body = OwnerBody,
    responses((status = 200, body = OwnerView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn set_contact_owner(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<String>,
    Body(body): Body<OwnerBody>,
) -> ApiResult<Json<OwnerView>> {
    let user = body.user()?;
    let owner = owners::set_contact_owner(&state, key.workspace_id, &id, user.as_deref()).await?;
    Ok(Json(OwnerView { owner: owner.map(Into::into) }))
}

/// A follow-up task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    pub id: i64,
    /// What to do.
    pub note: String,
    /// The day it is due (`YYYY-MM-DD`, in the workspace's time zone).
    pub due: String,
    /// Due before today and not done.
    pub overdue: bool,
    /// Whether it is done.
    pub done: bool,
    /// When it was done.
    pub done_at: Option<String>,
    /// The contact it is about.
    pub contact: Option<TaskContact>,
    /// The account it is about.
    pub account: Option<TaskAccount>,
    /// Who is to do it.
    pub assignee: Option<UserRef>,
    pub created_at: String,
}

/// The contact of a task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskContact {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
}

/// The account of a task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskAccount {
    pub group_id: String,
    pub name: Option<String>,
}

impl From<TaskDetail> for TaskView {
    fn from(detail: TaskDetail) -> Self {
        TaskView {
            id: detail.task.id,
            note: detail.task.note,
            due: detail.due.to_string(),
            overdue: detail.overdue,
            done: detail.task.done_at.is_some(),
            done_at: detail.task.done_at.map(|at| at.to_string()),
            contact: detail.contact.map(|c| TaskContact { id: c.id, email: c.email, name: c.name }),
            account: detail.account.map(|a| TaskAccount { group_id: a.group_id, name: a.name }),
            assignee: detail.assignee.map(Into::into),
            created_at: detail.task.created_at.to_string(),
        }
    }
}

/// A task as written: a note, the day it is due, the contact or account it is about, and who
/// is to do it (by default the owner of its contact or account).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
    /// What to do (1 to 2000 characters).
    pub note: String,
    /// `YYYY-MM-DD`.
    pub due: String,
    /// A contact's id or email.
    #[schema(value_type = Option<String>)]
    pub contact: Option<serde_json::Value>,
    /// An account's groupId.
    pub account: Option<String>,
    /// A user's email or id.
    #[schema(value_type = Option<String>)]
    pub assignee: Option<serde_json::Value>,
}

fn text_of(value: Option<&serde_json::Value>, field: &str) -> ApiResult<Option<String>> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
        Some(serde_json::Value::Number(id)) => Ok(Some(id.to_string())),
        Some(_) => Err(ApiError::bad_request("invalid_task", field, format!("`{field}` is an id or an email"))),
    }
}

impl TaskBody {
    fn input(&self) -> ApiResult<TaskInput> {
        Ok(TaskInput {
            note: self.note.clone(),
            due: self.due.clone(),
            contact: text_of(self.contact.as_ref(), "contact")?,
            account: self.account.clone(),
            assignee: text_of(self.assignee.as_ref(), "assignee")?,
        })
    }
}

/// Which tasks to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct TaskListParams {
    /// Only those of this user: `me` (with `Kith-User`), an email or an id.
    pub assignee: Option<String>,
    /// Only those on this contact (id or email).
    pub contact: Option<String>,
    /// Only those on this account (groupId).
    pub account: Option<String>,
    /// `true`: open tasks only.
    pub open: Option<bool>,
}

/// Tasks, open first, by due day.
#[utoipa::path(get, path = "/api/tasks", tag = "tasks", params(TaskListParams),
    responses((status = 200, body = Vec<TaskView>), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn tasks(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    headers: HeaderMap,
    Query(params): Query<TaskListParams>,
) -> ApiResult<Json<Vec<TaskView>>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let assignee = match params.assignee.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
        Some("me") => Some(
            acting_user(&state, workspace.id, &headers)
                .await?
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "owner_me_needs_user",
                        "assignee",
                        "assignee=me needs to know who you are: send the header `Kith-User: <your email>`",
                    )
                })?
                .id,
        ),
        Some(text) => Some(owners::find_user(&state, workspace.id, text, "assignee").await?.id),
        None => None,
    };
    let contact = match params.contact.as_deref().filter(|text| !text.is_empty()) {
        Some(text) => Some(find_contact(&state, workspace.id, text).await?.id),
        None => None,
    };
    let account = match params.account.as_deref().filter(|text| !text.is_empty()) {
        Some(group_id) => Some(owners::find_account(&state, workspace.id, group_id).await?.id),
        None => None,
    };
    let query = TaskQuery {
        assignee,
        contact,
        account,
        open_only: params.open.unwrap_or(false),
        limit: owners::TASKS_LISTED,
        ..TaskQuery::default()
    };
    let tasks = state.store.tasks(workspace.id, query).await?;
    Ok(Json(owners::details(&state, &workspace, tasks).await?.into_iter().map(Into::into).collect()))
}

/// Creates a task.
#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = TaskBody,
    responses((status = 201, body = TaskView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn create_task(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    headers: HeaderMap,
    Body(body): Body<TaskBody>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let me = acting_user(&state, workspace.id, &headers).await?;
    let task = owners::create_task(&state, &workspace, &body.input()?, me.map(|user| user.id)).await?;
    Ok((StatusCode::CREATED, Json(task.into())))
}

async fn shown(state: &AppState, workspace: &Workspace, id: i64) -> ApiResult<TaskView> {
    let task = owners::find_task(state, workspace.id, id).await?;
    Ok(owners::detail(state, workspace, task).await?.into())
}

/// One task.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks", params(("id" = i64, Path)),
    responses((status = 200, body = TaskView), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn task(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<TaskView>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    Ok(Json(shown(&state, &workspace, id).await?))
}

/// Replaces a task's note, due day, contact or account, and assignee.
#[utoipa::path(put, path = "/api/tasks/{id}", tag = "tasks", params(("id" = i64, Path)), request_body = TaskBody,
    responses((status = 200, body = TaskView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn update_task(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Body(body): Body<TaskBody>,
) -> ApiResult<Json<TaskView>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    owners::find_task(&state, workspace.id, id).await?;
    let me = acting_user(&state, workspace.id, &headers).await?;
    let spec = owners::task_spec(&state, workspace.id, &body.input()?, me.map(|user| user.id)).await?;
    let task = state
        .store
        .update_task(workspace.id, id, spec)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no task {id} in this workspace")))?;
    Ok(Json(owners::detail(&state, &workspace, task).await?.into()))
}

/// Deletes a task.
#[utoipa::path(delete, path = "/api/tasks/{id}", tag = "tasks", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)), security(("secret_key" = [])))]
pub async fn delete_task(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    if !state.store.delete_task(key.workspace_id, id).await? {
        return Err(ApiError::not_found(format!("no task {id} in this workspace")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Marks a task done.
#[utoipa::path(post, path = "/api/tasks/{id}/complete", tag = "tasks", params(("id" = i64, Path)),
    responses((status = 200, body = TaskView), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn complete_task(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<TaskView>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    Ok(Json(owners::set_done(&state, &workspace, id, true).await?.into()))
}

/// Opens a done task again.
#[utoipa::path(post, path = "/api/tasks/{id}/reopen", tag = "tasks", params(("id" = i64, Path)),
    responses((status = 200, body = TaskView), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn reopen_task(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<TaskView>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    Ok(Json(owners::set_done(&state, &workspace, id, false).await?.into()))
}

/// Whose Today list.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct TodayParams {
    /// The user (email or id); else the one the `Kith-User` header names.
    pub user: Option<String>,
}

/// One line of the Today list.
#[derive(Debug, Serialize, ToSchema)]
pub struct TodayLine {
    /// `task`, `account` or `contact`.
    pub kind: &'static str,
    /// What a person reads: the task's note, the account's or contact's name.
    pub title: String,
    /// Why it is listed: `overdue since 2024-06-28`, `due today`, `at risk (32)`, `due a touch
    /// since 2024-06-20`.
    pub why: String,
    /// The task, for `task`.
    pub task: Option<TaskView>,
    /// The account's groupId, for `account`.
    pub group_id: Option<String>,
    /// The contact's id, for `contact`.
    pub contact_id: Option<i64>,
}

/// What a user has to do today, in one list: their open tasks due today or before (oldest
/// first), their accounts at risk (lowest score first), their contacts due a touch (most
/// overdue first).
#[utoipa::path(get, path = "/api/today", tag = "tasks", params(TodayParams),
    responses((status = 200, body = Vec<TodayLine>), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn today(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    headers: HeaderMap,
    Query(params): Query<TodayParams>,
) -> ApiResult<Json<Vec<TodayLine>>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let user = match params.user.as_deref().filter(|text| !text.trim().is_empty()) {
        Some(text) => owners::find_user(&state, workspace.id, text, "user").await?,
        None => acting_user(&state, workspace.id, &headers).await?.ok_or_else(|| {
            ApiError::bad_request(
                "owner_me_needs_user",
                "user",
                "whose day? send `?user=<email>` or the header `Kith-User: <your email>`",
            )
        })?,
    };
    let now = state.clock.now();
    let tz = workspace.tz();
    let items = owners::today(&state, &workspace, &user, now).await?;
    Ok(Json(items.into_iter().map(|item| line(item, &tz)).collect()))
}

fn line(item: TodayItem, tz: &jiff::tz::TimeZone) -> TodayLine {
    match item {
        TodayItem::Task(task) => TodayLine {
            kind: "task",
            title: task.task.note.clone(),
            why: if task.overdue { format!("overdue since {}", task.due) } else { "due today".to_owned() },
            task: Some((*task).into()),
            group_id: None,
            contact_id: None,
        },
        TodayItem::Account { account, health, reason } => TodayLine {
            kind: "account",
            title: account.name.clone().unwrap_or_else(|| account.group_id.clone()),
            why: match reason {
                kith_core::health::AtRisk::Band => format!("at risk ({})", health.score),
                kith_core::health::AtRisk::Dropped { from, .. } => format!("fell from {from} to {}", health.score),
            },
            task: None,
            group_id: Some(account.group_id),
            contact_id: None,
        },
        TodayItem::Contact(contact) => TodayLine {
            kind: "contact",
            title: contact.name.clone().unwrap_or_else(|| contact.email.clone()),
            why: match contact.due_at {
                Some(due) => format!("due a touch since {}", tz.to_datetime(due).date()),
                None => "due a touch".to_owned(),
            },
            task: None,
            group_id: None,
            contact_id: Some(contact.id),
        },
    }
}
