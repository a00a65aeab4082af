#!/usr/bin/env bash
# Compatibility suite: the real Segment and RudderStack client libraries against a kith started
# here.
#
#   bash compat/run.sh
#
# 1. installs the pinned clients into compat/.deps (pip --target, npm --prefix);
# 2. builds `kith` (debug) and starts it on a free port with a fresh data folder, reading the
#    write and secret keys from its first-start output;
# 3. starts compat/wire.py, a relay that forwards every request to kith unchanged and records
#    what each SDK put on the wire (gzip, Content-Type, auth);
# 4. sends the same scenario (compat/scenario.json) with each SDK through the relay, with the
#    write key, and waits for each to flush;
# 5. checks everything through kith's API with the secret key (compat/check.py);
# 6. stops kith with SIGTERM and expects a clean exit.
#
# COMPAT_SDKS="py-segment node-rudder" runs a subset; COMPAT_KEEP=1 keeps the temporary folder
# (kith's logs and data, the wire log). Needs python3 (3.9+), node (18+) and npm, and cargo.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
COMPAT=$ROOT/compat
DEPS=$COMPAT/.deps
SDKS=${COMPAT_SDKS:-py-segment py-rudder node-segment node-rudder}

say() { echo "compat: $*"; }
fail() {
    echo "compat: FAILED: $*" >&2
    exit 1
}

for tool in python3 node npm cargo; do
    command -v "$tool" >/dev/null || fail "$tool is needed and not on PATH"
done
python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' || fail "python3 3.9 or newer is needed"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 18 ? 1 : 0)' || fail "node 18 or newer is needed"

