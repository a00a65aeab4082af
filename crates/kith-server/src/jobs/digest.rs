//! The daily digest: at the workspace's chosen local time, who is due a touch and who is losing
//! touch, by webhook and/or email. Claiming the day first makes it go once, whichever node gets
//! there.
//!
//! Owned contacts and accounts go to their owners instead: at the same time, each user who owns
//! something or has tasks due gets their own digest by email (their contacts due a touch or
//! losing touch, their accounts at risk, their tasks due), claimed once per user and day. The
//! workspace's digest keeps what nobody owns.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use jiff::civil::Time;
use jiff::Timestamp;
use kith_store::{Contact, NewDelivery, OwnerFilter, StoreError, TaskQuery, User, Workspace};
use serde_json::json;

use crate::service::{contacts, owners};
use crate::AppState;

/// Contacts listed per section.
const LISTED: usize = 20;

/// Queues the digests whose time has come today; returns how many. A workspace whose digest
/// fails (or panics) is logged and skipped: the others still get theirs.
pub async fn queue_due(state: &AppState) -> Result<u64, StoreError> {
    let now = state.clock.now();
    let mut queued = 0;
    for workspace in state.store.workspaces().await? {
        match AssertUnwindSafe(queue_one(state, &workspace, now)).catch_unwind().await {
            Ok(Ok(true)) => queued += 1,
            Ok(Ok(false)) => {}
            Ok(Err(error)) => tracing::warn!(%error, workspace = workspace.id, "the digest could not be queued"),
            Err(_) => tracing::error!(workspace = workspace.id, "queuing the digest panicked"),
        }
    }
    Ok(queued)
}

/// Queues one workspace's digest if its time has come and nobody queued it today, and the
/// digests of its owners; returns whether the workspace's own was queued.
async fn queue_one(state: &AppState, workspace: &Workspace, now: Timestamp) -> Result<bool, StoreError> {
    let Some(time) = workspace.digest.time.as_deref().and_then(|t| t.parse::<Time>().ok()) else {
        return Ok(false);
    };
    let local = now.to_zoned(workspace.tz());
    if local.time() < time {
        return Ok(false);
    }
    let today = kith_core::time::days_since_epoch(local.date());
    for user in state.store.users(workspace.id).await? {
        queue_owner(state, workspace, &user, today, now).await?;
    }
    if workspace.digest.webhook_url.is_none() && workspace.digest.email.is_none() {
        return Ok(false);
    }
    if !state.store.claim_digest(workspace.id, today).await? {
        return Ok(false);
    }
    let (due, losing) = contacts_for(state, workspace, OwnerFilter::Nobody, now).await?;
    let text = format!(
        "kith digest for {} — {}\n\n{}\n\n{}",
        workspace.name,
        local.date(),
        section("Due a touch", &due),
        section("Losing touch", &losing)
    );
    let people = |contacts: &[kith_store::Contact]| {
        contacts.iter().map(|c| json!({"id": c.id, "email": c.email, "name": c.name})).collect::<Vec<_>>()
    };
    let mut deliveries = Vec::new();
    if let Some(url) = &workspace.digest.webhook_url {
        deliveries.push(NewDelivery {
            kind: "webhook".into(),
            target: url.clone(),
            payload: json!({"text": text, "day": local.date().to_string(), "due": people(&due), "losing_touch": people(&losing)}),
        });
    }
    if let Some(email) = &workspace.digest.email {
        deliveries.push(NewDelivery {
            kind: "email".into(),
            target: email.clone(),
            payload: json!({"subject": format!("kith digest — {}", local.date()), "body": text}),
        });
    }
    state.store.enqueue(workspace.id, deliveries, now).await?;
    Ok(true)
}

/// The contacts due a touch and losing touch that `owner` keeps.
async fn contacts_for(
    state: &AppState,
    workspace: &Workspace,
    owner: OwnerFilter,
    now: Timestamp,
) -> Result<(Vec<Contact>, Vec<Contact>), StoreError> {
    let mut due = contacts::due(now, None, LISTED);
    due.owner = Some(owner);
    let mut losing = contacts::losing_touch(now, None, LISTED);
    losing.owner = Some(owner);
    Ok((state.store.contacts(workspace.id, due).await?.items, state.store.contacts(workspace.id, losing).await?.items))
}

fn line(contact: &Contact) -> String {
    match &contact.name {
        Some(name) => format!("• {name} <{}>", contact.email),
        None => format!("• {}", contact.email),
    }
}

fn section(title: &str, contacts: &[Contact]) -> String {
    if contacts.is_empty() {
        format!("{title}: nobody.")
    } else {
        format!("{title}:\n{}", contacts.iter().map(line).collect::<Vec<_>>().join("\n"))
    }
}

/// Queues a user's own digest of `today` by email, once: what they own that needs them, and
/// their tasks due. Nothing is sent on a day they have nothing.
async fn queue_owner(
    state: &AppState,
    workspace: &Workspace,
    user: &User,
    today: i32,
    now: Timestamp,
) -> Result<(), StoreError> {
    if !state.store.claim_owner_digest(user.id, today).await? {
        return Ok(());
    }
    let (due, losing) = contacts_for(state, workspace, OwnerFilter::User(user.id), now).await?;
    let accounts = owners::owned_at_risk(state, workspace, OwnerFilter::User(user.id), now).await?;
    let query = TaskQuery {
        assignee: Some(user.id),
        due_by: Some(today),
        open_only: true,
        limit: owners::TASKS_LISTED,
        ..TaskQuery::default()
    };
    let tasks = owners::details(state, workspace, state.store.tasks(workspace.id, query).await?).await?;
    if due.is_empty() && losing.is_empty() && accounts.is_empty() && tasks.is_empty() {
        return Ok(());
    }
    let mut parts = vec![format!("kith digest for {} — {}", user.email, kith_core::time::date_of_day_key(today))];
    if !tasks.is_empty() {
        let lines: Vec<String> = tasks
            .iter()
            .map(|task| {
                let about = match (&task.contact, &task.account) {
                    (Some(contact), _) => contact.name.clone().unwrap_or_else(|| contact.email.clone()),
                    (None, Some(account)) => account.name.clone().unwrap_or_else(|| account.group_id.clone()),
                    (None, None) => String::new(),
                };
                format!("• {} — {about} (due {})", task.task.note, task.due)
            })
            .collect();
        parts.push(format!("Tasks due:\n{}", lines.join("\n")));
    }
    if !accounts.is_empty() {
        let lines: Vec<String> = accounts
            .iter()
            .map(|(account, health, _)| {
                format!(
                    "• {} — {} ({})",
                    account.name.as_deref().unwrap_or(&account.group_id),
                    health.score,
                    health.band.label()
                )
            })
            .collect();
        parts.push(format!("Accounts at risk:\n{}", lines.join("\n")));
    }
    parts.push(section("Due a touch", &due));
    parts.push(section("Losing touch", &losing));
    let delivery = NewDelivery {
        kind: "email".into(),
        target: user.email.clone(),
        payload: json!({
            "subject": format!("kith: your day — {}", kith_core::time::date_of_day_key(today)),
            "body": parts.join("\n\n"),
        }),
    };
    state.store.enqueue(workspace.id, vec![delivery], now).await
}
