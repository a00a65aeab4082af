//! Background work: pending-event expiry, the nudge passes (bucket changes, due dates,
//! waiting firings), daily digests and outbound deliveries.
//!
//! Each pass is a plain function of the state and its clock, so tests run them on demand
//! with [`run_pending`] instead of sleeping; [`start`] only schedules them. Every pass is
//! safe to run on several nodes at once: the store claims rows before acting on them.

pub mod delivery;
pub mod digest;

use std::time::Duration;

use kith_store::{JobReport, StoreError};
use serde::Serialize;

use crate::AppState;

/// How often the scheduler wakes up.
const TICK: Duration = Duration::from_secs(1);
/// Every so many ticks, the passes that scan contacts run.
const NUDGE_EVERY_TICKS: u64 = 15;
/// Every so many ticks, digests are checked.
const DIGEST_EVERY_TICKS: u64 = 60;
/// Every so many ticks, pending events past their retention are deleted.
const EXPIRY_EVERY_TICKS: u64 = 3600;
/// Firings acted on per pass.
const FIRINGS_PER_PASS: usize = 500;

/// What one run of every pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// Pending events deleted.
    pub expired: u64,
    /// Bucket changes, due contacts and firings.
    pub nudges: JobReport,
    /// Digests queued.
    pub digests: u64,
    /// Deliveries attempted.
    pub deliveries: delivery::Report,
}

/// Starts the scheduler; abort the handle to stop it.
pub fn start(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick: u64 = 0;
        loop {
            interval.tick().await;
            if tick.is_multiple_of(EXPIRY_EVERY_TICKS) {
                log_failure("pending-event expiry", expire_pending(&state).await);
            }
            if tick.is_multiple_of(NUDGE_EVERY_TICKS) {
                log_failure("nudges", nudges(&state).await);
            }
            if tick.is_multiple_of(DIGEST_EVERY_TICKS) {
                log_failure("digests", digest::queue_due(&state).await);
            }
            log_failure("deliveries", delivery::deliver_due(&state).await);
            tick += 1;
        }
    })
}

fn log_failure<T>(pass: &str, result: Result<T, StoreError>) {
    if let Err(error) = result {
        tracing::warn!(%error, pass, "background pass failed; it runs again at its next interval");
    }
}

/// Runs every pass once, as of the state's clock, until nothing is left to do now.
pub async fn run_pending(state: &AppState) -> Result<Report, StoreError> {
    let mut report = Report { expired: expire_pending(state).await?, ..Report::default() };
    report.nudges = nudges(state).await?;
    report.digests = digest::queue_due(state).await?;
    loop {
        let pass = delivery::deliver_due(state).await?;
        if pass.attempted() == 0 {
            break;
        }
        report.deliveries.add(&pass);
    }
    Ok(report)
}

/// Deletes pending events older than each workspace's retention.
pub async fn expire_pending(state: &AppState) -> Result<u64, StoreError> {
    let deleted = state.store.expire_pending(state.clock.now()).await?;
    if deleted > 0 {
        tracing::info!(deleted, "expired pending events of users never identified");
    }
    Ok(deleted)
}

/// Records bucket changes and due contacts, then acts on the firings whose time has come.
pub async fn nudges(state: &AppState) -> Result<JobReport, StoreError> {
    let now = state.clock.now();
    let mut report = state.store.evaluate_contacts(now).await?;
    loop {
        let pass = state.store.fire_due(now, FIRINGS_PER_PASS).await?;
        report.fired += pass.fired;
        report.cancelled += pass.cancelled;
        if pass.fired + pass.cancelled < FIRINGS_PER_PASS as u64 {
            break;
        }
    }
    if report.fired + report.cancelled + report.bucket_changes > 0 {
        tracing::info!(?report, "nudge pass");
    }
    Ok(report)
}
