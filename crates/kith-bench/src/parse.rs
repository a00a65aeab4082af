//! `kith-bench parse`: reading a workload's bodies as kith's ingest does, in this process, beside
//! a syntax-only read of the same bytes, which is the least any JSON reader pays. No server and
//! no disk: this isolates the CPU the ingest path spends before an event reaches storage.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use kith_core::envelope::{self, BodyShape};
use kith_core::event::{parse_event, ParseContext, Parsed};
use serde::de::IgnoredAny;

use crate::workload::Workload;

/// What one reading of the whole workload took.
struct Round {
    kith: Duration,
    syntax_only: Duration,
}

/// Reads every body `rounds` times each way and prints the median per event.
pub fn run(workload: &Workload, rounds: usize) -> anyhow::Result<()> {
    anyhow::ensure!(workload.events > 0, "the workload has no events");
    let ctx = ParseContext::live(None, Timestamp::now());
    let mut measured = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        let mut events = 0usize;
        for body in &workload.bodies {
            let envelope = envelope::split(body.as_bytes(), BodyShape::Batch)
                .map_err(|rejection| anyhow::anyhow!("a workload body is refused: {}", rejection.message))?;
            for item in envelope.items() {
                if let Ok(Parsed::Event(event)) = parse_event(item, &ctx) {
                    std::hint::black_box(&event);
                    events += 1;
                }
            }
        }
        let kith = start.elapsed();
        anyhow::ensure!(events == workload.events, "{events} of the workload's events were read");
        let start = Instant::now();
        for body in &workload.bodies {
            std::hint::black_box(serde_json::from_slice::<IgnoredAny>(body.as_bytes())?);
        }
        measured.push(Round { kith, syntax_only: start.elapsed() });
    }
    let events = workload.events as f64;
    let median = |pick: fn(&Round) -> Duration| {
        let mut times: Vec<Duration> = measured.iter().map(pick).collect();
        times.sort_unstable();
        times[times.len() / 2].as_secs_f64() * 1e6 / events
    };
    let (kith, syntax_only) = (median(|round| round.kith), median(|round| round.syntax_only));
    println!(
        "{}: kith reads {kith:.2} µs/event ({:.0} events/s on one core), a syntax-only read {syntax_only:.2} µs/event: {:.1}× (median of {} rounds)",
        workload.name,
        1e6 / kith,
        kith / syntax_only,
        measured.len()
    );
    Ok(())
}
