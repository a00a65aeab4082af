//! Checkpoints of both files, on a thread of their own.
//!
//! Neither writer checkpoints inside a commit (`wal_autocheckpoint = 0` on the log and on the
//! main database): a checkpoint inside an append would hold up acknowledgements, and one
//! inside a projection transaction took about a twentieth of the projection's time. This
//! thread copies each write-ahead file into its database while the writers go on, often and
//! a little at a time (one large checkpoint a second made the slowest acknowledgements five
//! times slower), so that each writer can start its write-ahead file over instead of growing
//! it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::log::Progress;
use crate::{Result, StoreError};

/// The longest [`truncate`] tries.
const TRUNCATE_WAIT: Duration = Duration::from_secs(10);
/// How often the log is checkpointed: often, so that each append's fsync stays short.
const LOG_EVERY: Duration = Duration::from_millis(50);
/// How often the main database is checkpointed, in passes of the log's: the projection
/// rewrites the same hot pages (contacts, contact-days) batch after batch, and each
/// checkpoint writes every page changed since the last one once more (every pass: 6.0 KB
/// written per product event; once a second: 4.8 KB, and no slower acknowledgements).
const MAIN_EVERY: u64 = 20;

/// Starts the thread that checkpoints the log at `log` and the main database at `main`
/// until the store closes.
pub fn start(log: &Path, main: &Path, progress: Arc<Progress>) -> Result<()> {
    let log = open(log)?;
    let main = open(main)?;
    std::thread::Builder::new()
        .name("kith-checkpoint".into())
        .spawn(move || run(&log, &main, &progress))
        .map_err(|e| StoreError::caused("cannot start the checkpoint thread", e))?;
    Ok(())
}

fn open(path: &Path) -> Result<Connection> {
    let connection =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    connection.execute_batch("PRAGMA busy_timeout = 10000;")?;
    Ok(connection)
}

fn run(log: &Connection, main: &Connection, progress: &Progress) {
    for pass in 1u64.. {
        std::thread::sleep(LOG_EVERY);
        checkpoint(log, "the event log");
        if pass % MAIN_EVERY == 0 {
            checkpoint(main, "the database");
        }
        if progress.closing() {
            return;
        }
    }
}

/// Copies the whole write-ahead file into the database and empties it, so that nothing
/// deleted survives in it (an erasure). A checkpoint by this module's thread, or a reader,
/// makes SQLite answer "busy" instead of waiting: it tries again for a while.
pub fn truncate(connection: &Connection) -> Result<()> {
    let deadline = Instant::now() + TRUNCATE_WAIT;
    loop {
        let busy: i64 = connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StoreError::unavailable(format!(
                "the write-ahead file could not be emptied within {} s: a reader or a checkpoint held it",
                TRUNCATE_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A passive checkpoint: it copies what no reader still needs and never waits for one (with
/// nothing new to copy it costs a read of the write-ahead index).
fn checkpoint(connection: &Connection, what: &str) {
    if let Err(error) = connection.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
        tracing::warn!(%error, "{what} could not be checkpointed; the next pass tries again");
    }
}
