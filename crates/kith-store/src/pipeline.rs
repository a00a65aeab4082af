//! The ingest pipeline (ARCHITECTURE.md, "The path of an event"): handlers parse and validate
//! concurrently and hand their events to a bounded queue; one writer drains whatever has queued up,
//! applies it in one transaction, commits, and only then answers every waiter. While a commit is in
//! flight the next group forms, so batches grow with load and latency stays low when idle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::records::{Incoming, Outcome, WorkspaceId};
use crate::{Store, StoreError};

/// A commit at least this large means clients are waiting on the writer: the next commit
/// lingers for them.
const LINGER_FROM_EVENTS: usize = 500;
/// The longest a commit lingers for more events.
const LINGER: Duration = Duration::from_millis(3);

/// Pipeline limits.
#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
    /// Events that may wait for the writer; beyond that, submitters are told to retry.
    pub queue_events: usize,
    /// The most events one transaction applies.
    pub max_batch_events: usize,
    /// Events of one workspace that may wait for the writer; beyond that its submitters are
    /// told to retry while other workspaces still find room in the queue.
    pub workspace_queue_events: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig { queue_events: 50_000, max_batch_events: 10_000, workspace_queue_events: 25_000 }
    }
}

/// Failed submissions in a row after which the writer is reported failing.
pub const FAILING_AFTER: u64 = 3;
/// How long a failing writer stays reported so without a new failure: a node taken out of
/// rotation gets no traffic to prove itself healthy again, so the report expires and the next
/// writes decide.
const FAILING_FOR: Duration = Duration::from_secs(30);

/// Why events were not stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: answer 503 with Retry-After.
    #[error("the ingest queue is full")]
    Overloaded,
    /// The workspace has its whole share of the queue waiting: answer 429 with Retry-After.
    #[error("this workspace has its share of the ingest queue waiting")]
    WorkspaceOverloaded,
    /// The pipeline has shut down.
    #[error("the ingest pipeline has stopped")]
    Closed,
    /// The transaction failed; nothing of the batch was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

enum Message {
    Job(Job),
    /// Everything queued before this is written, then the writer ends.
    Close,
}

struct Job {
    events: Vec<Incoming>,
    reply: oneshot::Sender<Result<Vec<Outcome>, Arc<StoreError>>>,
    _permit: Admission,
}

/// A submission's room in the queue, given back when the writer is done with it.
struct Admission {
    _queue: OwnedSemaphorePermit,
    _share: Share,
}

/// Events each workspace has waiting, so no one workspace can take the whole queue.
#[derive(Default)]
struct Shares(Mutex<HashMap<WorkspaceId, usize>>);

impl Shares {
    /// Room for `count` events of `workspace` within `limit`. A workspace with nothing waiting
    /// is always admitted (a request larger than the share would otherwise never fit).
    fn take(self: &Arc<Self>, workspace: WorkspaceId, count: usize, limit: usize) -> Option<Share> {
        let mut held = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let waiting = held.entry(workspace).or_default();
        if *waiting > 0 && *waiting + count > limit {
            return None;
        }
        *waiting += count;
        Some(Share { shares: self.clone(), workspace, count })
    }
}

/// One submission's part of its workspace's share.
struct Share {
    shares: Arc<Shares>,
    workspace: WorkspaceId,
    count: usize,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.shares.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(waiting) = held.get_mut(&self.workspace) {
            *waiting = waiting.saturating_sub(self.count);
            if *waiting == 0 {
                held.remove(&self.workspace);
            }
        }
    }
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Events waiting for the writer or being written.
    pub queued: AtomicUsize,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Events in committed transactions.
    pub committed_events: AtomicU64,
    /// Total commit time in microseconds.
    pub commit_micros: AtomicU64,
    /// Longest commit in microseconds since start.
    pub max_commit_micros: AtomicU64,
    /// Transactions that failed.
    pub failures: AtomicU64,
    /// Submissions that failed to be written since the last one that was.
    pub failures_in_a_row: AtomicU64,
    /// When the last submission failed to be written.
    last_failure: Mutex<Option<Instant>>,
}

impl PipelineStats {
    /// Whether writes are failing: the last [`FAILING_AFTER`] submissions all failed, the
    /// latest less than half a minute ago.
    pub fn writer_failing(&self) -> bool {
        self.failures_in_a_row.load(Ordering::Relaxed) >= FAILING_AFTER
            && lock(&self.last_failure).is_some_and(|at| at.elapsed() < FAILING_FOR)
    }

