//! Which messageIds are taken (SPEC §1.4), for at least seven days, in `message_ids`
//! partitioned by the day (UTC) each event was received.
//!
//! A claim inserts the event's digest into its receive day's partition and looks for it in
//! the [`WINDOW_DAYS`] partitions before. Partitions are created up to two days ahead and
//! dropped whole once older than the window ([`Partitions::prepare`]), so the table holds a
//! bounded number of days, and the partition taking today's inserts is a small, hot B-tree
//! instead of one that grows for ever.
//!
//! Nodes' clocks differ a little, so near midnight two nodes could put the same digest in
//! two days' partitions, each insert blind to the other until it commits. An event received
//! within [`BOUNDARY_MARGIN_MS`] of midnight is therefore inserted into both days'
//! partitions, every claim inserting in (day, digest) order: two claims of one digest racing
//! across midnight meet in a partition they both insert into, where the later one waits for
//! the earlier to commit and finds its row. A claim holds only if every insert it made was
//! new and the days before hold no row.

use std::collections::{BTreeSet, HashSet};
use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::civil::Date;
use jiff::Timestamp;
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::records::Incoming;
use crate::Result;

/// The days before its receive day in which a digest is looked for: with the receive day's
/// own partition, every messageId taken in the last seven days.
const WINDOW_DAYS: i32 = 7;
/// Partitions kept behind the newest day a node writes (those of earlier days are dropped):
/// the window, and one day more, which a claim just after midnight reads and which a node
/// whose clock runs ahead must not drop under a node behind it.
const KEEP_DAYS: i32 = WINDOW_DAYS + 1;
/// How close to midnight an event's digest goes into both days' partitions: more than
/// nodes' clocks are expected to differ by.
const BOUNDARY_MARGIN_MS: i64 = 15 * 60_000;
const DAY_MS: i64 = 86_400_000;
/// The advisory lock under which partitions are created and dropped.
const PARTITIONS_LOCK: i64 = 0x6b69_7468_0005;
/// The longest the daily maintenance waits to lock the table.
const MAINTENANCE_LOCK_WAIT: Duration = Duration::from_secs(1);
/// How long after a failed maintenance it is tried again.
const MAINTENANCE_RETRY: Duration = Duration::from_secs(60);
/// Every partition is named this followed by its day, `YYYYMMDD`.
const PARTITION_PREFIX: &str = "message_ids_";

/// Message digests.
pub type Digests = HashSet<[u8; 16]>;

/// The day (days since the epoch, UTC) of a time in milliseconds.
fn day_of(ms: i64) -> i32 {
    ms.div_euclid(DAY_MS) as i32
}

/// The partitions an event received at `received` (ms) is inserted into, in order.
fn claim_days(received: i64) -> RangeInclusive<i32> {
    let day = day_of(received);
    let into_day = received.rem_euclid(DAY_MS);
    let first = if into_day < BOUNDARY_MARGIN_MS { day - 1 } else { day };
    let last = if into_day >= DAY_MS - BOUNDARY_MARGIN_MS { day + 1 } else { day };
    first..=last
}

fn partition_name(day: i32) -> Option<String> {
    let date = Timestamp::from_second(i64::from(day) * 86_400).ok()?.to_zoned(jiff::tz::TimeZone::UTC).date();
    Some(format!("{PARTITION_PREFIX}{}", date.strftime("%Y%m%d")))
}

fn partition_day(name: &str) -> Option<i32> {
    let date = Date::strptime("%Y%m%d", name.strip_prefix(PARTITION_PREFIX)?).ok()?;
    let second = date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp().as_second();
    Some(second.div_euclid(86_400) as i32)
}

