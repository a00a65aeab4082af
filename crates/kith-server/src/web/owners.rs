//! Owners and follow-ups in the web app: the owner and tasks cards of the account and contact
//! pages with their forms, completing and reopening a task, and the Today page.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::tz::TimeZone;
use kith_core::health::AtRisk;
use kith_core::time::{date_of_day_key, day_key};
use kith_store::{OwnerSubject, TaskQuery, User};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, AlertKind, Nav};
use super::session::{Posted, Signed};
use super::{WebError, WebResult};
use crate::error::ApiError;
use crate::service::owners::{self, TaskDetail, TaskInput, TodayItem};
use crate::AppState;

/// Tasks a contact or account page shows.
const TASKS_SHOWN: usize = 50;

/// What the owner and tasks cards of a page show.
pub struct FollowUps {
    /// The workspace's users, to choose an owner or an assignee from.
    pub users: Vec<User>,
    /// The owner.
    pub owner: Option<User>,
    /// The tasks on the contact or account, open first.
    pub tasks: Vec<TaskDetail>,
}

/// The owner and tasks of an account or contact (`subject`, by its id).
pub async fn follow_ups(state: &AppState, signed: &Signed, subject: OwnerSubject, id: i64) -> WebResult<FollowUps> {
    let workspace = &signed.workspace;
    let users = state.store.users(workspace.id).await?;
    let owner_id = state.store.owner(workspace.id, subject, id).await?;
    let owner = owner_id.and_then(|owner| users.iter().find(|user| user.id == owner).cloned());
    let mut query = TaskQuery { limit: TASKS_SHOWN, ..TaskQuery::default() };
    match subject {
        OwnerSubject::Account => query.account = Some(id),
        OwnerSubject::Contact => query.contact = Some(id),
    }
    let tasks = state.store.tasks(workspace.id, query).await?;
    let tasks = owners::details(state, workspace, tasks).await?;
    Ok(FollowUps { users, owner, tasks })
}

/// A page's `?task_error=` and `?owner_error=`: what a refused form said.
#[derive(Debug, Default, Deserialize)]
pub struct FormErrors {
    /// The task form's.
    pub task_error: Option<String>,
    /// The owner form's.
    pub owner_error: Option<String>,
}

/// The owner card: who owns it, and a form to change that. `base` is the page's path.
pub fn owner_card(signed: &Signed, base: &str, shown: &FollowUps, error: Option<&str>) -> Markup {
    html! {
        section.card #owner aria-labelledby="owner-title" {
            h2 #owner-title { "Owner" }
            @if let Some(message) = error { (layout::alert(AlertKind::Error, message)) }
            p.small {
                @match &shown.owner {
                    Some(owner) => { "Owned by " strong.owner-name { (owner.email) } "." }
                    None => { "Nobody owns it yet." }
                }
            }
            form.inline-form method="post" action={ (base) "/owner" } {
                (layout::csrf(signed))
                label for="owner-user" { "Owner" }
                select #owner-user name="user" {
                    option value="" { "Nobody" }
                    @for user in &shown.users {
                        option value=(user.id) selected[shown.owner.as_ref().is_some_and(|owner| owner.id == user.id)] { (user.email) }
                    }
                }
                button.button type="submit" { "Save" }
            }
        }
    }
}

/// The tasks card: the tasks, each with a button to complete or reopen it, and a form to add one.
pub fn tasks_card(signed: &Signed, base: &str, shown: &FollowUps, error: Option<&str>, tz: &TimeZone) -> Markup {
    html! {
        section.card #tasks aria-labelledby="tasks-title" {
            h2 #tasks-title { "Follow-ups" }
            @if let Some(message) = error { (layout::alert(AlertKind::Error, message)) }
            @if shown.tasks.is_empty() {
                p.muted { "No follow-ups yet." }
            } @else {
                ul.plain.tasks {
                    @for task in &shown.tasks { (task_line(signed, task, base, tz, false)) }
                }
            }
            h3 { "Add a follow-up" }
            form.stack method="post" action={ (base) "/tasks" } {
                (layout::csrf(signed))
                div.field {
                    label for="task-note" { "What to do" }
                    input #task-note type="text" name="note" required maxlength=(owners::MAX_NOTE_CHARS)
                        placeholder="Call about the renewal";
                }
                div.row {
                    div.field {
                        label for="task-due" { "Due" }
                        input #task-due type="date" name="due" required;
                    }
                    div.field {
                        label for="task-assignee" { "For" }
                        select #task-assignee name="assignee" {
                            @for user in &shown.users {
                                option value=(user.id) selected[user.id == signed.user.id] { (user.email) }
                            }
                        }
                    }
                }
                div { button.button.button-primary type="submit" { "Add follow-up" } }
            }
        }
    }
}

