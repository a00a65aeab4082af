//! The event log on PostgreSQL and its projection, for several nodes on one database.
//!
//! Every node appends the events it accepts to `event_log` and answers once that commit is
//! made: the append is the only synchronous step of ingest, and it takes no lock that plans
//! from what it reads. What the client must learn is decided in the append's transaction: a
//! duplicate messageId (claiming the digest in `message_ids` finds it) and an identify
//! without email for a user nobody knows (read after letting the projection catch up).
//!
//! Everything derived from events is written by the projection, run by the one node holding
//! the projection lease: a session-level advisory lock on a connection of its own, taken with
//! try-lock. When that node dies its session ends, the lock is released, and another node's
//! next try (every [`LEASE_RETRY`]) takes the lease over. The projection applies the log
//! after the lanes' watermarks in batches through the planner (`write::apply_events`),
//! storing the new watermarks and deleting the applied entries in the same transaction, so
//! that a crash replays the unapplied tail without counting anything twice.
//!
//! No lock is shared by every append. An append takes the lock of one of [`LANES`] lanes (the
//! first free one from a random start) from its insert to its commit, so that within a lane
//! sequence numbers become visible in order: an entry the projection has not seen is always
//! after its lane's watermark (`lane_watermarks`), and appends on different lanes run in
//! parallel. Reads that must see acknowledged events wait until every lane's watermark
//! passes the head the lane had when they start (`PostgresStore::wait_applied`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_postgres::Object;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_postgres::{Client, Transaction};

use super::connect::{Connections, SILENCE_TIMEOUTS};
use super::{dedup, write};
use crate::plan::{self, PendingEvent};
use crate::records::{Incoming, Outcome};
use crate::{AppliedSink, Result, StoreError};

/// The lanes of the log (`log_lanes`, `lane_watermarks`).
pub const LANES: usize = 16;
/// The advisory lock of lane 0, held by an append on it from its insert to its commit; lane
/// `n`'s is this plus `n`.
pub const LANE_LOCKS: i64 = 0x6b69_7468_0100;
/// The session-level advisory lock of the node that applies the log.
const PROJECTION_LEASE: i64 = 0x6b69_7468_0004;
/// How often a node without the lease tries to take it.
pub const LEASE_RETRY: Duration = Duration::from_millis(500);
/// The most events one projection transaction applies.
const PROJECTION_BATCH: i64 = 5_000;
/// How far the log may run ahead of the projection before appends wait for it, then shed
/// load with 503.
pub const MAX_LAG: i64 = 100_000;
/// How long an append waits for the projection to come back within [`MAX_LAG`].
pub const APPEND_WAIT: Duration = Duration::from_secs(2);
/// Below this many waiting events the projection gathers for [`GATHER`] before applying.
const GATHER_BELOW: usize = 1_000;
/// How long the projection gathers a trickle of events into one transaction.
const GATHER: Duration = Duration::from_millis(3);
/// How often the projection looks for entries appended by other nodes when idle (its own
/// node's appends wake it at once).
const IDLE_POLL: Duration = Duration::from_millis(20);

/// What the store and its projection task share.
pub struct Log {
    /// Woken by this node's appends.
    appended: Notify,
    /// The lanes' watermarks this node's projection last committed.
    applied: watch::Sender<Lanes>,
    /// Whether this node holds the projection lease.
    leading: AtomicBool,
    /// Told what each applied event did.
    sink: Mutex<Option<AppliedSink>>,
    /// The log's marks as last read, for `/metrics`.
    marks: Marks,
    /// The most entries the next projection transaction applies.
    batch: AtomicI64,
}

/// A sequence number per lane, indexed by lane.
pub type Lanes = Vec<i64>;

/// Whether watermarks `applied` are at or past every lane's head in `heads`.
pub fn caught_up(heads: &[i64], applied: &[i64]) -> bool {
    heads.iter().enumerate().all(|(lane, head)| applied.get(lane).is_some_and(|applied| applied >= head))
}

/// Entries appended and entries applied, as last read.
#[derive(Default)]
struct Marks {
    appended: AtomicI64,
    applied: AtomicI64,
}

impl Marks {
    /// Both only grow: a reading older than the last one kept changes nothing.
    fn set(&self, (appended, applied): (i64, i64)) {
        self.appended.fetch_max(appended, Ordering::Relaxed);
        self.applied.fetch_max(applied, Ordering::Relaxed);
    }
}

impl Log {
    /// Starts the projection task of a store; it ends when the returned handle is dropped.
    pub fn start(connections: Connections, timeout: Duration) -> Arc<Log> {
        let log = Arc::new(Log {
            appended: Notify::new(),
            applied: watch::Sender::new(Lanes::new()),
            leading: AtomicBool::new(false),
            sink: Mutex::new(None),
            marks: Marks::default(),
            batch: AtomicI64::new(PROJECTION_BATCH),
        });
        tokio::spawn(run(Arc::downgrade(&log), connections, timeout));
        log
    }

