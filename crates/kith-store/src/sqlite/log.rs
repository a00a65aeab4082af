//! The event log and its projection.
//!
//! The log is the source of truth: every accepted event is appended, in arrival order, to
//! its own SQLite file beside the main database (`kith.db` → `kith.db.log`), one table with
//! a monotonic key and no secondary index, so a group commit writes a few sequential pages
//! and one fsync. Only then is the client answered.
//!
//! Everything derived from events (contacts, identities, contact-days, the event stream,
//! accounts, audiences, pending events, rule firings) is written by the projection: a
//! thread that reads the log after its watermark in large batches, applies them through
//! the planner (`write::write_events`), and stores the new watermark in the same
//! transaction, so a crash replays the unapplied tail without counting anything twice.
//! Two files keep the append off the projection's write lock: a long projection
//! transaction never delays an acknowledgement.
//!
//! Before appending, the appender decides what the client must learn in its answer:
//! a duplicate messageId (against the digests the log has taken within the window, in
//! memory and in sealed runs: `dedup.rs`) and an identify without email for a user nobody
//! knows (against the projected identities, after letting the projection catch up: such
//! identifies are rare). Only events that pass reach the log, so the projection never sees
//! a duplicate. Reads that must see acknowledged events wait for the watermark
//! (`wait_applied`).
//!
//! The appender hands the events it parsed to the projection (`handoff.rs`), which then
//! reads and parses the log only after a restart or when it fell far behind. No checkpoint
//! runs inside an append or a projection transaction (`checkpoint.rs`).
//!
//! Entries that are applied and whose digests are sealed are pruned from the log by the
//! appender, in the next append's transaction (deleting the oldest rows of a rowid table
//! touches only its first pages): the main database holds their effects, the sealed runs
//! their messageIds, and an erased contact's events must not outlive it in the log
//! (`Appender::prune` seals and prunes right after an erasure).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use kith_core::Clock;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::watch;

use super::dedup::Dedup;
use super::handoff::Handoff;
use super::{write, Durability, Writer};
use crate::plan::PendingEvent;
use crate::records::{Incoming, Outcome};
use crate::{AppliedSink, Result, StoreError};

/// Where the projection reports what it applied, once the server has said where.
pub type SinkSlot = Arc<Mutex<Option<AppliedSink>>>;

/// The most events one projection transaction applies.
const PROJECTION_BATCH: usize = 10_000;
/// How far the log may run ahead of the projection before appends wait for it (and the
/// ingest queue behind them fills up and sheds load with 503).
const MAX_LAG: i64 = 200_000;
/// Below this many unapplied events the projection waits [`GATHER`] for more before applying.
const GATHER_BELOW: i64 = 1_000;
/// How long the projection gathers a trickle of events into one transaction.
const GATHER: Duration = Duration::from_millis(3);
/// The longest an append waits for the projection before giving up with an error.
const APPEND_WAIT: Duration = Duration::from_secs(30);
/// The longest a read waits for the projection to reach what was acknowledged before it.
const READ_WAIT: Duration = Duration::from_secs(30);

/// The log file beside a main database file.
pub fn log_path(database: &Path) -> PathBuf {
    let mut name = database.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(".log");
    database.with_file_name(name)
}

/// How far the log and the projection have come.
#[derive(Debug, Default)]
struct Marks {
    /// The last sequence number committed to the log.
    appended: i64,
    /// The last sequence number whose effects are committed to the main database.
    applied: i64,
    /// Set when the store is dropped: the projection finishes what is appended and stops.
    closing: bool,
}

/// What the appender and the projection share.
pub struct Progress {
    marks: Mutex<Marks>,
    changed: Condvar,
    applied: watch::Sender<i64>,
    handoff: Handoff,
}

impl Progress {
    fn marks(&self) -> MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The last sequence number acknowledged to a client.
    pub fn appended(&self) -> i64 {
        self.marks().appended
    }

    /// Whether the store is closing.
    pub fn closing(&self) -> bool {
        self.marks().closing
    }

    /// Where the log and the projection are now.
    pub fn position(&self) -> crate::LogPosition {
        let marks = self.marks();
        crate::LogPosition { appended: marks.appended, applied: marks.applied, leases: 1 }
    }

