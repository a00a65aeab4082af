#!/usr/bin/env bash
# The benchmarks in one run: builds release binaries, then `kith-bench suite` starts the
# bare axum reference and fresh kith servers in turn, drives them with the seeded workloads
# and prints a Markdown table of figures, references, ratios and targets (BENCHMARKS.md).
# When wrk is installed, single identifies flat out are cross-checked with it.
#
#   scripts/bench.sh                 # full sizes: 1,000,000 product events, 1,000,000 Engage identifies
#   scripts/bench.sh --quick         # 200,000 of each, 5 s timed phases
#   scripts/bench.sh --only product  # any `kith-bench suite` option, see `kith-bench suite --help`
#
# Run it on a quiet machine: other processes on the two cores move every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
cargo build --release -p kith-cli -p kith-bench >&2

args=()
if [ "${1:-}" = "--quick" ]; then
  shift
  args=(--seconds 5 --events 200000 --engage-users 200000)
fi

echo "## machine"
echo
echo "- $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "- $(uname -sr), $(rustc --version)"
echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
target/release/kith-bench suite "${args[@]}" "$@"

if ! command -v wrk >/dev/null; then
  echo
  echo "(wrk is not installed: \`apt-get install wrk\` adds a cross-check of single identifies)"
  exit 0
fi

# Cross-check: the same comparison with wrk, unique messageIds from scripts/wrk-identify.lua.
seconds=10
dir=target/bench-data/wrk
rm -rf "$dir" && mkdir -p "$dir"
port=$((20000 + RANDOM % 10000))
ref_port=$((port + 1))
KITH_LOG=warn target/release/kith --data-dir "$dir" serve --listen "127.0.0.1:$port" >"$dir/stdout" &
kith_pid=$!
target/release/kith-bench reference --listen "127.0.0.1:$ref_port" &
ref_pid=$!
trap 'kill $kith_pid $ref_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "api/contacts" "$dir/stdout" 2>/dev/null && break; sleep 0.1; done
key=$(awk '/write key/ {print $NF}' "$dir/stdout")
echo
echo "wrk -t2 -c64 -d${seconds}s --latency -s scripts/wrk-identify.lua (single identifies, flat out):"
for target in "reference 127.0.0.1:$ref_port" "kith 127.0.0.1:$port"; do
  set -- $target
  echo
  echo "$1:"
  wrk -t2 -c64 -d${seconds}s --latency -s scripts/wrk-identify.lua "http://$2" -- "$key" |
    grep -E 'Requests/sec|Non-2xx|Socket errors|^ +(50|99)%'
done
