//! Background work: pending-event expiry, the nudge passes (bucket changes, due dates,
//! waiting firings), journeys (entries whose wait ended or whose contact did something), daily
//! digests, outbound deliveries, the record of account health and rebuilding history from the
//! stored events.
//!
//! Each pass is a plain function of the state and its clock, so tests run them on demand
//! with [`run_pending`] instead of sleeping; [`start`] only schedules them. Every pass is
//! safe to run on several nodes at once: the store claims rows before acting on them.

pub mod delivery;
pub mod digest;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use kith_store::journeys::ENTRIES_PER_PASS;
use kith_store::{JobReport, JourneyReport, StoreError};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Serialize;

use crate::metrics::{encode_reading, PassOutcome};
use crate::AppState;

/// How often the scheduler wakes up.
const TICK: Duration = Duration::from_secs(1);
/// Every so many ticks, the passes that scan contacts run.
const NUDGE_EVERY_TICKS: u64 = 15;
/// Every so many ticks, digests are checked.
const DIGEST_EVERY_TICKS: u64 = 60;
/// Every so many ticks, pending events past their retention are deleted.
const EXPIRY_EVERY_TICKS: u64 = 3600;
/// Every so many ticks, every account's health of the day is recorded. Hourly rather than
/// daily: each run replaces the day's record, so every workspace's day gets one whatever its
/// time zone, and a node that was down at midnight still records the day.
const HEALTH_EVERY_TICKS: u64 = 3600;
/// How long the reprojection pass may run per tick before the other passes get their turn.
const REPROJECTION_BUDGET: Duration = Duration::from_millis(500);
/// Firings acted on per pass.
const FIRINGS_PER_PASS: usize = 500;
/// How long the scheduler waits before starting again after it died.
const RESTART_DELAY: Duration = Duration::from_secs(5);
/// How long the scheduler may go without finishing a pass or a delivery before `/readyz`
/// reports it: well above the longest single step (an SMTP exchange, 30 s).
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(300);

/// The passes' names, in the log and as the `pass` label of `kith_jobs_passes_total`.
const EXPIRY: &str = "pending-event expiry";
const NUDGES: &str = "nudges";
const JOURNEYS: &str = "journeys";
const DIGESTS: &str = "digests";
const DELIVERIES: &str = "deliveries";
const ACCOUNT_HEALTH: &str = "account health";
const REPROJECTION: &str = "reprojection";

/// What one run of every pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// Pending events deleted.
    pub expired: u64,
    /// Bucket changes, due contacts and firings.
    pub nudges: JobReport,
    /// Journey entries moved.
    pub journeys: JourneyReport,
    /// Digests queued.
    pub digests: u64,
    /// Deliveries attempted.
    pub deliveries: delivery::Report,
    /// Accounts whose health of the day was recorded.
    pub account_health: u64,
    /// Contacts whose history was rebuilt from their events.
    pub reprojected: u64,
}

/// How the scheduler is doing, for `/readyz` and `/metrics`.
#[derive(Debug)]
pub struct Health {
    stale_after: Duration,
    since: Instant,
    scheduled: AtomicBool,
    /// Milliseconds after `since` of the last finished pass or delivery.
    last_progress_ms: AtomicU64,
    passes_failed: AtomicU64,
    restarts: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health::new(DEFAULT_STALE_AFTER)
    }
}

impl Health {
    /// A scheduler reported stalled after `stale_after` without progress.
    pub fn new(stale_after: Duration) -> Health {
        Health {
            stale_after,
            since: Instant::now(),
            scheduled: AtomicBool::new(false),
            last_progress_ms: AtomicU64::new(0),
            passes_failed: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
        }
    }

    /// A pass or a delivery finished.
    pub fn progress(&self) {
        let elapsed = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_progress_ms.fetch_max(elapsed, Ordering::Relaxed);
    }

    fn since_progress(&self) -> Duration {
        let last = Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }

