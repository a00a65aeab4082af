//! Which messageIds the event log has taken, for at least seven days, without a B-tree keyed
//! by random digests on the ingest path.
//!
//! The digests of recent events are kept in memory, exactly. Older ones are *sealed* into
//! runs: a run is written once, sorted (an append at the right edge of one `WITHOUT ROWID`
//! table in the log file), with a Bloom filter kept in memory and stored beside it. A probe
//! asks the memory set, then each run whose filter says "maybe" (about one in a hundred
//! when the digest is new). A run is dropped whole once its newest event is older than
//! [`WINDOW_MS`].
//!
//! Nothing is forgotten across a restart: the unsealed digests are those of the log entries
//! after the last seal, and the log keeps every entry until it is sealed (the appender prunes
//! no further than [`Dedup::sealed_through`]). A run whose stored filter is missing or
//! damaged gets a new one built from its digests.

use std::collections::HashSet;

use rusqlite::{params, Connection};

use crate::Result;

/// How long a messageId is remembered, at least: the promised seven days, and a day more so that a
/// run is only dropped when every digest in it is older than seven days.
pub const WINDOW_MS: i64 = 8 * 24 * 3_600_000;
/// Unsealed digests that trigger a seal.
const SEAL_AT: usize = 200_000;
/// The longest a digest stays unsealed, by receive time: the log is pruned up to the last
/// seal, so this bounds how much of it a quiet server keeps.
const SEAL_AFTER_MS: i64 = 3_600_000;
/// A run smaller than this is merged into the next seal's run, so that frequent small seals
/// (a quiet server, erasures) do not multiply the filters every probe asks.
const MERGE_BELOW: i64 = 50_000;
/// Bits per digest in a run's filter; with [`HASHES`] probes, about 1 % false positives.
const BITS_PER_DIGEST: usize = 10;
const HASHES: u64 = 7;

