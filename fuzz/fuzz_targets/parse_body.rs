//! Any bytes as an ingest body: split into events and read each as every route would. The
//! parser must never panic and every reading must keep kith's invariants (see the shared file).
#![no_main]

#[path = "../../crates/kith-core/tests/common/invariants.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    invariants::check_body(data);
});
