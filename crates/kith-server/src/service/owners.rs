//! Owners and follow-ups: who among the workspace's users looks after an account or a contact,
//! follow-up tasks on either, and a user's Today list (their tasks due, their contacts due a
//! touch and their accounts at risk).

use jiff::civil::Date;
use jiff::Timestamp;
use kith_core::health::{AtRisk, Health};
use kith_core::identity::normalize_email;
use kith_core::time::{date_of_day_key, day_key, days_since_epoch};
use kith_store::{
    Account, Contact, OwnerFilter, OwnerSubject, StoreError, Task, TaskQuery, TaskSpec, User, Workspace, WorkspaceId,
};

use crate::error::{ApiError, ApiResult};
use crate::service::contacts::{self, find_contact};
use crate::service::health;
use crate::AppState;

/// The longest note a task may hold.
pub const MAX_NOTE_CHARS: usize = 2000;
/// Tasks listed at most.
pub const TASKS_LISTED: usize = 500;
/// Due contacts a Today list or a digest shows at most.
pub const DUE_LISTED: usize = 50;

/// The user named by `text` (an id or an email) among the workspace's users; a 400 naming
/// `field` otherwise (a user of another workspace is as unknown as one that does not exist).
pub async fn find_user(state: &AppState, workspace: WorkspaceId, text: &str, field: &str) -> ApiResult<User> {
    let text = text.trim();
    let users = state.store.users(workspace).await?;
    // Users are stored by their normalised email; the first user of a node may have an address
    // normalisation does not take (`admin@localhost`), found as written, in any case.
    let email = normalize_email(text).unwrap_or_else(|| text.to_lowercase());
    users.into_iter().find(|user| text.parse::<i64>().is_ok_and(|id| id == user.id) || email == user.email).ok_or_else(
        || {
            ApiError::bad_request(
                "unknown_user",
                field,
                format!("{text:?} is not a user of this workspace; name one by its id or email"),
            )
        },
    )
}

/// Reads an `owner` filter: `me` (the user `me` names, who must be given), `none`, or a user's
/// id or email.
pub async fn owner_filter(
    state: &AppState,
    workspace: WorkspaceId,
    text: &str,
    me: Option<&User>,
) -> ApiResult<OwnerFilter> {
    match text.trim() {
        "me" => me.map(|user| OwnerFilter::User(user.id)).ok_or_else(|| {
            ApiError::bad_request(
                "owner_me_needs_user",
                "owner",
                "owner=me needs to know who you are: send the header `Kith-User: <your email>`",
            )
        }),
        "none" => Ok(OwnerFilter::Nobody),
        other => Ok(OwnerFilter::User(find_user(state, workspace, other, "owner").await?.id)),
    }
}

/// Whether `filter` keeps an item owned by `owner`.
pub fn keeps(filter: OwnerFilter, owner: Option<i64>) -> bool {
    match filter {
        OwnerFilter::User(user) => owner == Some(user),
        OwnerFilter::Nobody => owner.is_none(),
    }
}

/// Sets (`user` names one of the workspace's users) or clears the owner of the account
/// `group_id`; returns the owner.
pub async fn set_account_owner(
    state: &AppState,
    workspace: WorkspaceId,
    group_id: &str,
    user: Option<&str>,
) -> ApiResult<Option<User>> {
    let account = find_account(state, workspace, group_id).await?;
    set_owner(state, workspace, OwnerSubject::Account, account.id, user).await
}

/// Sets or clears the owner of the contact named by `contact` (id or email); returns the owner.
pub async fn set_contact_owner(
    state: &AppState,
    workspace: WorkspaceId,
    contact: &str,
    user: Option<&str>,
) -> ApiResult<Option<User>> {
    let contact = find_contact(state, workspace, contact).await?;
    set_owner(state, workspace, OwnerSubject::Contact, contact.id, user).await
}

async fn set_owner(
    state: &AppState,
    workspace: WorkspaceId,
    subject: OwnerSubject,
    id: i64,
    user: Option<&str>,
) -> ApiResult<Option<User>> {
    let user = match user.map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => Some(find_user(state, workspace, text, "user").await?),
        None => None,
    };
    state.store.set_owner(workspace, subject, id, user.as_ref().map(|user| user.id)).await?;
    Ok(user)
}

