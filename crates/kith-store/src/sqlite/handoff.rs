//! Events passed from the appender to the projection as parsed, so that the projection
//! does not parse again what the appender parsed a moment before.
//!
//! The log stays the truth: the handoff is a bounded cache of its newest entries. The
//! projection takes entries from it only when they continue exactly where its watermark
//! stands, and reads (and parses) the log otherwise: after a restart, or when the
//! projection fell so far behind that the appender stopped handing events over.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::records::Incoming;

/// At most this many events wait in the handoff (about a kilobyte each): a little more
/// than one projection batch, so that the projection keeps up from it under full load
/// without the cache growing with a backlog.
const LIMIT: usize = 12_000;

/// The newest appended events, in sequence order and without gaps.
#[derive(Default)]
pub struct Handoff {
    queue: Mutex<VecDeque<(i64, Incoming)>>,
}

impl Handoff {
    fn queue(&self) -> MutexGuard<'_, VecDeque<(i64, Incoming)>> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands over events just committed to the log, numbered from `first`. They are
    /// dropped instead when the handoff is full: the projection reads them from the log.
    pub fn give(&self, first: i64, events: Vec<Incoming>) {
        let mut queue = self.queue();
        if queue.back().is_some_and(|(last, _)| last + 1 != first) {
            // Something before `first` was not handed over: what is here can no longer
            // continue into these events, and the projection reads the gap from the log.
            queue.clear();
        }
        if queue.len() + events.len() > LIMIT {
            return;
        }
        queue.extend((first..).zip(events));
    }

    /// Up to `limit` events numbered from `after + 1` on, if the handoff holds the event
    /// right after `after`. Otherwise the first number it holds beyond `after` (if any):
    /// the log must supply what comes before it.
    pub fn take(&self, after: i64, limit: usize) -> Result<Vec<(i64, Incoming)>, Option<i64>> {
        let mut queue = self.queue();
        while queue.front().is_some_and(|(seq, _)| *seq <= after) {
            queue.pop_front();
        }
        match queue.front() {
            Some((seq, _)) if *seq == after + 1 => {
                let count = limit.min(queue.len());
                Ok(queue.drain(..count).collect())
            }
            front => Err(front.map(|(seq, _)| *seq)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(count: usize) -> Vec<Incoming> {
        let now = jiff::Timestamp::UNIX_EPOCH;
        (0..count)
            .map(|n| {
                let body = serde_json::json!({"type": "track", "event": "Opened", "userId": "u", "messageId": format!("m{n}"), "timestamp": "2026-01-01T00:00:00Z"});
                let ctx = kith_core::ParseContext { route_type: None, now, history: true };
                match kith_core::event::parse_value(&body, &ctx) {
                    Ok(kith_core::event::Parsed::Event(event)) => Incoming::new(1, *event),
                    other => panic!("the test event does not parse: {other:?}"),
                }
            })
            .collect()
    }

    fn seqs(taken: Vec<(i64, Incoming)>) -> Vec<i64> {
        taken.into_iter().map(|(seq, _)| seq).collect()
    }

    #[test]
    fn hands_over_only_what_continues_the_watermark() {
        let handoff = Handoff::default();
        handoff.give(11, events(3));
        assert_eq!(handoff.take(9, 10).map(seqs).unwrap_err(), Some(11), "seq 10 must come from the log");
        assert_eq!(handoff.take(10, 2).map(seqs).unwrap(), vec![11, 12]);
        assert_eq!(handoff.take(12, 10).map(seqs).unwrap(), vec![13]);
        assert_eq!(handoff.take(13, 10).map(seqs).unwrap_err(), None);
    }

    #[test]
    fn drops_what_the_projection_already_applied_from_the_log() {
        let handoff = Handoff::default();
        handoff.give(1, events(5));
        assert_eq!(handoff.take(3, 10).map(seqs).unwrap(), vec![4, 5]);
    }

    #[test]
    fn a_gap_empties_the_handoff_and_a_full_one_takes_nothing() {
        let handoff = Handoff::default();
        handoff.give(1, events(2));
        handoff.give(5, events(1));
        assert_eq!(handoff.take(0, 10).map(seqs).unwrap_err(), Some(5), "1 and 2 were dropped with the gap");
        handoff.give(6, events(LIMIT));
        assert_eq!(handoff.take(4, LIMIT + 10).map(seqs).unwrap(), vec![5], "the batch over the limit was not taken");
    }
}