    /// How long the scheduler has gone without progress, when that is too long. Jobs run on
    /// demand (tests) are never stalled.
    pub fn stalled(&self) -> Option<Duration> {
        let quiet = self.since_progress();
        (self.scheduled.load(Ordering::Relaxed) && quiet > self.stale_after).then_some(quiet)
    }
}

/// The scheduler's series of `/metrics`, read at each scrape.
impl Collector for Health {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let since_progress =
            if self.scheduled.load(Ordering::Relaxed) { self.since_progress().as_secs_f64() } else { 0.0 };
        let e = &mut encoder;
        encode_reading(
            e,
            "kith_jobs_seconds_since_progress",
            "Seconds since the scheduler last finished a pass or a delivery (0 when jobs are not scheduled).",
            ConstGauge::new(since_progress),
        )?;
        encode_reading(
            e,
            "kith_jobs_stalled",
            "1 when the scheduler has made no progress for longer than it should.",
            ConstGauge::new(i64::from(self.stalled().is_some())),
        )?;
        encode_reading(
            e,
            "kith_jobs_pass_failures",
            "Background passes that failed or panicked.",
            ConstCounter::new(self.passes_failed.load(Ordering::Relaxed)),
        )?;
        encode_reading(
            e,
            "kith_jobs_restarts",
            "Times the scheduler died and was started again.",
            ConstCounter::new(self.restarts.load(Ordering::Relaxed)),
        )
    }
}

/// Starts the scheduler; abort the handle to stop it. If it ever dies it is started again.
pub fn start(state: AppState) -> tokio::task::JoinHandle<()> {
    state.jobs.scheduled.store(true, Ordering::Relaxed);
    state.jobs.progress();
    let health = state.jobs.clone();
    tokio::spawn(supervise(health, RESTART_DELAY, move || schedule(state.clone())))
}

/// Runs `run()` in its own task, and again (after `delay`) whenever it ends by panicking.
/// Dropping the returned future stops the task it runs.
async fn supervise<F, Fut>(health: std::sync::Arc<Health>, delay: Duration, run: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    /// Aborts the task when the supervisor is aborted, so stopping the handle stops both.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    loop {
        let mut task = AbortOnDrop(tokio::spawn(run()));
        match (&mut task.0).await {
            Err(error) if error.is_panic() => {
                health.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::error!("the background job scheduler panicked; starting it again in {}s", delay.as_secs());
            }
            Ok(()) | Err(_) => return,
        }
        tokio::time::sleep(delay).await;
    }
}

async fn schedule(state: AppState) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick: u64 = 0;
    loop {
        interval.tick().await;
        if tick.is_multiple_of(EXPIRY_EVERY_TICKS) {
            isolated(&state, EXPIRY, expire_pending(&state)).await;
        }
        if tick.is_multiple_of(NUDGE_EVERY_TICKS) {
            isolated(&state, NUDGES, nudges(&state)).await;
            isolated(&state, JOURNEYS, journeys(&state)).await;
        }
        if tick.is_multiple_of(DIGEST_EVERY_TICKS) {
            isolated(&state, DIGESTS, digest::queue_due(&state)).await;
        }
        if tick.is_multiple_of(HEALTH_EVERY_TICKS) {
            isolated(&state, ACCOUNT_HEALTH, crate::service::health::record_all(&state)).await;
        }
        isolated(&state, REPROJECTION, reproject(&state, Some(REPROJECTION_BUDGET))).await;
        isolated(&state, DELIVERIES, delivery::deliver_due(&state)).await;
        tick = tick.wrapping_add(1);
    }
}