/// The owner of an account or a contact, as a user.
pub async fn owner_of(
    state: &AppState,
    workspace: WorkspaceId,
    subject: OwnerSubject,
    id: i64,
) -> Result<Option<User>, StoreError> {
    let Some(owner) = state.store.owner(workspace, subject, id).await? else { return Ok(None) };
    Ok(state.store.users(workspace).await?.into_iter().find(|user| user.id == owner))
}

/// The account `group_id`, or 404.
pub async fn find_account(state: &AppState, workspace: WorkspaceId, group_id: &str) -> ApiResult<Account> {
    state
        .store
        .account(workspace, group_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no account {group_id:?} in this workspace")))
}

/// A task as a person writes it: what to do, the day it is due (`YYYY-MM-DD`), the contact
/// (id or email) or account (groupId) it is about, and who is to do it (id or email).
#[derive(Debug, Clone, Default)]
pub struct TaskInput {
    /// What to do.
    pub note: String,
    /// `YYYY-MM-DD`, in the workspace's time zone.
    pub due: String,
    /// A contact's id or email.
    pub contact: Option<String>,
    /// An account's groupId.
    pub account: Option<String>,
    /// A user's id or email.
    pub assignee: Option<String>,
}

/// A task with what it is about, as both front ends show it.
#[derive(Debug, Clone)]
pub struct TaskDetail {
    /// The task.
    pub task: Task,
    /// The day it is due.
    pub due: Date,
    /// Due before today and not done.
    pub overdue: bool,
    /// The contact it is about.
    pub contact: Option<Contact>,
    /// The account it is about.
    pub account: Option<Account>,
    /// Who is to do it.
    pub assignee: Option<User>,
}

/// Checks a task and finds what it names. Without an assignee, the task goes to the owner of
/// its contact or account, else to `default_assignee` (the user who wrote it in the web app).
pub async fn task_spec(
    state: &AppState,
    workspace: WorkspaceId,
    input: &TaskInput,
    default_assignee: Option<i64>,
) -> ApiResult<TaskSpec> {
    let note = input.note.trim();
    if note.is_empty() || note.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::bad_request(
            "invalid_task",
            "note",
            format!("a task needs a note of 1 to {MAX_NOTE_CHARS} characters"),
        ));
    }
    let due =
        input.due.trim().parse::<Date>().map_err(|_| {
            ApiError::bad_request("invalid_task", "due", "`due` is the day the task is due, as YYYY-MM-DD")
        })?;
    let contact = match input.contact.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => Some(find_contact(state, workspace, text).await?),
        None => None,
    };
    let account = match input.account.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
        Some(group_id) => Some(find_account(state, workspace, group_id).await?),
        None => None,
    };
    if contact.is_none() && account.is_none() {
        return Err(ApiError::bad_request(
            "invalid_task",
            "contact",
            "a task is on a contact (`contact`: its id or email) or an account (`account`: its groupId)",
        ));
    }
    let assignee = match input.assignee.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => Some(find_user(state, workspace, text, "assignee").await?.id),
        None => {
            let contact_owner = match &contact {
                Some(contact) => state.store.owner(workspace, OwnerSubject::Contact, contact.id).await?,
                None => None,
            };
            let account_owner = match &account {
                Some(account) => state.store.owner(workspace, OwnerSubject::Account, account.id).await?,
                None => None,
            };
            contact_owner.or(account_owner).or(default_assignee)
        }
    };
    Ok(TaskSpec {
        contact_id: contact.map(|contact| contact.id),
        account_id: account.map(|account| account.id),
        assignee_id: assignee,
        note: note.to_owned(),
        due_day: days_since_epoch(due),
    })
}

/// Creates a task.
pub async fn create_task(
    state: &AppState,
    workspace: &Workspace,
    input: &TaskInput,
    default_assignee: Option<i64>,
) -> ApiResult<TaskDetail> {
    let spec = task_spec(state, workspace.id, input, default_assignee).await?;
    let task = state.store.create_task(workspace.id, spec).await?;
    Ok(detail(state, workspace, task).await?)
}

/// The task `id` of the workspace, or 404.
pub async fn find_task(state: &AppState, workspace: WorkspaceId, id: i64) -> ApiResult<Task> {
    state.store.task(workspace, id).await?.ok_or_else(|| ApiError::not_found(format!("no task {id} in this workspace")))
}

