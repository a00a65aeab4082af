//! Crash points: where the tests that kill kith at a chosen step make it die.
//!
//! `KITH_CRASH_POINT=<step>:<n>` aborts the process the n-th time it reaches `<step>`, as a
//! power cut or a `kill -9` would stop it there: no destructor runs, nothing is flushed. The
//! steps are the ones the event log's guarantees hang on (`log-after-commit`,
//! `projection-before-commit`, `projection-after-commit`). Unset, as in any real deployment,
//! a step costs one check of a value read once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct CrashPoint {
    step: String,
    at: u64,
    reached: AtomicU64,
}

fn configured() -> Option<&'static CrashPoint> {
    static POINT: OnceLock<Option<CrashPoint>> = OnceLock::new();
    POINT
        .get_or_init(|| {
            let value = std::env::var("KITH_CRASH_POINT").ok()?;
            let (step, at) = value.split_once(':').unwrap_or((value.as_str(), "1"));
            Some(CrashPoint { step: step.to_owned(), at: at.parse().ok()?, reached: AtomicU64::new(0) })
        })
        .as_ref()
}

/// Marks that `step` is reached; aborts the process if this is where it was told to die.
pub fn reached(step: &str) {
    if let Some(point) = configured().filter(|point| point.step == step) {
        if point.reached.fetch_add(1, Ordering::SeqCst) + 1 == point.at {
            eprintln!("KITH_CRASH_POINT: aborting at {step}");
            std::process::abort();
        }
    }
}
