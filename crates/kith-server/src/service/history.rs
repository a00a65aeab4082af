//! Rebuilding a workspace's history from its stored events ("reprojection"): asked for from
//! the API, the settings page or `kith reproject`, and by the store itself when a workspace's
//! time zone changes. The background jobs, or `kith reproject`, run it step by step.

use std::time::{Duration, Instant};

use kith_store::{Reprojection, ReprojectionStep, Store, StoreError, WorkspaceId};

/// Contacts rebuilt per step, each step one transaction: large enough to go fast, small
/// enough that ingest and reads wait at most a fraction of a second behind it.
pub const STEP_CONTACTS: usize = 1_000;

/// Why a reprojection asked for by a person runs.
pub const ASKED_FOR: &str = "asked for";

/// Asks for the workspace's history to be rebuilt from its stored events.
pub async fn request(store: &dyn Store, workspace: WorkspaceId) -> Result<Reprojection, StoreError> {
    store.request_reprojection(workspace, ASKED_FOR).await
}

/// Runs reprojection steps, of every workspace that has one under way, until none is left or
/// `budget` has passed (the background jobs share their time with other passes); reports each
/// step to `on_step`. Returns the contacts rebuilt.
pub async fn run(
    store: &dyn Store,
    budget: Option<Duration>,
    mut on_step: impl FnMut(&ReprojectionStep),
) -> Result<u64, StoreError> {
    let started = Instant::now();
    let mut contacts = 0;
    while let Some(step) = store.reproject_step(STEP_CONTACTS).await? {
        contacts += step.contacts;
        on_step(&step);
        if budget.is_some_and(|budget| started.elapsed() >= budget) {
            break;
        }
    }
    Ok(contacts)
}

/// How far a reprojection has come, in percent of the workspace's contacts.
pub fn percent_done(reprojection: &Reprojection) -> u8 {
    if !reprojection.running() {
        return 100;
    }
    let total = reprojection.contacts_total.max(1);
    // Contacts created since it was asked for are rebuilt too: never show more than 99 % early.
    (reprojection.contacts_done.saturating_mul(100) / total).min(99) as u8
}