    /// Waits (asynchronously, at most [`READ_WAIT`]) until the projection has applied
    /// everything appended when the call started.
    pub async fn wait_applied(&self) -> Result<()> {
        let target = self.appended();
        let mut receiver = self.applied.subscribe();
        let caught_up =
            tokio::time::timeout(READ_WAIT, async { receiver.wait_for(|applied| *applied >= target).await.is_ok() })
                .await;
        match caught_up {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::unavailable("the projection has stopped")),
            Err(_) => Err(StoreError::unavailable(format!(
                "the projection is more than {} s behind the event log",
                READ_WAIT.as_secs()
            ))),
        }
    }

    /// Blocks until `ready(marks)` holds, at most `limit`.
    fn block_until(&self, limit: Duration, ready: impl Fn(&Marks) -> bool) -> Result<()> {
        let marks = self.marks();
        let (_marks, timeout) = self
            .changed
            .wait_timeout_while(marks, limit, |marks| !ready(marks))
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if timeout.timed_out() {
            return Err(StoreError::unavailable(format!(
                "the projection made no progress for {} s; the event log is not accepting more",
                limit.as_secs()
            )));
        }
        Ok(())
    }
}

/// The single appender: the log's write connection, a read connection on the main
/// database, and the messageIds taken.
pub struct Appender {
    log: Connection,
    main: Connection,
    next_seq: i64,
    /// Entries up to here are known to be deleted from the log.
    pruned: i64,
    dedup: Dedup,
}

/// Opens the log and starts the projection. Returns the appender, the shared progress and
/// the projection thread's handle.
pub fn open(
    database: &Path,
    durability: Durability,
    writer: Arc<Mutex<Writer>>,
    sink: SinkSlot,
    clock: &Clock,
) -> Result<(Appender, Arc<Progress>, std::thread::JoinHandle<()>)> {
    let path = log_path(database);
    // It holds every payload: as private as the database.
    super::files::prepare(&path)?;
    let mut log = Connection::open(&path)?;
    let synchronous = durability.synchronous();
    log.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {synchronous};
         PRAGMA busy_timeout = 10000;
         PRAGMA wal_autocheckpoint = 0;
         PRAGMA secure_delete = ON;
         CREATE TABLE IF NOT EXISTS log (
             seq          INTEGER PRIMARY KEY,
             workspace_id INTEGER NOT NULL,
             digest       BLOB    NOT NULL,
             event_type   TEXT    NOT NULL,
             occurred_at  INTEGER NOT NULL,
             received_at  INTEGER NOT NULL,
             payload      TEXT    NOT NULL
         );"
    ))?;
    log.execute_batch(super::dedup::SCHEMA)?;
    let applied = stored_watermark(&writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).connection)?;
    // A fully pruned log is empty: numbering goes on from the watermark.
    let logged: i64 = log.query_row("SELECT COALESCE(MAX(seq), 0) FROM log", [], |row| row.get(0))?;
    let appended = logged.max(applied);
    let (applied_sender, _) = watch::channel(applied);
    let progress = Arc::new(Progress {
        marks: Mutex::new(Marks { appended, applied, closing: false }),
        changed: Condvar::new(),
        applied: applied_sender,
        handoff: Handoff::default(),
    });
    let mut dedup = Dedup::load(&log)?;
    adopt_message_ids(&writer, &mut log, &mut dedup, clock.now().as_millisecond())?;
    let main = super::open_reader(database)?;
    // The projection's connection to the log, to read entries.
    let reader =
        Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    reader.execute_batch("PRAGMA busy_timeout = 10000;")?;
    let projection = {
        let progress = progress.clone();
        std::thread::Builder::new()
            .name("kith-projection".into())
            .spawn(move || project(reader, writer, progress, sink))
            .map_err(|e| StoreError::caused("cannot start the projection thread", e))?
    };
    let appender = Appender { log, main, next_seq: appended + 1, pruned: 0, dedup };
    Ok((appender, progress, projection))
}