/// Marks a task done or open again.
pub async fn set_done(state: &AppState, workspace: &Workspace, id: i64, done: bool) -> ApiResult<TaskDetail> {
    let task = state
        .store
        .set_task_done(workspace.id, id, done)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no task {id} in this workspace")))?;
    Ok(detail(state, workspace, task).await?)
}

/// A task with its contact, account and assignee.
pub async fn detail(state: &AppState, workspace: &Workspace, task: Task) -> Result<TaskDetail, StoreError> {
    let mut details = details(state, workspace, vec![task]).await?;
    details.pop().ok_or_else(|| StoreError::NotFound("task".into()))
}

/// Tasks with their contacts, accounts and assignees.
pub async fn details(state: &AppState, workspace: &Workspace, tasks: Vec<Task>) -> Result<Vec<TaskDetail>, StoreError> {
    let today = day_key(state.clock.now(), &workspace.tz());
    let users = state.store.users(workspace.id).await?;
    let mut accounts: Option<Vec<Account>> = None;
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        let contact = match task.contact_id {
            Some(id) => state.store.contact(workspace.id, kith_store::ContactKey::Id(id)).await?,
            None => None,
        };
        let account = match task.account_id {
            Some(id) => {
                if accounts.is_none() {
                    accounts = Some(state.store.accounts(workspace.id, health::ACCOUNTS_SCORED).await?);
                }
                accounts.as_ref().and_then(|accounts| accounts.iter().find(|account| account.id == id).cloned())
            }
            None => None,
        };
        let assignee = task.assignee_id.and_then(|id| users.iter().find(|user| user.id == id).cloned());
        out.push(TaskDetail {
            due: date_of_day_key(task.due_day),
            overdue: task.done_at.is_none() && task.due_day < today,
            task,
            contact,
            account,
            assignee,
        });
    }
    Ok(out)
}

/// One line of a user's Today list.
#[derive(Debug, Clone)]
pub enum TodayItem {
    /// A task of theirs due today or before.
    Task(Box<TaskDetail>),
    /// An account of theirs at risk, and why.
    Account {
        /// The account.
        account: Box<Account>,
        /// Its health now.
        health: Box<Health>,
        /// At risk by its band, or by a fall.
        reason: AtRisk,
    },
    /// A contact of theirs due a touch.
    Contact(Box<Contact>),
}

/// What `user` has to do today, in one list: their open tasks due today or before (oldest due
/// first), then the accounts they own that are at risk (lowest score first), then the contacts
/// they own that are due a touch (most overdue first).
pub async fn today(
    state: &AppState,
    workspace: &Workspace,
    user: &User,
    now: Timestamp,
) -> Result<Vec<TodayItem>, StoreError> {
    let mut items = Vec::new();
    let day = day_key(now, &workspace.tz());
    let query = TaskQuery {
        assignee: Some(user.id),
        due_by: Some(day),
        open_only: true,
        limit: TASKS_LISTED,
        ..TaskQuery::default()
    };
    let tasks = state.store.tasks(workspace.id, query).await?;
    items.extend(details(state, workspace, tasks).await?.into_iter().map(|task| TodayItem::Task(Box::new(task))));
    let mut risky = owned_at_risk(state, workspace, OwnerFilter::User(user.id), now).await?;
    risky.sort_by_key(|(account, health, _)| (health.score, account.id));
    items.extend(risky.into_iter().map(|(account, health, reason)| TodayItem::Account {
        account: Box::new(account),
        health: Box::new(health),
        reason,
    }));
    let mut query = contacts::due(now, None, DUE_LISTED);
    query.owner = Some(OwnerFilter::User(user.id));
    let due = state.store.contacts(workspace.id, query).await?.items;
    items.extend(due.into_iter().map(|contact| TodayItem::Contact(Box::new(contact))));
    Ok(items)
}

/// The accounts at risk at `now` that `filter` keeps.
pub async fn owned_at_risk(
    state: &AppState,
    workspace: &Workspace,
    filter: OwnerFilter,
    now: Timestamp,
) -> Result<Vec<(Account, Health, AtRisk)>, StoreError> {
    let owners = state.store.owners(workspace.id, OwnerSubject::Account).await?;
    let owner = |id: i64| owners.iter().find(|(account, _)| *account == id).map(|(_, user)| *user);
    let found = health::at_risk(state, workspace, now).await?;
    Ok(found.into_iter().filter(|(account, _, _)| keeps(filter, owner(account.id))).collect())
}
