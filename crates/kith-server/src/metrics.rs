//! Counters for `/metrics`, in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use kith_core::Code;
use kith_store::pipeline::PipelineStats;
use kith_store::{Activity, LogPosition, Outcome};

/// Ingest counters.
#[derive(Default)]
pub struct Metrics {
    stored: AtomicU64,
    pending: AtomicU64,
    interactions_added: AtomicU64,
    duplicates: AtomicU64,
    suppressed: AtomicU64,
    skipped: AtomicU64,
    rejections: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// An event refused while reading it.
    pub fn event_rejected(&self, code: Code) {
        self.count_rejection(code.as_str());
    }

    /// A whole request refused (bad key, too large, bad JSON…).
    pub fn request_refused(&self, code: &str) {
        self.count_rejection(code);
    }

    fn count_rejection(&self, code: &str) {
        let mut rejections = self.rejections.lock().unwrap_or_else(|p| p.into_inner());
        *rejections.entry(code.to_owned()).or_default() += 1;
    }

    /// An event the `integrations` object kept away.
    pub fn event_skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// What the writer did with an event.
    pub fn event_outcome(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Stored(stored) => {
                self.stored.fetch_add(1, Ordering::Relaxed);
                if stored.pending {
                    self.pending.fetch_add(1, Ordering::Relaxed);
                }
                if stored.activity == Activity::Added {
                    self.interactions_added.fetch_add(1, Ordering::Relaxed);
                }
            }
            Outcome::Accepted => {
                self.stored.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Duplicate => {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Suppressed => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Rejected(rejection) => self.event_rejected(rejection.code),
        }
    }

    /// The exposition text.
    pub fn render(&self, pipeline: &PipelineStats) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        counter(&mut out, "kith_events_stored_total", "Events committed.", load(&self.stored));
        counter(&mut out, "kith_events_pending_total", "Events stored as pending (unknown user).", load(&self.pending));
        counter(
            &mut out,
            "kith_interactions_added_total",
            "Activity interactions created.",
            load(&self.interactions_added),
        );
        counter(
            &mut out,
            "kith_events_duplicate_total",
            "Events acknowledged as replays of a messageId.",
            load(&self.duplicates),
        );
        counter(
            &mut out,
            "kith_events_suppressed_total",
            "Events dropped for a suppressed email.",
            load(&self.suppressed),
        );
        counter(
            &mut out,
            "kith_events_filtered_total",
            "Events the integrations object kept away.",
            load(&self.skipped),
        );
        let _ = writeln!(
            out,
            "# HELP kith_rejections_total Refused events and requests by code.\n# TYPE kith_rejections_total counter"
        );
        for (code, count) in self.rejections.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "kith_rejections_total{{code=\"{code}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP kith_ingest_queue_events Events waiting for or in the writer.\n# TYPE kith_ingest_queue_events gauge\nkith_ingest_queue_events {}",
            pipeline.queued.load(Ordering::Relaxed)
        );
        counter(&mut out, "kith_commits_total", "Ingest transactions committed.", load(&pipeline.commits));
        counter(&mut out, "kith_commit_failures_total", "Ingest transactions that failed.", load(&pipeline.failures));
        counter(
            &mut out,
            "kith_committed_events_total",
            "Events in committed transactions.",
            load(&pipeline.committed_events),
        );
        let _ = writeln!(
            out,
            "# HELP kith_commit_seconds Time spent in ingest transactions.\n# TYPE kith_commit_seconds summary\nkith_commit_seconds_sum {}\nkith_commit_seconds_count {}",
            load(&pipeline.commit_micros) as f64 / 1e6,
            load(&pipeline.commits)
        );
        let _ = writeln!(
            out,
            "# HELP kith_commit_seconds_max Longest ingest transaction since start.\n# TYPE kith_commit_seconds_max gauge\nkith_commit_seconds_max {}",
            load(&pipeline.max_commit_micros) as f64 / 1e6
        );
        out
    }
}

/// The event log's gauges: what was acknowledged, what reads see, and the lag between.
pub fn render_log_position(position: LogPosition) -> String {
    let mut out = String::new();
    for (name, help, value) in [
        ("kith_event_log_appended", "The last event-log sequence number acknowledged.", position.appended),
        ("kith_event_log_applied", "The last event-log sequence number the projection applied.", position.applied),
        (
            "kith_projection_lag_events",
            "Acknowledged events the projection has not applied yet.",
            position.appended - position.applied,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    out
}
