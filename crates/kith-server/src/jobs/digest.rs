//! The daily digest: at the workspace's chosen local time, who is due a touch and who is losing
//! touch, by webhook and/or email. Claiming the day first makes it go once, whichever node gets
//! there.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use jiff::civil::Time;
use jiff::Timestamp;
use kith_store::{NewDelivery, StoreError, Workspace};
use serde_json::json;

use crate::service::contacts;
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

/// Queues one workspace's digest if its time has come and nobody queued it today.
async fn queue_one(state: &AppState, workspace: &Workspace, now: Timestamp) -> Result<bool, StoreError> {
    let Some(time) = workspace.digest.time.as_deref().and_then(|t| t.parse::<Time>().ok()) else {
        return Ok(false);
    };
    if workspace.digest.webhook_url.is_none() && workspace.digest.email.is_none() {
        return Ok(false);
    }
    let local = now.to_zoned(workspace.tz());
    if local.time() < time {
        return Ok(false);
    }
    let today = kith_core::time::days_since_epoch(local.date());
    if !state.store.claim_digest(workspace.id, today).await? {
        return Ok(false);
    }
    let due = state.store.contacts(workspace.id, contacts::due(now, None, LISTED)).await?.items;
    let losing = state.store.contacts(workspace.id, contacts::losing_touch(now, None, LISTED)).await?.items;
    let line = |c: &kith_store::Contact| match &c.name {
        Some(name) => format!("• {name} <{}>", c.email),
        None => format!("• {}", c.email),
    };
    let section = |title: &str, contacts: &[kith_store::Contact]| {
        if contacts.is_empty() {
            format!("{title}: nobody.")
        } else {
            format!("{title}:\n{}", contacts.iter().map(line).collect::<Vec<_>>().join("\n"))
        }
    };
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