/// One task with its state and the button that changes it; `about` also names what it is on.
fn task_line(signed: &Signed, task: &TaskDetail, back: &str, tz: &TimeZone, about: bool) -> Markup {
    let done = task.task.done_at.is_some();
    html! {
        li.task data-task=(task.task.id) {
            span.task-note.task-done[done] { (task.task.note) }
            " "
            @if done {
                span.tag { "done" }
            } @else if task.overdue {
                span.tag.tag-band-at_risk { "overdue" }
            }
            span.sub {
                "due " (layout::day(task.due))
                @if let Some(assignee) = &task.assignee { " · for " (assignee.email) }
                @if let (true, Some(done_at)) = (done, task.task.done_at) { " · done " (layout::date(done_at, tz)) }
                @if about {
                    @if let Some(contact) = &task.contact {
                        " · " a href={ "/contacts/" (contact.id) } { (contact.name.as_deref().unwrap_or(&contact.email)) }
                    }
                    @if let Some(account) = &task.account {
                        " · " a href={ "/accounts/" (layout::encode_query(&account.group_id)) } { (account.name.as_deref().unwrap_or(&account.group_id)) }
                    }
                }
            }
            form.inline-form method="post" action={ "/tasks/" (task.task.id) (if done { "/reopen" } else { "/complete" }) } {
                (layout::csrf(signed))
                input type="hidden" name="back" value=(back);
                button.button.button-small type="submit" { (if done { "Reopen" } else { "Done" }) }
            }
        }
    }
}

/// The owner form.
#[derive(Debug, Default, Deserialize)]
pub struct OwnerForm {
    user: Option<String>,
}

/// The task form.
#[derive(Debug, Default, Deserialize)]
pub struct TaskForm {
    note: Option<String>,
    due: Option<String>,
    assignee: Option<String>,
}

/// Back to `base` with a refused form's message, or the error page for anything else.
fn refused(base: &str, section: &str, error: ApiError) -> WebResult<Response> {
    if error.status != axum::http::StatusCode::BAD_REQUEST {
        return Err(error.into());
    }
    let url = layout::link(base, &[(&format!("{section}_error") as &str, Some(&error.body.message))]);
    Ok(Redirect::to(&format!("{url}#{section}")).into_response())
}

/// `POST /accounts/{group_id}/owner`.
pub async fn set_account_owner(
    State(state): State<AppState>,
    Path(group_id): Path<String>,
    Posted(signed, form): Posted<OwnerForm>,
) -> WebResult<Response> {
    let base = format!("/accounts/{}", layout::encode_query(&group_id));
    match owners::set_account_owner(&state, signed.workspace.id, &group_id, form.user.as_deref()).await {
        Ok(_) => Ok(Redirect::to(&format!("{base}#owner")).into_response()),
        Err(error) => refused(&base, "owner", error),
    }
}

/// `POST /contacts/{id}/owner`.
pub async fn set_contact_owner(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(signed, form): Posted<OwnerForm>,
) -> WebResult<Response> {
    let contact = crate::service::contacts::find_contact(&state, signed.workspace.id, &id).await?;
    let base = format!("/contacts/{}", contact.id);
    match owners::set_contact_owner(&state, signed.workspace.id, &id, form.user.as_deref()).await {
        Ok(_) => Ok(Redirect::to(&format!("{base}#owner")).into_response()),
        Err(error) => refused(&base, "owner", error),
    }
}

async fn add_task(state: &AppState, signed: &Signed, base: &str, input: TaskInput) -> WebResult<Response> {
    match owners::create_task(state, &signed.workspace, &input, Some(signed.user.id)).await {
        Ok(_) => Ok(Redirect::to(&format!("{base}#tasks")).into_response()),
        Err(error) => refused(base, "task", error),
    }
}

/// `POST /accounts/{group_id}/tasks`.
pub async fn add_account_task(
    State(state): State<AppState>,
    Path(group_id): Path<String>,
    Posted(signed, form): Posted<TaskForm>,
) -> WebResult<Response> {
    let base = format!("/accounts/{}", layout::encode_query(&group_id));
    let input = TaskInput {
        note: form.note.unwrap_or_default(),
        due: form.due.unwrap_or_default(),
        account: Some(group_id),
        assignee: form.assignee,
        ..TaskInput::default()
    };
    add_task(&state, &signed, &base, input).await
}