/// Claims every messageId of the batch: returns the digests this batch claimed and those
/// that were taken already (by an earlier event, or by another append that committed first).
pub async fn claim(tx: &Transaction<'_>, batch: &[Incoming]) -> Result<(Digests, Digests)> {
    let days = |incoming: &Incoming| claim_days(incoming.event.received_at.as_millisecond());
    // The days before a claim's first are written by no claim racing it: read them first, and
    // insert only the digests they do not hold, so that a duplicate of an earlier day's
    // event does not renew it.
    let earliest = batch.iter().map(|incoming| *days(incoming).start()).min().unwrap_or_default();
    let latest = batch.iter().map(|incoming| *days(incoming).start()).max().unwrap_or_default();
    let unique: Vec<&[u8]> =
        batch.iter().map(|incoming| incoming.digest.as_slice()).collect::<BTreeSet<_>>().into_iter().collect();
    let earlier: Vec<(i32, [u8; 16])> = tx
        .query(
            "SELECT day, digest FROM message_ids WHERE day >= $1 AND day < $2 AND digest = ANY($3)",
            &[&(earliest - WINDOW_DAYS), &latest, &unique],
        )
        .await?
        .iter()
        .filter_map(|row| Some((row.get(0), row.get::<_, &[u8]>(1).try_into().ok()?)))
        .collect();
    let taken_before = |incoming: &Incoming| {
        let first = *days(incoming).start();
        earlier.iter().any(|(day, digest)| *digest == incoming.digest && (first - WINDOW_DAYS..first).contains(day))
    };
    let rows: BTreeSet<(i32, [u8; 16])> = batch
        .iter()
        .filter(|incoming| !taken_before(incoming))
        .flat_map(|incoming| days(incoming).map(|day| (day, incoming.digest)))
        .collect();
    // In (day, digest) order, so that claims inserting the same rows wait for each other in
    // one order.
    let (row_days, row_digests): (Vec<i32>, Vec<&[u8]>) =
        rows.iter().map(|(day, digest)| (*day, digest.as_slice())).unzip();
    let inserted: HashSet<(i32, [u8; 16])> = tx
        .query(
            "INSERT INTO message_ids (day, digest) SELECT * FROM unnest($1::int[], $2::bytea[])
             ON CONFLICT DO NOTHING RETURNING day, digest",
            &[&row_days, &row_digests],
        )
        .await?
        .iter()
        .filter_map(|row| Some((row.get(0), row.get::<_, &[u8]>(1).try_into().ok()?)))
        .collect();
    let mut claimed = Digests::with_capacity(batch.len());
    let mut seen = Digests::new();
    for incoming in batch {
        if !taken_before(incoming) && days(incoming).all(|day| inserted.contains(&(day, incoming.digest))) {
            claimed.insert(incoming.digest);
        } else {
            seen.insert(incoming.digest);
        }
    }
    Ok((claimed, seen))
}

/// Frees messageIds whose events were not stored (refused): a corrected retry is new.
pub async fn release(tx: &Transaction<'_>, digests: &[&[u8]]) -> Result<()> {
    if !digests.is_empty() {
        tx.execute("DELETE FROM message_ids WHERE digest = ANY($1)", &[&digests]).await?;
    }
    Ok(())
}

/// Whether an event received at `now` (ms) with this digest would be a duplicate.
pub async fn taken(c: &impl GenericClient, digest: &[u8; 16], now: i64) -> Result<bool> {
    let days = claim_days(now);
    let row = c
        .query_opt(
            "SELECT 1 FROM message_ids WHERE day >= $1 AND day <= $2 AND digest = $3 LIMIT 1",
            &[&(days.start() - WINDOW_DAYS), days.end(), &digest.as_slice()],
        )
        .await?;
    Ok(row.is_some())
}

/// The days whose partitions this node knows exist.
#[derive(Default)]
pub struct Partitions {
    ready: Mutex<Option<RangeInclusive<i32>>>,
    /// Until when a failed maintenance is not tried again (while no append needs it).
    quiet_until: Mutex<Option<Instant>>,
}