    /// Wakes this node's projection, if it leads.
    pub fn appended(&self) {
        self.appended.notify_one();
    }

    /// Whether this node applies the log.
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// Notified when this node's projection moves its watermarks.
    pub fn watch_applied(&self) -> watch::Receiver<Lanes> {
        self.applied.subscribe()
    }

    /// Keeps a reading of the log's marks (see [`Log::position`]).
    pub fn saw(&self, marks: (i64, i64)) {
        self.marks.set(marks);
    }

    /// How many entries were appended and applied when last looked at (at most
    /// [`LEASE_RETRY`] ago, or by the last `settle`), and whether this node applies the log.
    pub fn position(&self) -> crate::LogPosition {
        crate::LogPosition {
            appended: self.marks.appended.load(Ordering::Relaxed),
            applied: self.marks.applied.load(Ordering::Relaxed),
            leases: u32::from(self.leading()),
        }
    }

    /// Where applied events are reported from now on.
    pub fn report_to(&self, sink: AppliedSink) {
        *self.sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sink);
    }
}

/// Entries ever appended and entries applied.
pub async fn marks(c: &Client) -> Result<(i64, i64)> {
    let row = c
        .query_one(
            "SELECT (SELECT COALESCE(sum(entries), 0)::bigint FROM log_lanes), (SELECT entries FROM projection_state WHERE shard = 0)",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Each lane's head (its last entry appended and committed) and watermark.
pub async fn heads(c: &Client) -> Result<(Lanes, Lanes)> {
    let rows = c
        .query("SELECT l.appended, w.applied FROM log_lanes l JOIN lane_watermarks w USING (lane) ORDER BY lane", &[])
        .await?;
    Ok(rows.iter().map(|row| (row.get::<_, i64>(0), row.get::<_, i64>(1))).unzip())
}

/// Each lane's watermark.
pub async fn watermarks(c: &Client) -> Result<Lanes> {
    let rows = c.query("SELECT applied FROM lane_watermarks ORDER BY lane", &[]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

async fn applied_entries(c: &Client) -> Result<i64> {
    Ok(c.query_one("SELECT entries FROM projection_state WHERE shard = 0", &[]).await?.get(0))
}

/// Decides each event's answer, appends the accepted ones and commits. One outcome per
/// event, in order. The caller lets the projection catch up first when any event
/// [`plan::needs_known_user`].
pub async fn append(c: &mut Client, batch: &[Incoming]) -> Result<Vec<Outcome>> {
    let tx = c.transaction().await?;
    let (claimed, seen) = dedup::claim(&tx, batch).await?;
    let mut first = HashSet::with_capacity(batch.len());
    let mut outcomes: Vec<Outcome> = batch
        .iter()
        .map(|incoming| {
            if seen.contains(&incoming.digest) || !first.insert(incoming.digest) {
                Outcome::Duplicate
            } else {
                Outcome::Accepted
            }
        })
        .collect();
    let checked = |incoming: &Incoming, outcome: &Outcome| {
        *outcome == Outcome::Accepted && plan::needs_known_user(&incoming.event)
    };
    if batch.iter().zip(&outcomes).any(|(incoming, outcome)| checked(incoming, outcome)) {
        let rejections = write::rejections(&tx, batch).await?;
        let mut released = Vec::new();
        for ((outcome, rejection), incoming) in outcomes.iter_mut().zip(rejections).zip(batch) {
            if let (Some(rejection), true) = (rejection, checked(incoming, outcome)) {
                *outcome = Outcome::Rejected(rejection);
                // A refused event does not use up its messageId: a corrected retry is new.
                if claimed.contains(&incoming.digest) {
                    released.push(incoming.digest.as_slice());
                }
            }
        }
        dedup::release(&tx, &released).await?;
    }
    let accepted: Vec<&Incoming> =
        batch.iter().zip(&outcomes).filter(|(_, outcome)| **outcome == Outcome::Accepted).map(|(i, _)| i).collect();
    if !accepted.is_empty() {
        insert_entries(&tx, &accepted).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Appends the entries to a lane under its lock, which the commit releases: no append on the
/// lane takes sequence numbers while another's are still to become visible. The lane is the
/// first free one from a random start; only when all are taken does the append wait, for the
/// lane it started from.
async fn insert_entries(tx: &Transaction<'_>, accepted: &[&Incoming]) -> Result<()> {
    let start = rand::random_range(0..LANES as i32);
    // PostgreSQL evaluates the filter row by row below the LIMIT, so exactly one lock is taken
    // (the plan is a function scan under a limit; checked with EXPLAIN when this was written).
    let free = tx
        .query_opt(
            "SELECT lane FROM (SELECT ($1::int + i) % $3::int AS lane FROM generate_series(0, $3::int - 1) AS i) AS lanes
             WHERE pg_try_advisory_xact_lock($2::bigint + lane) LIMIT 1",
            &[&start, &LANE_LOCKS, &(LANES as i32)],
        )
        .await?;
    let lane: i32 = match free {
        Some(row) => row.get(0),
        None => {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(LANE_LOCKS + i64::from(start))]).await?;
            start
        }
    };
    let workspaces: Vec<i64> = accepted.iter().map(|incoming| incoming.workspace_id).collect();
    let digests: Vec<&[u8]> = accepted.iter().map(|incoming| incoming.digest.as_slice()).collect();
    let types: Vec<&str> = accepted.iter().map(|incoming| incoming.event.kind.event_type().as_str()).collect();
    let occurred: Vec<i64> = accepted.iter().map(|incoming| incoming.event.time.as_millisecond()).collect();
    let received: Vec<i64> = accepted.iter().map(|incoming| incoming.event.received_at.as_millisecond()).collect();
    let payloads: Vec<&str> = accepted.iter().map(|incoming| incoming.event.payload.as_str()).collect();
    // In order: the events of one batch keep their order in the log.
    let seqs = tx
        .query(
            "INSERT INTO event_log (lane, workspace_id, digest, event_type, occurred_at, received_at, payload)
             SELECT $1, w, d, t, o, r, p
             FROM unnest($2::bigint[], $3::bytea[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
                  WITH ORDINALITY AS e (w, d, t, o, r, p, i)
             ORDER BY i
             RETURNING seq",
            &[&lane, &workspaces, &digests, &types, &occurred, &received, &payloads],
        )
        .await?;
    let last = seqs.iter().map(|row| row.get::<_, i64>(0)).max().unwrap_or_default();
    let moved = tx
        .execute(
            "UPDATE log_lanes SET appended = GREATEST(appended, $2), entries = entries + $3 WHERE lane = $1",
            &[&lane, &last, &(accepted.len() as i64)],
        )
        .await?;
    if moved != 1 {
        return Err(StoreError::unavailable(format!(
            "the event log has no lane {lane}: its schema is not this version's"
        )));
    }
    Ok(())
}

/// The projection task: takes the lease when it is free and applies the log while it holds
/// it, until the store is dropped.
async fn run(log: Weak<Log>, connections: Connections, timeout: Duration) {
    let mut failures = 0u32;
    while log.strong_count() > 0 {
        match serve(&log, &connections, timeout).await {
            Ok(()) => failures = 0,
            Err(error) => {
                failures = failures.saturating_add(1);
                if failures.is_power_of_two() {
                    tracing::error!(%error, "the projection of the event log stopped; trying again");
                }
            }
        }
        if let Some(log) = log.upgrade() {
            log.leading.store(false, Ordering::Relaxed);
        }
        tokio::time::sleep(LEASE_RETRY).await;
    }
}

/// On a connection of its own, tries the lease every [`LEASE_RETRY`] and applies the log
/// once it holds it, until the store is dropped or the connection fails.
async fn serve(log: &Weak<Log>, connections: &Connections, timeout: Duration) -> Result<()> {
    // Taken out of the pool: the lease lives as long as this connection's session, and is
    // released by closing it, never by handing it to another request.
    let mut client = Object::take(connections.get(connections.deadline()).await?);
    let client: &mut Client = &mut client;
    // The projection's transactions are larger than a request's: they get a longer statement
    // timeout. A node cut off from the database cannot close its session, and the server would
    // keep its lease until TCP gave up on the connection (hours, by default). This connection
    // is never idle for long while its node lives (it polls every LEASE_RETRY at the most), so
    // the server ends it after that much silence, and another node takes the lease over.
    let silence = (timeout * SILENCE_TIMEOUTS).as_millis();
    bounded(
        timeout,
        "setting up its connection",
        client.batch_execute(&format!(
            "SET statement_timeout = {silence}; SET idle_in_transaction_session_timeout = {silence}"
        )),
    )
    .await?;
    // PostgreSQL 14 and later only; before, a cut-off node keeps its lease until TCP gives up.
    if let Err(error) = bounded(
        timeout,
        "setting up its connection",
        client.batch_execute(&format!("SET idle_session_timeout = {silence}")),
    )
    .await
    {
        tracing::warn!(%error, "a node cut off from the database keeps the projection lease until TCP gives up");
    }
    loop {
        let leased: bool = bounded(
            timeout,
            "taking its lease",
            client.query_one("SELECT pg_try_advisory_lock($1)", &[&PROJECTION_LEASE]),
        )
        .await?
        .get(0);
        if leased {
            return apply(log, client, timeout * SILENCE_TIMEOUTS).await;
        }
        let marks = bounded(timeout, "reading the log", marks(client)).await?;
        match log.upgrade() {
            Some(shared) => shared.marks.set(marks),
            None => return Ok(()),
        }
        tokio::time::sleep(LEASE_RETRY).await;
    }
}

/// Applies the log after the stored watermarks, holding the lease, until the store is
/// dropped or the connection fails; `timeout` bounds each step.
async fn apply(log: &Weak<Log>, client: &mut Client, timeout: Duration) -> Result<()> {
    let mut watermarks = bounded(timeout, "starting", watermarks(client)).await?;
    let mut entries = bounded(timeout, "starting", applied_entries(client)).await?;
    let mut refreshed = Instant::now();
    loop {
        let Some(shared) = log.upgrade() else { return Ok(()) };
        shared.applied.send_replace(watermarks.clone());
        shared.leading.store(true, Ordering::Relaxed);
        if refreshed.elapsed() >= LEASE_RETRY {
            shared.marks.set(bounded(timeout, "reading the log", marks(client)).await?);
            refreshed = Instant::now();
        }
        let _ = tokio::time::timeout(IDLE_POLL, shared.appended.notified()).await;
        let limit = shared.batch.load(Ordering::Relaxed);
        let mut read = bounded(timeout, "reading the log", read_after(client, &watermarks, limit)).await?;
        if read.is_empty() {
            continue;
        }
        if read.len() < GATHER_BELOW {
            // A trickle of small appends (single identifies) would otherwise cost one
            // projection transaction each; a read after a 200 waits that much longer at most.
            tokio::time::sleep(GATHER).await;
            read = bounded(timeout, "reading the log", read_after(client, &watermarks, limit)).await?;
        }
        // Halved while a transaction fails (one that timed out is tried again smaller, down to
        // a single entry), and grown back as they succeed.
        shared.batch.store((limit / 2).max(1), Ordering::Relaxed);
        let (lanes, entries_read): (Vec<i32>, Vec<(i64, PendingEvent)>) = read.into_iter().unzip();
        let (seqs, batch): (Vec<i64>, Vec<Incoming>) = plan::reparse_entries(&entries_read).into_iter().unzip();
        let mut consumed = 0;
        for run in plan::deletion_runs(&batch) {
            // The entries up to the run's last, those that no longer parse included.
            let through = if run.end == batch.len() {
                entries_read.len()
            } else {
                entries_read.partition_point(|(seq, _)| *seq <= seqs[run.end - 1])
            };
            let applied: Vec<(i32, i64)> =
                (consumed..through).map(|index| (lanes[index], entries_read[index].0)).collect();
            let outcomes =
                bounded(timeout, "applying", write::apply_events(client, &batch[run.clone()], entries, &applied))
                    .await?;
            let sink = shared.sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
            if let Some(sink) = sink {
                sink(&batch[run], &outcomes);
            }
            for (lane, seq) in &applied {
                if let Some(watermark) = watermarks.get_mut(*lane as usize) {
                    *watermark = (*watermark).max(*seq);
                }
            }
            entries += applied.len() as i64;
            consumed = through;
            shared.applied.send_replace(watermarks.clone());
        }
        shared.batch.store((limit * 2).min(PROJECTION_BATCH), Ordering::Relaxed);
    }
}

/// `work` by `timeout`: a connection that stopped answering fails the projection (which
/// closes it, releasing the lease) instead of stalling it for ever.
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    work: impl std::future::Future<Output = std::result::Result<T, impl Into<StoreError>>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(StoreError::unavailable(format!("the projection timed out {what}"))),
    }
}

/// Up to `limit` log entries after their lanes' `watermarks`, in order, each with its lane.
async fn read_after(c: &Client, watermarks: &[i64], limit: i64) -> Result<Vec<(i32, (i64, PendingEvent))>> {
    // Every entry still in the log is after its lane's watermark (an entry is deleted in the
    // transaction that applies it), so the entries after the lowest watermark are the ones
    // to apply. Appends spread over the lanes, so under load the lowest is seldom far behind;
    // when it is (a lane idle or held), the scan steps over the entries deleted since, which
    // stay in the index until a vacuum.
    let from = watermarks.iter().copied().min().unwrap_or_default();
    let rows = c
        .query(
            "SELECT seq, workspace_id, event_type, payload, occurred_at, received_at, lane FROM event_log
             WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&from, &limit],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(6), (row.get(0), write::pending_event(row)))).collect())
}