/// The schema of the deduplication state, in the log file.
pub const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS dedup_runs (
        id           INTEGER PRIMARY KEY,
        newest_at    INTEGER NOT NULL,
        size         INTEGER NOT NULL,
        filter       BLOB
    );
    CREATE TABLE IF NOT EXISTS dedup_digests (
        run     INTEGER NOT NULL,
        digest  BLOB    NOT NULL,
        PRIMARY KEY (run, digest)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS dedup_state (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        sealed_through  INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO dedup_state (id, sealed_through) VALUES (1, 0);";

/// A set of digests that may say "maybe" for a digest it does not hold, never "no" for one
/// it does.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    words: Vec<u64>,
}

impl Filter {
    fn with_capacity(digests: usize) -> Filter {
        let bits = (digests.max(1) * BITS_PER_DIGEST).next_multiple_of(64);
        Filter { words: vec![0; bits / 64] }
    }

    fn bits(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    fn insert(&mut self, digest: &[u8; 16]) {
        for bit in positions(self.bits(), digest) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    fn may_contain(&self, digest: &[u8; 16]) -> bool {
        positions(self.bits(), digest).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|word| word.to_le_bytes()).collect()
    }

    /// A stored filter, unless it is missing or damaged.
    fn from_bytes(bytes: &[u8]) -> Option<Filter> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(8) {
            return None;
        }
        let words = bytes.chunks_exact(8).map(|chunk| u64::from_le_bytes(chunk.try_into().expect("eight"))).collect();
        Some(Filter { words })
    }
}

/// The bit positions of a digest in a filter of `bits` bits: the digest is a hash already,
/// so its two halves seed the probes (double hashing).
fn positions(bits: u64, digest: &[u8; 16]) -> impl Iterator<Item = usize> {
    let first = u64::from_le_bytes(digest[..8].try_into().expect("eight bytes"));
    let step = u64::from_le_bytes(digest[8..].try_into().expect("eight bytes")) | 1;
    (0..HASHES).map(move |i| (first.wrapping_add(i.wrapping_mul(step)) % bits) as usize)
}

/// A sealed run, as memory holds it.
#[derive(Debug)]
struct Run {
    id: i64,
    newest_at: i64,
    size: i64,
    filter: Filter,
}

/// The messageIds taken within the window.
#[derive(Debug)]
pub struct Dedup {
    recent: HashSet<[u8; 16]>,
    /// Receive times of the oldest and newest unsealed digests.
    recent_span: Option<(i64, i64)>,
    runs: Vec<Run>,
    sealed_through: i64,
}

impl Dedup {
    /// Loads the runs (rebuilding a filter that is missing or damaged) and the digests of
    /// the log entries after the last seal.
    pub fn load(log: &Connection) -> Result<Dedup> {
        let sealed_through: i64 = log.query_row("SELECT sealed_through FROM dedup_state", [], |row| row.get(0))?;
        let stored: Vec<(i64, i64, i64, Option<Vec<u8>>)> = log
            .prepare("SELECT id, newest_at, size, filter FROM dedup_runs ORDER BY id")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut runs = Vec::with_capacity(stored.len());
        for (id, newest_at, size, filter) in stored {
            let filter = match filter.as_deref().and_then(Filter::from_bytes) {
                Some(filter) => filter,
                None => {
                    let filter = rebuild_filter(log, id)?;
                    log.execute("UPDATE dedup_runs SET filter = ?2 WHERE id = ?1", params![id, filter.to_bytes()])?;
                    tracing::warn!(run = id, "a messageId filter was missing or damaged; it was rebuilt");
                    filter
                }
            };
            runs.push(Run { id, newest_at, size, filter });
        }
        let mut dedup = Dedup { recent: HashSet::new(), recent_span: None, runs, sealed_through };
        let mut statement = log.prepare("SELECT digest, received_at FROM log WHERE seq > ?1")?;
        let mut rows = statement.query([sealed_through])?;
        while let Some(row) = rows.next()? {
            dedup.remember(row.get(0)?, row.get(1)?);
        }
        Ok(dedup)
    }

    /// Whether a messageId digest was taken within the window.
    pub fn contains(&self, log: &Connection, digest: &[u8; 16]) -> Result<bool> {
        if self.recent.contains(digest) {
            return Ok(true);
        }
        let mut probe = log.prepare_cached("SELECT 1 FROM dedup_digests WHERE run = ?1 AND digest = ?2")?;
        for run in self.runs.iter().rev() {
            if run.filter.may_contain(digest) && probe.exists(params![run.id, digest.as_slice()])? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Takes the digest of an event appended to the log, received at `received_at`.
    pub fn remember(&mut self, digest: [u8; 16], received_at: i64) {
        self.recent.insert(digest);
        self.recent_span = Some(match self.recent_span {
            Some((oldest, newest)) => (oldest.min(received_at), newest.max(received_at)),
            None => (received_at, received_at),
        });
    }

    /// The last log sequence number whose digest is sealed: the log must keep every entry
    /// after it.
    pub fn sealed_through(&self) -> i64 {
        self.sealed_through
    }

    /// Whether the unsealed digests are many or old enough to seal, as of `now`.
    pub fn seal_due(&self, now: i64) -> bool {
        self.recent.len() >= SEAL_AT
            || self.recent_span.is_some_and(|(oldest, _)| now.saturating_sub(oldest) >= SEAL_AFTER_MS)
    }

    /// Seals the unsealed digests (those of the log entries up to `through`) into a run,
    /// merging the newest run into it when that one is small, and drops the runs older
    /// than the window as of `now`, in the caller's transaction. Call [`Dedup::sealed`]
    /// once it commits.
    pub fn seal(&self, tx: &Connection, through: i64, now: i64) -> Result<Sealing> {
        let mut dropped: Vec<i64> =
            self.runs.iter().filter(|run| run.newest_at < now.saturating_sub(WINDOW_MS)).map(|run| run.id).collect();
        let mut run = None;
        if let Some((_, recent_newest)) = self.recent_span {
            let mut digests: Vec<[u8; 16]> = self.recent.iter().copied().collect();
            let mut newest_at = recent_newest;
            let absorbed = self.runs.last().filter(|last| last.size < MERGE_BELOW && !dropped.contains(&last.id));
            if let Some(absorbed) = absorbed {
                let mut statement = tx.prepare_cached("SELECT digest FROM dedup_digests WHERE run = ?1")?;
                for digest in statement.query_map([absorbed.id], |row| row.get(0))? {
                    digests.push(digest?);
                }
                newest_at = newest_at.max(absorbed.newest_at);
                dropped.push(absorbed.id);
            }
            // Sorted, the run's rows go to the right edge of the table one page after another.
            digests.sort_unstable();
            digests.dedup();
            let size = digests.len() as i64;
            tx.execute("INSERT INTO dedup_runs (newest_at, size) VALUES (?1, ?2)", [newest_at, size])?;
            let id = tx.last_insert_rowid();
            let mut filter = Filter::with_capacity(digests.len());
            let mut insert = tx.prepare_cached("INSERT INTO dedup_digests (run, digest) VALUES (?1, ?2)")?;
            for digest in &digests {
                insert.execute(params![id, digest.as_slice()])?;
                filter.insert(digest);
            }
            tx.execute("UPDATE dedup_runs SET filter = ?2 WHERE id = ?1", params![id, filter.to_bytes()])?;
            run = Some(Run { id, newest_at, size, filter });
        }
        for id in &dropped {
            tx.execute("DELETE FROM dedup_digests WHERE run = ?1", [id])?;
            tx.execute("DELETE FROM dedup_runs WHERE id = ?1", [id])?;
        }
        tx.execute("UPDATE dedup_state SET sealed_through = ?1", [through])?;
        Ok(Sealing { run, dropped, through })
    }

    /// Takes a committed seal into memory.
    pub fn sealed(&mut self, sealing: Sealing) {
        self.runs.retain(|run| !sealing.dropped.contains(&run.id));
        self.runs.extend(sealing.run);
        self.recent.clear();
        self.recent_span = None;
        self.sealed_through = sealing.through;
    }

    /// Seals the digests of a store that kept them in the main database's `message_ids`
    /// table (before the event log), as one run received `now`, so an upgrade forgets none.
    pub fn adopt(&mut self, log: &mut Connection, digests: Vec<[u8; 16]>, now: i64) -> Result<()> {
        let tx = log.transaction()?;
        let mut filter = Filter::with_capacity(digests.len());
        let size = digests.len() as i64;
        tx.execute("INSERT INTO dedup_runs (newest_at, size) VALUES (?1, ?2)", [now, size])?;
        let id = tx.last_insert_rowid();
        {
            let mut insert = tx.prepare_cached("INSERT OR IGNORE INTO dedup_digests (run, digest) VALUES (?1, ?2)")?;
            for digest in &digests {
                insert.execute(params![id, digest.as_slice()])?;
                filter.insert(digest);
            }
        }
        tx.execute("UPDATE dedup_runs SET filter = ?2 WHERE id = ?1", params![id, filter.to_bytes()])?;
        tx.commit()?;
        self.runs.push(Run { id, newest_at: now, size, filter });
        Ok(())
    }
}

/// A seal written in a transaction, to take into memory once it commits.
#[derive(Debug)]
pub struct Sealing {
    run: Option<Run>,
    /// Runs deleted: expired, or merged into the new one.
    dropped: Vec<i64>,
    through: i64,
}

impl Sealing {
    /// The last log sequence number it seals.
    pub fn through(&self) -> i64 {
        self.through
    }
}

fn rebuild_filter(log: &Connection, run: i64) -> Result<Filter> {
    let count: i64 = log.query_row("SELECT COUNT(*) FROM dedup_digests WHERE run = ?1", [run], |row| row.get(0))?;
    let mut filter = Filter::with_capacity(count as usize);
    let mut statement = log.prepare("SELECT digest FROM dedup_digests WHERE run = ?1")?;
    let mut rows = statement.query([run])?;
    while let Some(row) = rows.next()? {
        filter.insert(&row.get::<_, [u8; 16]>(0)?);
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u64) -> [u8; 16] {
        use sha2::{Digest, Sha256};
        Sha256::digest(n.to_le_bytes())[..16].try_into().unwrap()
    }

    #[test]
    fn a_filter_never_says_no_to_what_it_holds_and_rarely_yes_to_what_it_does_not() {
        let mut filter = Filter::with_capacity(10_000);
        for n in 0..10_000 {
            filter.insert(&digest(n));
        }
        assert!((0..10_000).all(|n| filter.may_contain(&digest(n))));
        let false_positives = (10_000..110_000).filter(|n| filter.may_contain(&digest(*n))).count();
        assert!(false_positives < 2_000, "{false_positives} false positives in 100,000");
        assert_eq!(Filter::from_bytes(&filter.to_bytes()), Some(filter));
        assert_eq!(Filter::from_bytes(&[1, 2, 3]), None);
    }
}
