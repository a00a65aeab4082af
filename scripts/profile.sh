#!/usr/bin/env bash
# Where kith's time goes under one workload: a fresh release kith, `perf record` on it while
# `kith-bench load` sends the workload, then the hottest symbols by self time and by
# inclusive time (callers included) in target/profile/<workload>.txt.
#
#   scripts/profile.sh product [kith-bench load options, e.g. --events 300000]
#   scripts/profile.sh engage --engage-users 300000
#
# Needs perf (`apt-get install linux-perf`); hardware counters are not needed (cpu-clock).
set -euo pipefail
cd "$(dirname "$0")/.."
workload="${1:?usage: scripts/profile.sh product|engage|identify [load options]}"
shift
cargo build --release -p kith-cli -p kith-bench >&2
out=target/profile
dir="$out/$workload-data"
mkdir -p "$out" && rm -rf "$dir"
port=$((30000 + RANDOM % 10000))
KITH_LOG=warn target/release/kith --data-dir "$dir" serve --listen "127.0.0.1:$port" >"$out/$workload.stdout" &
kith_pid=$!
trap 'kill $kith_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "api/contacts" "$out/$workload.stdout" 2>/dev/null && break; sleep 0.1; done
key=$(awk '/write key/ {print $NF}' "$out/$workload.stdout")
# DWARF unwinding because release builds keep no frame pointers; 499 Hz keeps the file small.
perf record -F 499 -e cpu-clock --call-graph dwarf,16384 -p "$kith_pid" -o "$out/$workload.data" 2>"$out/$workload.perf.log" &
perf_pid=$!
sleep 0.5
target/release/kith-bench load --url "http://127.0.0.1:$port" --key "$key" --workload "$workload" --pid "$kith_pid" "$@"
kill -INT "$perf_pid" && wait "$perf_pid" || true
{
  echo "# self time (where the CPU is)"
  perf report -i "$out/$workload.data" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40
  echo
  echo "# inclusive time (callers included)"
  perf report -i "$out/$workload.data" --children --sort symbol --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -60
} >"$out/$workload.txt"
cat "$out/$workload.txt"