impl Appender {
    /// Decides each event's answer, appends the accepted ones and commits (fsync with
    /// durability `full`), then wakes the projection. One outcome per event, in order.
    pub fn append(&mut self, progress: &Progress, batch: Vec<Incoming>) -> Result<Vec<Outcome>> {
        progress.block_until(APPEND_WAIT, |marks| marks.appended - marks.applied < MAX_LAG)?;
        let applied = progress.marks().applied;
        let mut outcomes = self.deduplicate(&batch)?;
        if batch.iter().zip(&outcomes).any(|(incoming, outcome)| needs_known_user(incoming, outcome)) {
            // Whether an identify without email names a known user depends on every event
            // before it: let the projection apply them, then plan the batch read-only.
            let appended = progress.appended();
            progress.block_until(APPEND_WAIT, |marks| marks.applied >= appended)?;
            let rejections = write::rejections(&self.main, &batch)?;
            for ((outcome, rejection), incoming) in outcomes.iter_mut().zip(rejections).zip(&batch) {
                if let (Some(rejection), true) = (rejection, needs_known_user(incoming, outcome)) {
                    *outcome = Outcome::Rejected(rejection);
                }
            }
        }
        let now = batch.iter().map(|incoming| incoming.event.received_at.as_millisecond()).max().unwrap_or(i64::MIN);
        let tx = self.log.transaction()?;
        let sealing = if self.dedup.seal_due(now) { Some(self.dedup.seal(&tx, self.next_seq - 1, now)?) } else { None };
        let prunable = applied.min(sealing.as_ref().map_or(self.dedup.sealed_through(), |sealing| sealing.through()));
        if prunable > self.pruned {
            tx.prepare_cached("DELETE FROM log WHERE seq <= ?1")?.execute([prunable])?;
        }
        let mut appended = Vec::with_capacity(batch.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO log (seq, workspace_id, digest, event_type, occurred_at, received_at, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (incoming, outcome) in batch.into_iter().zip(&outcomes) {
                if !matches!(outcome, Outcome::Accepted) {
                    continue;
                }
                let seq = self.next_seq + appended.len() as i64;
                let event = &incoming.event;
                insert.execute(params![
                    seq,
                    incoming.workspace_id,
                    incoming.digest.as_slice(),
                    event.kind.event_type().as_str(),
                    event.time.as_millisecond(),
                    event.received_at.as_millisecond(),
                    event.payload,
                ])?;
                appended.push(incoming);
            }
        }
        tx.commit()?;
        super::crash::reached("log-after-commit");
        self.pruned = self.pruned.max(prunable);
        if let Some(sealing) = sealing {
            self.dedup.sealed(sealing);
        }
        if !appended.is_empty() {
            for incoming in &appended {
                self.dedup.remember(incoming.digest, incoming.event.received_at.as_millisecond());
            }
            let first = self.next_seq;
            self.next_seq += appended.len() as i64;
            // Handed over before the projection learns of them, so that it finds them there.
            progress.handoff.give(first, appended);
            progress.marks().appended = self.next_seq - 1;
            progress.changed.notify_all();
        }
        Ok(outcomes)
    }

    /// Deletes every applied entry from the log now, sealing the digests of those not
    /// sealed yet, and empties the write-ahead file that still held copies of them.
    pub fn prune(&mut self, progress: &Progress) -> Result<()> {
        let applied = progress.marks().applied;
        let tx = self.log.transaction()?;
        // No run expires here: only appends, which know the time, drop runs.
        let sealing = self.dedup.seal(&tx, self.next_seq - 1, i64::MIN)?;
        tx.prepare_cached("DELETE FROM log WHERE seq <= ?1")?.execute([applied])?;
        tx.commit()?;
        super::checkpoint::truncate(&self.log)?;
        self.dedup.sealed(sealing);
        self.pruned = self.pruned.max(applied);
        Ok(())
    }

    /// Whether a messageId digest was taken within the window.
    pub fn seen(&self, digest: &[u8; 16]) -> Result<bool> {
        self.dedup.contains(&self.log, digest)
    }

    /// `Accepted` for each event, `Duplicate` for a messageId taken within the window or
    /// earlier in the batch.
    fn deduplicate(&self, batch: &[Incoming]) -> Result<Vec<Outcome>> {
        let mut in_batch = HashSet::with_capacity(batch.len());
        let mut outcomes = Vec::with_capacity(batch.len());
        for incoming in batch {
            let duplicate = !in_batch.insert(incoming.digest) || self.seen(&incoming.digest)?;
            outcomes.push(if duplicate { Outcome::Duplicate } else { Outcome::Accepted });
        }
        Ok(outcomes)
    }
}

/// Seals the messageIds a store kept in the main database before the event log into a
/// run, then drops that table: an upgrade forgets no messageId inside the window.
fn adopt_message_ids(writer: &Mutex<Writer>, log: &mut Connection, dedup: &mut Dedup, now: i64) -> Result<()> {
    let mut writer = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let connection = &mut writer.connection;
    let exists: bool = connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'message_ids')",
        [],
        |row| row.get(0),
    )?;
    if !exists {
        return Ok(());
    }
    let digests: Vec<[u8; 16]> = connection
        .prepare("SELECT digest FROM message_ids")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !digests.is_empty() {
        dedup.adopt(log, digests, now)?;
    }
    connection.execute_batch("DROP TABLE message_ids")?;
    Ok(())
}

