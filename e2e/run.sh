#!/usr/bin/env bash
# Browser tests of the web app: builds `kith`, starts it on port 0 (it prints the address it
# bound) with a fresh data directory, reads the keys and the password it prints on first
# start, and drives Debian's chromium through the app with playwright-core. Screenshots go to
# target/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

chromium=/usr/bin/chromium
if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: apt-get install chromium" >&2
    exit 1
  fi
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing node and npm"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "node and npm are missing: apt-get install nodejs npm" >&2
    exit 1
  fi
fi

echo "== e2e: building kith"
cargo build -p kith-cli --quiet
kith="$root/target/debug/kith"

echo "== e2e: installing playwright-core"
(cd e2e && npm ci --no-audit --no-fund --loglevel=error)

data=$(mktemp -d)
out="$data/stdout"
# A local SMTP server receives what kith sends (test sends, messages to contacts); each mail is
# a JSON line of $KITH_SMTP_MAILS.
export KITH_SMTP_MAILS="$data/mails.jsonl"
touch "$KITH_SMTP_MAILS"
node e2e/smtp-sink.mjs "$KITH_SMTP_MAILS" >"$data/smtp" 2>&1 &
smtp_pid=$!
cleanup() {
  kill "${pid:-}" "$smtp_pid" 2>/dev/null || true
  wait "${pid:-}" "$smtp_pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
deadline=$((SECONDS + 30))
until grep -q "^smtp sink listening on " "$data/smtp" 2>/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "the SMTP sink did not start:" >&2
    cat "$data/smtp" >&2
    exit 1
  fi
  sleep 0.1
done
smtp_port=$(awk '{print $NF}' "$data/smtp")
# Port 0: the system picks a free port and kith prints the address it bound. SMTP goes to the
# sink on loopback, which outbound_allow must open; the public URL only names the links.
KITH_LOG=warn KITH_SMTP_URL="smtp://127.0.0.1:$smtp_port" KITH_SMTP_FROM="kith <kith@localhost>" \
  KITH_OUTBOUND_ALLOW="127.0.0.1/32" KITH_PUBLIC_URL="http://kith.localhost" \
  "$kith" --data-dir "$data/db" serve --listen 127.0.0.1:0 >"$out" 2>"$data/stderr" &
pid=$!

# Every wait is bounded: 60 s for kith to say where it listens, 30 s for it to answer.
deadline=$((SECONDS + 60))
until grep -q "^kith is listening on http://" "$out" 2>/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "kith did not start:" >&2
    cat "$data/stderr" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "kith did not report its address within 60 s:" >&2
    cat "$out" "$data/stderr" >&2
    exit 1
  fi
  sleep 0.1
done
field() { grep "$1" "$out" | awk '{print $NF}'; }
export KITH_URL=$(field "^kith is listening on")
export KITH_WRITE_KEY=$(field "write key")
export KITH_SECRET_KEY=$(field "secret key")
export KITH_PASSWORD=$(field "password:")
export KITH_EMAIL=admin@localhost
export KITH_CHROMIUM="$chromium"
export SCREENSHOTS="$root/target/screenshots"
mkdir -p "$SCREENSHOTS"
if [ -z "$KITH_WRITE_KEY" ] || [ -z "$KITH_PASSWORD" ]; then
  echo "kith's first-start banner has no keys or password:" >&2
  cat "$out" >&2
  exit 1
fi
deadline=$((SECONDS + 30))
until node -e "fetch('$KITH_URL/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "kith did not answer /healthz within 30 s" >&2
    exit 1
  fi
  sleep 0.1
done

echo "== e2e: browser tests against $KITH_URL"
node --test --test-concurrency=1 e2e/tests/*.test.js
echo "== e2e: screenshots in target/screenshots/"