impl Partitions {
    /// Makes sure the partitions the batch inserts into exist, and tomorrow's. Once a day per
    /// node, at its first append of the day: creates the partitions up to the day after
    /// tomorrow and drops those older than the window. Creating and dropping a partition
    /// locks the whole table briefly; it waits at most [`MAINTENANCE_LOCK_WAIT`] for that,
    /// and if it cannot, the appends go on (their partitions exist) and it is tried again
    /// later.
    pub async fn prepare(&self, c: &mut Client, batch: &[Incoming]) -> Result<()> {
        let received = |incoming: &Incoming| incoming.event.received_at.as_millisecond();
        let (Some(oldest), Some(newest)) = (
            batch.iter().map(|incoming| day_of(received(incoming))).min(),
            batch.iter().map(|incoming| day_of(received(incoming))).max(),
        ) else {
            return Ok(());
        };
        let ready = self.ready.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let holds =
            |first: i32, last: i32| ready.as_ref().is_some_and(|ready| ready.contains(&first) && ready.contains(&last));
        let claims_covered = batch.iter().all(|incoming| {
            let days = claim_days(received(incoming));
            holds(*days.start(), *days.end())
        });
        if claims_covered && holds(newest + 1, newest + 1) {
            return Ok(());
        }
        let quiet = self
            .quiet_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|until| Instant::now() < until);
        if claims_covered && quiet {
            return Ok(());
        }
        match maintain(c, oldest - 1..=newest + 2, newest - KEEP_DAYS).await {
            Ok(made) => {
                *self.ready.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(made);
                Ok(())
            }
            Err(error) if claims_covered => {
                tracing::warn!(%error, "the messageId partitions of the coming days could not be made yet; trying again later");
                *self.quiet_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Some(Instant::now() + MAINTENANCE_RETRY);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

/// Creates the partitions of `days` that are missing and drops those of days before
/// `drop_before`, one node at a time. Returns `days`.
async fn maintain(c: &mut Client, days: RangeInclusive<i32>, drop_before: i32) -> Result<RangeInclusive<i32>> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITIONS_LOCK]).await?;
    // Creating or dropping a partition waits for every transaction using the table, and
    // every append waits behind it meanwhile: not for long.
    tx.batch_execute(&format!("SET LOCAL lock_timeout = {}", MAINTENANCE_LOCK_WAIT.as_millis())).await?;
    let existing: Vec<String> = tx
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'message_ids'::regclass",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let existing_days: HashSet<i32> = existing.iter().filter_map(|name| partition_day(name)).collect();
    for day in days.clone().filter(|day| !existing_days.contains(day)) {
        let Some(name) = partition_name(day) else { continue };
        tx.batch_execute(&format!(
            "CREATE TABLE \"{name}\" PARTITION OF message_ids FOR VALUES FROM ({day}) TO ({})",
            day + 1
        ))
        .await?;
    }
    for name in existing.iter().filter(|name| partition_day(name).is_some_and(|day| day < drop_before)) {
        tx.batch_execute(&format!("DROP TABLE \"{name}\"")).await?;
    }
    tx.commit().await?;
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_near_midnight_goes_into_both_days() {
        let day = 20_000;
        let midnight = i64::from(day) * DAY_MS;
        assert_eq!(claim_days(midnight + 12 * 3_600_000), day..=day);
        assert_eq!(claim_days(midnight), day - 1..=day);
        assert_eq!(claim_days(midnight + BOUNDARY_MARGIN_MS - 1), day - 1..=day);
        assert_eq!(claim_days(midnight + BOUNDARY_MARGIN_MS), day..=day);
        assert_eq!(claim_days(midnight + DAY_MS - BOUNDARY_MARGIN_MS), day..=day + 1);
        assert_eq!(claim_days(midnight + DAY_MS - 1), day..=day + 1);
    }

    #[test]
    fn partition_names_carry_their_day() {
        assert_eq!(partition_name(0).as_deref(), Some("message_ids_19700101"));
        let day = day_of("2026-11-30T23:59:00Z".parse::<Timestamp>().unwrap().as_millisecond());
        assert_eq!(partition_name(day).as_deref(), Some("message_ids_20261130"));
        assert_eq!(partition_day("message_ids_20261130"), Some(day));
        assert_eq!(partition_day("message_ids_unpartitioned"), None);
        assert_eq!(partition_day("events"), None);
    }
}