    fn submission_written(&self, written: bool) {
        if written {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
        } else {
            self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
            *lock(&self.last_failure) = Some(Instant::now());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The handle handlers submit to.
#[derive(Clone)]
pub struct Pipeline {
    sender: mpsc::UnboundedSender<Message>,
    capacity: Arc<Semaphore>,
    queue_events: usize,
    shares: Arc<Shares>,
    workspace_queue_events: usize,
    stats: Arc<PipelineStats>,
}

impl Pipeline {
    /// Starts the writer task. It ends after [`Pipeline::close`] once the queue is written (or
    /// when every `Pipeline` clone is dropped); await the handle to know everything
    /// acknowledged is committed.
    pub fn start(store: Arc<dyn Store>, config: PipelineConfig) -> (Pipeline, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let stats = Arc::new(PipelineStats::default());
        let pipeline = Pipeline {
            sender,
            capacity: Arc::new(Semaphore::new(config.queue_events.max(1))),
            queue_events: config.queue_events.max(1),
            shares: Arc::default(),
            workspace_queue_events: config.workspace_queue_events.max(1),
            stats: stats.clone(),
        };
        let writer = tokio::spawn(run_writer(store, receiver, config.max_batch_events, stats));
        (pipeline, writer)
    }

    /// Queues events (of one workspace: one request's) and waits until they are committed.
    pub async fn submit(&self, events: Vec<Incoming>) -> Result<Vec<Outcome>, SubmitError> {
        let Some(workspace) = events.first().map(|event| event.workspace_id) else {
            return Ok(Vec::new());
        };
        // A request larger than the whole queue takes all of it rather than waiting forever
        // for room that can never exist.
        let count = events.len().min(self.queue_events);
        // The workspace's share is checked first, so a workspace over it is told to slow down
        // without taking room from the others.
        let share =
            self.shares.take(workspace, count, self.workspace_queue_events).ok_or(SubmitError::WorkspaceOverloaded)?;
        let queue = self.capacity.clone().try_acquire_many_owned(count as u32).map_err(|_| SubmitError::Overloaded)?;
        let (reply, answer) = oneshot::channel();
        let len = events.len();
        self.stats.queued.fetch_add(len, Ordering::Relaxed);
        let job = Job { events, reply, _permit: Admission { _queue: queue, _share: share } };
        if self.sender.send(Message::Job(job)).is_err() {
            self.stats.queued.fetch_sub(len, Ordering::Relaxed);
            return Err(SubmitError::Closed);
        }
        let result = match answer.await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(error)) => Err(SubmitError::Store(StoreError::Batch(error))),
            Err(_) => Err(SubmitError::Closed),
        };
        // Only the database's answer counts: a shutdown is not a failing writer.
        self.stats.submission_written(!matches!(result, Err(SubmitError::Store(_))));
        result
    }

    /// Asks the writer to finish what is queued and stop; later submissions fail with
    /// [`SubmitError::Closed`].
    pub fn close(&self) {
        let _ = self.sender.send(Message::Close);
    }

    /// The pipeline's counters.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }
}

async fn run_writer(
    store: Arc<dyn Store>,
    mut receiver: mpsc::UnboundedReceiver<Message>,
    max_batch: usize,
    stats: Arc<PipelineStats>,
) {
    let mut closing = false;
    let mut last_count = 0;
    while !closing {
        let Some(Message::Job(first)) = receiver.recv().await else { break };
        let mut jobs = vec![first];
        let mut count = jobs[0].events.len();
        // Under load, the clients answered by the last commit are sending again right now:
        // waiting a moment for them makes this commit as large as the last one instead of a
        // trickle. When idle, nothing waits.
        let linger_until = (last_count >= LINGER_FROM_EVENTS).then(|| tokio::time::Instant::now() + LINGER);
        while count < max_batch {
            let next = match receiver.try_recv() {
                Ok(message) => Some(message),
                Err(_) => match linger_until.filter(|_| count < last_count) {
                    Some(deadline) => tokio::time::timeout_at(deadline, receiver.recv()).await.ok().flatten(),
                    None => None,
                },
            };
            match next {
                Some(Message::Job(job)) => {
                    count += job.events.len();
                    jobs.push(job);
                }
                Some(Message::Close) => {
                    closing = true;
                    break;
                }
                None => break,
            }
        }
        last_count = count;
        let mut sizes = Vec::with_capacity(jobs.len());
        let mut batch = Vec::with_capacity(count);
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            sizes.push(job.events.len());
            batch.extend(job.events);
            replies.push((job.reply, job._permit));
        }
        let started = Instant::now();
        let result = store.write_events(batch).await;
        let elapsed = started.elapsed();
        stats.queued.fetch_sub(count, Ordering::Relaxed);
        match result {
            Ok(outcomes) => {
                record_commit(&stats, count, elapsed);
                let mut outcomes = outcomes.into_iter();
                for ((reply, _permit), size) in replies.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(outcomes.by_ref().take(size).collect()));
                }
            }
            Err(error) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, events = count, "ingest transaction failed; nothing of it was stored");
                let error = Arc::new(error);
                for (reply, _permit) in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

fn record_commit(stats: &PipelineStats, events: usize, elapsed: Duration) {
    let micros = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.committed_events.fetch_add(events as u64, Ordering::Relaxed);
    stats.commit_micros.fetch_add(micros, Ordering::Relaxed);
    stats.max_commit_micros.fetch_max(micros, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_gets_its_share_and_no_more() {
        let shares = Arc::new(Shares::default());
        let first = shares.take(1, 15, 20).expect("room");
        assert!(shares.take(1, 6, 20).is_none(), "over the share while the first is waiting");
        let other = shares.take(2, 20, 20).expect("another workspace has its own share");
        let small = shares.take(1, 5, 20).expect("up to the share");
        drop((first, small));
        assert!(shares.take(1, 100, 20).is_some(), "with nothing waiting, even a large request is admitted");
        drop(other);
        assert!(shares.0.lock().unwrap().is_empty(), "every share is given back");
    }
}
