#!/usr/bin/env bash
# Fuzzes event parsing and the Nat rules (fuzz/fuzz_targets/parse_body.rs) with libFuzzer.
#
#   scripts/fuzz.sh [SECONDS]        # default 600
#
# Needs a nightly toolchain and cargo-fuzz, as libFuzzer's instrumentation is unstable:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# The repository's fixtures seed the corpus; new inputs go to fuzz/corpus/parse_body and any
# crash to fuzz/artifacts/parse_body (both git-ignored). Replay a crash with
#   cargo +nightly fuzz run parse_body fuzz/artifacts/parse_body/crash-…
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-600}"
mkdir -p corpus/parse_body
find ../tests/fixtures -name '*.json' -o -name '*.txt' | while read -r file; do
  cp "$file" "corpus/parse_body/fixture-$(basename "$(dirname "$file")")-$(basename "$file")"
done
# A 600 KB limit lets inputs reach past the 500 KB request limit; -timeout flags slow inputs.
exec nice -n 10 cargo +nightly fuzz run parse_body corpus/parse_body -- \
  -max_total_time="$seconds" -max_len=614400 -timeout=10 -print_final_stats=1
