#!/usr/bin/env bash
# The naive set-based reference for kith's PostgreSQL figures (BENCHMARKS.md): pgbench runs
# scripts/pg-reference/batch.pgbench — 100 events per transaction, each claiming its messageId
# and upserting its contact and its day — from several clients against a fresh database, and
# prints events per second (transactions per second × 100).
#
#   scripts/pg-reference.sh                      # 4 clients, 20 s, on 127.0.0.1:5432 as postgres
#   CLIENTS=8 SECONDS_TO_RUN=30 scripts/pg-reference.sh
#   PGHOST=db.example PGUSER=me scripts/pg-reference.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PGHOST="${PGHOST:-127.0.0.1}" PGUSER="${PGUSER:-postgres}" PGPORT="${PGPORT:-5432}"
database="${PGDATABASE_REFERENCE:-kith_reference}"
clients="${CLIENTS:-4}"
seconds="${SECONDS_TO_RUN:-20}"

dropdb --if-exists "$database" 2>/dev/null
createdb "$database"
psql -q -v ON_ERROR_STOP=1 -d "$database" -f scripts/pg-reference/schema.sql
output=$(pgbench -n -c "$clients" -j "$clients" -T "$seconds" -f scripts/pg-reference/batch.pgbench "$database")
tps=$(echo "$output" | awk '/^tps = / {print $3}')
failed=$(echo "$output" | awk '/number of failed transactions/ {print $5}')
echo "naive set-based reference: $clients clients, $seconds s, ${tps} batches/s = $(awk -v t="$tps" 'BEGIN {printf "%.0f", t * 100}') events/s (failed transactions: ${failed:-0})"
dropdb "$database"