fn needs_known_user(incoming: &Incoming, outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Accepted) && crate::plan::needs_known_user(&incoming.event)
}

/// The projection loop: applies the log after the watermark until the store is dropped.
fn project(reader: Connection, writer: Arc<Mutex<Writer>>, progress: Arc<Progress>, sink: SinkSlot) {
    let mut failures = 0u32;
    loop {
        let (from, backlog, closing) = {
            let marks = progress.marks();
            let marks = progress
                .changed
                .wait_while(marks, |marks| marks.applied >= marks.appended && !marks.closing)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if marks.applied >= marks.appended {
                return;
            }
            (marks.applied, marks.appended - marks.applied, marks.closing)
        };
        if backlog < GATHER_BELOW && !closing {
            // A trickle of small appends (single identifies) would otherwise cost one
            // projection transaction, and its fsync, each: gathering for a moment lets one
            // transaction apply them all. A read after a 200 waits that much longer at most.
            std::thread::sleep(GATHER);
        }
        match apply_after(&reader, &writer, &progress.handoff, from) {
            Ok((applied, batch, outcomes)) => {
                failures = 0;
                // Reported before the watermark moves, so whoever waited for it finds the
                // events counted and shown.
                let sink = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
                if let Some(sink) = sink {
                    sink(&batch, &outcomes);
                }
                progress.marks().applied = applied;
                progress.applied.send_replace(applied);
                progress.changed.notify_all();
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::error!(%error, after = from, "the projection could not apply the event log; retrying");
                std::thread::sleep(Duration::from_millis(100u64 << failures.min(6)));
            }
        }
    }
}

/// Applies the next batch of the log after `from`; returns the new watermark, the events
/// applied and what each did.
fn apply_after(
    reader: &Connection,
    writer: &Mutex<Writer>,
    handoff: &Handoff,
    from: i64,
) -> Result<(i64, Vec<Incoming>, Vec<Outcome>)> {
    let (last, events) = match handoff.take(from, PROJECTION_BATCH) {
        Ok(handed) => (handed.last().map_or(from, |(seq, _)| *seq), handed),
        Err(handed_from) => {
            let before = handed_from.unwrap_or(i64::MAX);
            let rows = read_after(reader, from, before, PROJECTION_BATCH)?;
            let Some(last) = rows.last().map(|(seq, _)| *seq) else { return Ok((from, Vec::new(), Vec::new())) };
            (last, crate::plan::reparse_entries(&rows))
        }
    };
    let (seqs, mut batch): (Vec<i64>, Vec<Incoming>) = events.into_iter().unzip();
    let mut writer = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let Writer { connection, cache } = &mut *writer;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut applied = from;
    // One transaction per part, each with its own watermark (`plan::deletion_runs`).
    for run in crate::plan::deletion_runs(&batch) {
        let through = if run.end == batch.len() { last } else { seqs[run.end - 1] };
        match write::write_events(connection, cache, &batch[run], Some(through)) {
            Ok(run_outcomes) => {
                super::crash::reached("projection-after-commit");
                outcomes.extend(run_outcomes);
                applied = through;
            }
            Err(error) => {
                // What the failed part taught the cache was rolled back with it.
                cache.clear();
                if applied == from {
                    return Err(error);
                }
                // The parts before it are committed: report them; the next pass retries the rest.
                tracing::warn!(%error, after = applied, "a projection transaction failed; retrying from there");
                break;
            }
        }
    }
    batch.truncate(outcomes.len());
    Ok((applied, batch, outcomes))
}

/// Up to `limit` log entries after `from` and before `before`, in order.
fn read_after(reader: &Connection, from: i64, before: i64, limit: usize) -> Result<Vec<(i64, PendingEvent)>> {
    let mut statement = reader.prepare_cached(
        "SELECT seq, workspace_id, event_type, payload, occurred_at, received_at FROM log
         WHERE seq > ?1 AND seq < ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = statement.query_map(params![from, before, limit as i64], |row| {
        Ok((row.get::<_, i64>(0)?, write::pending_event(row)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The watermark stored in the main database.
pub fn stored_watermark(connection: &Connection) -> Result<i64> {
    Ok(connection
        .query_row("SELECT applied_seq FROM projection WHERE id = 1", [], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Tells the projection to finish what is appended and stop.
pub fn close(progress: &Progress) {
    progress.marks().closing = true;
    progress.changed.notify_all();
}