/// `POST /contacts/{id}/tasks`.
pub async fn add_contact_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(signed, form): Posted<TaskForm>,
) -> WebResult<Response> {
    let contact = crate::service::contacts::find_contact(&state, signed.workspace.id, &id).await?;
    let base = format!("/contacts/{}", contact.id);
    let input = TaskInput {
        note: form.note.unwrap_or_default(),
        due: form.due.unwrap_or_default(),
        contact: Some(contact.id.to_string()),
        assignee: form.assignee,
        ..TaskInput::default()
    };
    add_task(&state, &signed, &base, input).await
}

/// The complete and reopen forms: the page to go back to.
#[derive(Debug, Default, Deserialize)]
pub struct DoneForm {
    back: Option<String>,
}

async fn set_done(state: &AppState, signed: &Signed, id: i64, done: bool, back: Option<&str>) -> WebResult<Response> {
    owners::set_done(state, &signed.workspace, id, done).await?;
    // Only a path of this site: a form cannot send anyone elsewhere.
    let back = back.filter(|back| back.starts_with('/') && !back.starts_with("//") && !back.contains('\\'));
    Ok(Redirect::to(back.unwrap_or("/today")).into_response())
}

/// `POST /tasks/{id}/complete`.
pub async fn complete(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, form): Posted<DoneForm>,
) -> WebResult<Response> {
    set_done(&state, &signed, id, true, form.back.as_deref()).await
}

/// `POST /tasks/{id}/reopen`.
pub async fn reopen(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, form): Posted<DoneForm>,
) -> WebResult<Response> {
    set_done(&state, &signed, id, false, form.back.as_deref()).await
}

/// `GET /today`: the signed-in user's tasks due, accounts at risk and contacts due, in one list.
pub async fn today(State(state): State<AppState>, signed: Signed) -> WebResult<Response> {
    let workspace = &signed.workspace;
    let now = state.clock.now();
    let tz = workspace.tz();
    let items = owners::today(&state, workspace, &signed.user, now).await?;
    let today = date_of_day_key(day_key(now, &tz));
    let body = html! {
        (layout::page_header("Today", Some(html! {
            "What needs you on " (layout::day(today)) ": your follow-ups due, then your accounts at risk, then your contacts due a touch."
        }), None))
        @if items.is_empty() {
            (layout::empty_state("Nothing for today", html! {
                p { "Follow-ups you add on a contact or an account appear here on their day, with the accounts and contacts you own when they need you. "
                    "Own some from the " a href="/accounts" { "accounts" } " and " a href="/contacts" { "contacts" } " pages." }
            }))
        } @else {
            ol.plain.today {
                @for item in &items {
                    @match item {
                        TodayItem::Task(task) => { (task_line(&signed, task, "/today", &tz, true)) }
                        TodayItem::Account { account, health, reason } => {
                            li.today-account {
                                span.tag { "account" } " "
                                a.strong href={ "/accounts/" (layout::encode_query(&account.group_id)) } { (account.name.as_deref().unwrap_or(&account.group_id)) }
                                span.sub {
                                    @match reason {
                                        AtRisk::Band => { "at risk, health " (health.score) }
                                        AtRisk::Dropped { from, .. } => { "health fell from " (from) " to " (health.score) }
                                    }
                                }
                            }
                        }
                        TodayItem::Contact(contact) => {
                            li.today-contact {
                                span.tag { "contact" } " "
                                a.strong href={ "/contacts/" (contact.id) } { (contact.name.as_deref().unwrap_or(&contact.email)) }
                                span.sub {
                                    "due a touch"
                                    @if let Some(due) = contact.due_at { " since " (layout::date(due, &tz)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&signed, Nav::Today, "Today", body))
}

/// The "mine" filter of the account and contact lists: `?owner=me`, the signed-in user's.
pub fn mine_toggle(path: &str, on: bool, pairs: &[(&str, Option<&str>)]) -> Markup {
    let mut with = pairs.to_vec();
    with.push(("owner", Some("me")));
    html! {
        @if on {
            a.chip aria-pressed="true" href=(layout::link(path, pairs)) { "Mine only ✓" }
        } @else {
            a.chip aria-pressed="false" href=(layout::link(path, &with)) { "Mine only" }
        }
    }
}

/// Whether a list's `owner` parameter asks for the signed-in user's; any other value is refused.
pub fn wants_mine(owner: Option<&str>) -> WebResult<bool> {
    match owner.filter(|owner| !owner.is_empty()) {
        None => Ok(false),
        Some("me") => Ok(true),
        Some(_) => Err(WebError::bad_request("owner is me, or left out")),
    }
}