/// Runs one pass so that its failure, even a panic, stays its own: it is logged and counted,
/// and the next pass runs at its next interval.
async fn isolated<T>(state: &AppState, pass: &'static str, run: impl Future<Output = Result<T, StoreError>>) {
    match AssertUnwindSafe(counted(state, pass, run)).catch_unwind().await {
        Ok(Ok(_)) => state.jobs.progress(),
        Ok(Err(error)) => {
            state.jobs.passes_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, pass, "background pass failed; it runs again at its next interval");
        }
        Err(_) => {
            state.jobs.passes_failed.fetch_add(1, Ordering::Relaxed);
            state.metrics.job_pass(pass, PassOutcome::Panicked);
            tracing::error!(pass, "background pass panicked; it runs again at its next interval");
        }
    }
}

/// Runs one pass and counts how it returned, whether the scheduler or [`run_pending`] ran it.
async fn counted<T>(
    state: &AppState,
    pass: &'static str,
    run: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let result = run.await;
    state.metrics.job_pass(pass, if result.is_ok() { PassOutcome::Ok } else { PassOutcome::Failed });
    result
}

/// Runs every pass once, as of the state's clock, until nothing is left to do now.
pub async fn run_pending(state: &AppState) -> Result<Report, StoreError> {
    let mut report = Report { expired: counted(state, EXPIRY, expire_pending(state)).await?, ..Report::default() };
    report.nudges = counted(state, NUDGES, nudges(state)).await?;
    report.journeys = counted(state, JOURNEYS, journeys(state)).await?;
    report.digests = counted(state, DIGESTS, digest::queue_due(state)).await?;
    report.account_health = counted(state, ACCOUNT_HEALTH, crate::service::health::record_all(state)).await?;
    report.reprojected = counted(state, REPROJECTION, reproject(state, None)).await?;
    loop {
        let pass = counted(state, DELIVERIES, delivery::deliver_due(state)).await?;
        if pass.attempted() == 0 {
            break;
        }
        report.deliveries.add(&pass);
    }
    Ok(report)
}

/// Rebuilds the history of workspaces that asked for it, for at most `budget`.
pub async fn reproject(state: &AppState, budget: Option<Duration>) -> Result<u64, StoreError> {
    crate::service::history::run(state.store.as_ref(), budget, |step| {
        if step.finished {
            tracing::info!(workspace = step.workspace_id, "history rebuilt from the stored events");
        }
    })
    .await
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

/// Moves journey entries whose wait ended or whose contact did something, queuing what the
/// steps they pass send. Entries are claimed, so every node may run this at once.
pub async fn journeys(state: &AppState) -> Result<JourneyReport, StoreError> {
    let now = state.clock.now();
    let mut report = JourneyReport::default();
    loop {
        let pass = state.store.advance_journeys(now, ENTRIES_PER_PASS).await?;
        report.entries += pass.entries;
        report.steps += pass.steps;
        report.ended += pass.ended;
        if pass.entries < ENTRIES_PER_PASS as u64 {
            break;
        }
    }
    if report.steps + report.ended > 0 {
        tracing::info!(?report, "journey pass");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    use prometheus_client::registry::Registry;

    use super::*;

    /// The scheduler's series as `/metrics` writes them.
    fn exposition(health: &Arc<Health>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(health.clone()));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        text
    }

    #[tokio::test]
    async fn a_scheduler_that_panics_is_started_again() {
        let health = Arc::new(Health::default());
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let supervisor = tokio::spawn(supervise(health.clone(), Duration::from_millis(1), move || {
            let runs = counted.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("a pass went wrong");
                }
                std::future::pending::<()>().await
            }
        }));
        let deadline = Instant::now() + Duration::from_secs(5);
        while runs.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3, "started again after each panic");
        assert_eq!(health.restarts.load(Ordering::Relaxed), 2);
        assert!(exposition(&health).contains("kith_jobs_restarts_total 2"));
        supervisor.abort();
    }

    #[test]
    fn a_scheduler_without_progress_is_stalled() {
        let health = Arc::new(Health::new(Duration::ZERO));
        assert_eq!(health.stalled(), None, "jobs run on demand are never stalled");
        health.scheduled.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        assert!(health.stalled().is_some());
        assert!(exposition(&health).contains("kith_jobs_stalled 1"));
    }
}