# A fingerprint of files and tool versions: the clients are reinstalled when it changes.
fingerprint() { (cat "$@"; python3 --version; node --version) | python3 -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'; }

# ---- 1. clients
say "installing the Python clients (compat/requirements.txt)"
stamp=$(fingerprint "$COMPAT/requirements.txt")
if [[ "$(cat "$DEPS/python/.installed" 2>/dev/null)" != "$stamp" ]]; then
    rm -rf "$DEPS/python"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --disable-pip-version-check --no-input --quiet \
        --no-warn-script-location --target "$DEPS/python" -r "$COMPAT/requirements.txt" </dev/null ||
        fail "pip could not install compat/requirements.txt"
    echo "$stamp" >"$DEPS/python/.installed"
fi

say "installing the Node clients (compat/package.json, package-lock.json)"
stamp=$(fingerprint "$COMPAT/package.json" "$COMPAT/package-lock.json")
if [[ "$(cat "$DEPS/node/.installed" 2>/dev/null)" != "$stamp" ]]; then
    rm -rf "$DEPS/node"
    mkdir -p "$DEPS/node"
    cp "$COMPAT/package.json" "$COMPAT/package-lock.json" "$DEPS/node/"
    # `install` with the lock rather than `ci`: the lock pins every version, and `ci` would
    # refuse it over optional native packages of other platforms that it does not list.
    # No install scripts: the clients need none.
    npm install --prefix "$DEPS/node" --ignore-scripts --no-audit --no-fund --no-save \
        --loglevel=error </dev/null || fail "npm could not install compat/package.json"
    echo "$stamp" >"$DEPS/node/.installed"
fi

# ---- 2. kith
say "building kith (cargo build -p kith-cli)"
cargo build --quiet -p kith-cli </dev/null || fail "cargo build -p kith-cli failed"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
KITH=$TARGET_DIR/debug/kith
[[ -x "$KITH" ]] || fail "no kith binary at $KITH"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kith-compat.XXXXXX")
KITH_PID=
RELAY_PID=
cleanup() {
    local status=$?
    set +e
    [[ -n "$RELAY_PID" ]] && kill "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null
    if [[ -n "$KITH_PID" ]] && kill -0 "$KITH_PID" 2>/dev/null; then
        kill -TERM "$KITH_PID" 2>/dev/null
        wait "$KITH_PID" 2>/dev/null
    fi
    if [[ $status -ne 0 && -s "$WORK/kith.err" ]]; then
        echo "compat: the end of kith's log:" >&2
        tail -n 30 "$WORK/kith.err" >&2
    fi
    if [[ "${COMPAT_KEEP:-}" == 1 ]]; then
        echo "compat: kept $WORK (kith.out, kith.err, wire.jsonl, data/)" >&2
    else
        rm -rf "$WORK"
    fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Nothing of the caller's kith settings applies: a clean kith with defaults.
unset_kith=()
while read -r name; do unset_kith+=(-u "$name"); done < <(compgen -e | grep '^KITH_' || true)

# waits for kith's keys and /healthz; a port taken in the meantime means another try
start_kith() {
    PORT=$(free_port)
    (cd "$WORK" && exec env "${unset_kith[@]}" NO_COLOR=1 "$KITH" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" \
        >"$WORK/kith.out" 2>"$WORK/kith.err" </dev/null) &
    KITH_PID=$!
    for _ in $(seq 1 300); do
        kill -0 "$KITH_PID" 2>/dev/null || return 1
        if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
            "http://127.0.0.1:$PORT/healthz" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    fail "kith did not answer /healthz on 127.0.0.1:$PORT within 30 s"
}
started=
for attempt in 1 2 3; do
    rm -rf "$WORK/data"
    if start_kith; then
        started=1
        break
    fi
    wait "$KITH_PID" 2>/dev/null || true
    KITH_PID=
    say "kith did not start (attempt $attempt): $(tail -n 1 "$WORK/kith.err")"
done
[[ -n "$started" ]] || fail "kith did not start; its log is above"
WRITE_KEY=$(sed -n 's/.*write key .*: *\(kith_wk_[A-Za-z0-9_]*\).*/\1/p' "$WORK/kith.out" | head -n 1)
SECRET_KEY=$(sed -n 's/.*secret key .*: *\(kith_sk_[A-Za-z0-9_]*\).*/\1/p' "$WORK/kith.out" | head -n 1)
[[ -n "$WRITE_KEY" && -n "$SECRET_KEY" ]] || fail "no write and secret key in kith's first-start output: $(cat "$WORK/kith.out")"
say "kith $("$KITH" --version | awk '{print $2}') is listening on 127.0.0.1:$PORT (data in $WORK/data)"

# ---- 3. the relay
python3 "$COMPAT/wire.py" "$PORT" "$WORK/wire.jsonl" "$WORK/wire.port" 2>"$WORK/wire.err" </dev/null &
RELAY_PID=$!
for _ in $(seq 1 100); do
    [[ -s "$WORK/wire.port" ]] && break
    kill -0 "$RELAY_PID" 2>/dev/null || fail "the relay did not start: $(cat "$WORK/wire.err")"
    sleep 0.1
done
[[ -s "$WORK/wire.port" ]] || fail "the relay did not start within 10 s"
HOST=http://127.0.0.1:$(cat "$WORK/wire.port")
touch "$WORK/wire.jsonl"

# ---- 4. the SDKs
for sdk in $SDKS; do
    case $sdk in
    py-segment | py-rudder)
        PYTHONPATH="$DEPS/python" PYTHONDONTWRITEBYTECODE=1 timeout 120 \
            python3 "$COMPAT/python/send.py" "${sdk#py-}" "$COMPAT/scenario.json" "$HOST" "$WRITE_KEY" </dev/null ||
            fail "$sdk could not deliver its events (see above)"
        ;;
    node-segment | node-rudder)
        NODE_PATH="$DEPS/node/node_modules" timeout 120 \
            node "$COMPAT/node/send.js" "${sdk#node-}" "$COMPAT/scenario.json" "$HOST" "$WRITE_KEY" </dev/null ||
            fail "$sdk could not deliver its events (see above)"
        ;;
    *) fail "unknown SDK $sdk in COMPAT_SDKS (py-segment, py-rudder, node-segment, node-rudder)" ;;
    esac
done

# ---- 5. the checks
sdk_args=()
for sdk in $SDKS; do sdk_args+=(--sdk "$sdk"); done
python3 "$COMPAT/check.py" --api "http://127.0.0.1:$PORT" --secret-key "$SECRET_KEY" --write-key "$WRITE_KEY" \
    --wire "$WORK/wire.jsonl" --scenario "$COMPAT/scenario.json" "${sdk_args[@]}" ||
    fail "kith did not show what the SDKs sent (mismatches above)"

# ---- 6. a graceful stop
kill "$RELAY_PID" && wait "$RELAY_PID" 2>/dev/null || true
RELAY_PID=
kill -TERM "$KITH_PID"
for _ in $(seq 1 300); do
    kill -0 "$KITH_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$KITH_PID" 2>/dev/null && fail "kith did not stop within 30 s of SIGTERM"
kith_status=0
wait "$KITH_PID" || kith_status=$?
KITH_PID=
[[ $kith_status -eq 0 ]] || fail "kith exited with status $kith_status after SIGTERM"
say "passed: $SDKS"
