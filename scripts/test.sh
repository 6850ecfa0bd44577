#!/usr/bin/env bash
# Runs every test of the project:
#   1. the Rust tests of the whole workspace (`cargo test --workspace`);
#   2. the interop suite (tests/interop/): the real parsec-cloud 2.10.0 client
#      against a `parsec-server run --dev` built from this tree, started on a
#      free port for the run and stopped at exit.
#
#   scripts/test.sh [pytest args for the interop suite, e.g. -k ping -x]
#
# Works from a fresh clone on a fresh Debian machine: as root it installs what
# is missing (apt packages, the interop venv). A failing step does not stop
# the later ones; the exit status is non-zero if any step failed. Lint
# (clippy, rustfmt) is .ci/run's job.
#
#   CARGO_TARGET_DIR       build dir (default ~/.cache/parsec-target, shared
#                          between clones so builds stay warm)
#   PARSEC_INTEROP_VENV    venv of the interop suite (see scripts/interop-setup.sh)
#   PARSEC_SERVER_BIN      server binary to test (default: the debug build)
#   PARSEC_INTEROP_TIMEOUT_FACTOR  multiplies the interop suite's time limits
#
# Any failure (Rust tests included) makes the exit status non-zero, locally
# as in CI (CI=true): nothing is skipped or tolerated.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parsec-target}"
export PYTHONDONTWRITEBYTECODE=1
# PARSEC_SERVER_BIN: run the interop suite against another build or server
# accepting the same `run --dev -H -P --backend-addr` arguments.
SERVER_BIN="${PARSEC_SERVER_BIN:-$CARGO_TARGET_DIR/debug/parsec-server}"
ADMIN_TOKEN="s3cr3t" # what `run --dev` configures
SERVER_START_TIMEOUT="${PARSEC_SERVER_START_TIMEOUT:-60}" # seconds
INTEROP_RUN_TIMEOUT=900 # whole pytest run; each test also has its own limit

section() { printf '\n==================== %s ====================\n' "$*"; }
note() { printf '[test.sh] %s\n' "$*"; }

FAILED=()
fail_step() {
  FAILED+=("$1")
  note "FAILED: $1"
}

# ------------------------------------------------------------------ cleanup
WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/parsec-test.XXXXXX")"
SERVER_LOG="$WORKDIR/server.log"
SERVER_PID=""
SWIFT_DIRS=()

print_server_log() {
  if [ -s "$SERVER_LOG" ]; then
    section "server log (last 80 lines of $SERVER_LOG)"
    tail -n 80 "$SERVER_LOG"
  fi
}

stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do # 5 s for a graceful stop, then SIGKILL
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

on_exit() {
  local status=$?
  [ -z "${PG_DIR:-}" ] || "$ROOT/scripts/pg-stop.sh" "$PG_DIR"
  [ -z "${SMTP_PID:-}" ] || kill "$SMTP_PID" 2>/dev/null || true
  [ -z "${TLS_SERVER_PID:-}" ] || kill "$TLS_SERVER_PID" 2>/dev/null || true
  [ -z "${PARSEC_TEST_MOTO_DIR:-}" ] || "$ROOT/scripts/moto.sh" stop "$PARSEC_TEST_MOTO_DIR"
  for d in "${SWIFT_DIRS[@]}"; do "$ROOT/scripts/swift-aio.sh" stop "$d" 2>/dev/null || true; done
  if [ -n "$SERVER_PID" ]; then # interrupted while the server was running
    stop_server
    print_server_log
  fi
  rm -rf "$WORKDIR"
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ system packages
# What the build and the tests need from the system, as "check package" pairs:
# the check is a shell condition that holds when the thing is already there.
# Only missing packages are installed (as root, with apt-get).
REQUIRED_SYSTEM=(
  "command -v cc"                       build-essential # C parts of crates and of the client's deps
  "command -v pkg-config"               pkg-config      # openssl-sys finds OpenSSL with it
  "pkg-config --exists openssl"         libssl-dev      # OpenSSL headers for openssl-sys
  "command -v curl"                     curl            # waiting for the server to answer
  "command -v python3"                  python3         # free-port.sh, the interop venv
  "test -f /etc/ssl/certs/ca-certificates.crt" ca-certificates
  "ls /usr/lib/postgresql/*/bin/initdb"  postgresql      # throwaway clusters for the PostgreSQL tests
  "command -v psql"                     postgresql-client
)

section "system packages"
missing=()
for ((i = 0; i < ${#REQUIRED_SYSTEM[@]}; i += 2)); do
  eval "${REQUIRED_SYSTEM[i]}" >/dev/null 2>&1 || missing+=("${REQUIRED_SYSTEM[i + 1]}")
done
if [ "${#missing[@]}" -eq 0 ]; then
  note "nothing to install"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  note "installing missing packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  note "WARNING: missing packages (${missing[*]}) and cannot install them (not root or no apt-get)"
fi
# (python3-venv and the Python headers are checked by scripts/interop-setup.sh.)
for tool in cargo curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { note "ERROR: '$tool' not found"; exit 1; }
done
note "cargo: $(cargo --version); target dir: $CARGO_TARGET_DIR"

# ------------------------------------------------------------------ SMTP receiver
# A real SMTP server for the e-mail tests (actors/tests/invite.rs): every
# message lands in $PARSEC_TEST_SMTP_DIR. Under CI=true those tests fail
# without it.
section "SMTP receiver (scripts/smtp-sink.py)"
SMTP_PORT="$("$ROOT/scripts/free-port.sh")"
export PARSEC_TEST_SMTP_DIR="$WORKDIR/smtp"
python3 "$ROOT/scripts/smtp-sink.py" "127.0.0.1:$SMTP_PORT" "$PARSEC_TEST_SMTP_DIR" >"$WORKDIR/smtp.log" 2>&1 &
SMTP_PID=$!
for _ in $(seq 50); do # 5 s to accept connections
  (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null && break
  sleep 0.1
done
if (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null; then
  export PARSEC_TEST_SMTP_ADDR="127.0.0.1:$SMTP_PORT"
  note "SMTP receiver on $PARSEC_TEST_SMTP_ADDR, mails in $PARSEC_TEST_SMTP_DIR"
else
  fail_step "SMTP receiver did not start (see $WORKDIR/smtp.log)"
fi

# ------------------------------------------------------------------ S3 and Swift servers
# For the blockstore tests (server/tests/e2e/blockstores.rs): moto, an
# S3-compatible server, with its buckets (scripts/moto.sh exports
# PARSEC_TEST_S3_* and PARSEC_TEST_MOTO_*); and two single-node OpenStack
# Swift servers (scripts/swift-aio.sh), one shared, one that a test restarts.
# Both install into venvs under ~/.cache on first use. Under CI=true those
# tests fail without them.
section "S3 test server (scripts/moto.sh)"
if moto_env="$("$ROOT/scripts/moto.sh" start)"; then
  eval "$moto_env"
  note "moto at $PARSEC_TEST_S3_ENDPOINT"
else
  fail_step "S3 test server (scripts/moto.sh)"
fi

section "Swift test servers (scripts/swift-aio.sh)"
export SWIFT_AIO_VENV="${SWIFT_AIO_VENV:-$HOME/.cache/parsec-swift-venv}"
# A base port whose next 3 are free too (proxy, account, container, object).
free_port_block() {
  python3 -c 'import socket, random
for _ in range(200):
    base = random.randrange(20000, 60000)
    socks = []
    try:
        for p in range(base, base + 4):
            s = socket.socket(); socks.append(s); s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(base); break'
}
SWIFT_DIRS=("$WORKDIR/swift" "$WORKDIR/swift-restart") # stopped at exit
start_swift() { # DATA_DIR; prints the blockstore value
  local port
  port="$(free_port_block)"
  echo "$port" >"$1.port"
  "$ROOT/scripts/swift-aio.sh" "$1" "$port"
}
if PARSEC_TEST_SWIFT_CONFIG="$(start_swift "$WORKDIR/swift")" \
   && PARSEC_TEST_SWIFT_RESTART_CONFIG="$(start_swift "$WORKDIR/swift-restart")"; then
  export PARSEC_TEST_SWIFT_CONFIG PARSEC_TEST_SWIFT_RESTART_CONFIG
  export PARSEC_TEST_SWIFT_AIO="$ROOT/scripts/swift-aio.sh"
  export PARSEC_TEST_SWIFT_RESTART_DIR="$WORKDIR/swift-restart"
  PARSEC_TEST_SWIFT_RESTART_PORT="$(cat "$WORKDIR/swift-restart.port")"
  export PARSEC_TEST_SWIFT_RESTART_PORT
  note "Swift: $PARSEC_TEST_SWIFT_CONFIG (and $PARSEC_TEST_SWIFT_RESTART_CONFIG)"
else
  fail_step "Swift test servers (scripts/swift-aio.sh)"
fi

# ------------------------------------------------------------------ server build
section "build: cargo build -p parsec-server"
SERVER_OK=1
if ! cargo build -p parsec-server; then
  fail_step "cargo build -p parsec-server"
  # A stale binary from an earlier build would test the wrong code.
  [ -n "${PARSEC_SERVER_BIN:-}" ] || SERVER_OK=0
fi
if [ "$SERVER_OK" = 1 ] && [ ! -x "$SERVER_BIN" ]; then
  fail_step "server binary not found at $SERVER_BIN"
  SERVER_OK=0
fi

# ------------------------------------------------------------------ rust tests (memory)
section "rust tests, in-memory store: cargo test --workspace --no-fail-fast"
# Output left untouched: cargo's `test result:` lines must stay visible.
if ! cargo test --workspace --no-fail-fast; then
  fail_step "cargo test --workspace (memory)"
fi

# ------------------------------------------------------------------ rust tests (PostgreSQL)
# The same storage and end-to-end tests, on a throwaway PostgreSQL cluster:
# each test clones the migrated `parsec_template` database.
section "rust tests, PostgreSQL store: PARSEC_TEST_DB=postgresql cargo test"
PG_DIR=""
stop_pg() { [ -z "$PG_DIR" ] || "$ROOT/scripts/pg-stop.sh" "$PG_DIR"; PG_DIR=""; }
if pg_env="$("$ROOT/scripts/pg-start.sh")"; then
  eval "$pg_env"
  PG_DIR="$PARSEC_TEST_PG_DIR"
  note "PostgreSQL cluster at $PARSEC_TEST_PG_URL"
  if [ "$SERVER_OK" = 1 ] \
     && psql -q "$PARSEC_TEST_PG_URL/postgres" -c "CREATE DATABASE parsec_template" \
     && "$SERVER_BIN" migrate --db "$PARSEC_TEST_PG_URL/parsec_template"; then
    export PARSEC_TEST_PG_URL
    if ! PARSEC_TEST_DB=postgresql cargo test --workspace --no-fail-fast; then
      fail_step "cargo test --workspace (PostgreSQL)"
    fi
  else
    fail_step "PostgreSQL template database (create + migrate)"
  fi
  stop_pg
else
  fail_step "throwaway PostgreSQL cluster (scripts/pg-start.sh)"
fi

# ------------------------------------------------------------------ interop venv
section "interop venv (scripts/interop-setup.sh)"
VPY=""
if VPY="$("$ROOT/scripts/interop-setup.sh" | tail -n 1)" && [ -x "$VPY" ]; then
  note "python: $VPY"
else
  fail_step "scripts/interop-setup.sh"
  VPY=""
fi

# ------------------------------------------------------------------ server
# Starts `parsec-server run --dev` on a free port; waits until it answers.
start_server() {
  local port deadline status
  port="$("$ROOT/scripts/free-port.sh")"
  SERVER_ADDR="parsec://127.0.0.1:$port?no_ssl=true"
  note "starting $SERVER_BIN run --dev on 127.0.0.1:$port (log: $SERVER_LOG)"
  RUST_LOG="${RUST_LOG:-info}" "$SERVER_BIN" run --dev -H 127.0.0.1 -P "$port" \
    --backend-addr "$SERVER_ADDR" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  deadline=$((SECONDS + SERVER_START_TIMEOUT))
  while :; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      wait "$SERVER_PID" && status=0 || status=$?
      SERVER_PID=""
      note "ERROR: the server exited (status $status) before answering"
      return 1
    fi
    if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null; then
      note "server ready at $SERVER_ADDR (pid $SERVER_PID)"
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      note "ERROR: the server did not answer GET / within ${SERVER_START_TIMEOUT}s"
      return 1
    fi
    sleep 0.2
  done
}

# A second `run --dev` over TLS, with a certificate from a throwaway CA
# (scripts/gen-test-ca.sh), for the real client's TLS tests
# (tests/interop/test_tls.py: PARSEC_INTEROP_TLS_ADDR, PARSEC_INTEROP_TLS_CAFILE).
TLS_SERVER_PID=""
TLS_SERVER_ADDR=""
TLS_SERVER_LOG="$WORKDIR/server-tls.log"
TLS_DIR="$WORKDIR/tls"
start_tls_server() {
  local port deadline
  "$ROOT/scripts/gen-test-ca.sh" "$TLS_DIR" >/dev/null || return 1
  port="$("$ROOT/scripts/free-port.sh")"
  note "starting $SERVER_BIN run --dev over TLS on 127.0.0.1:$port (log: $TLS_SERVER_LOG)"
  "$SERVER_BIN" run --dev -H 127.0.0.1 -P "$port" --backend-addr "parsec://127.0.0.1:$port" \
    --ssl-certfile "$TLS_DIR/server.pem" --ssl-keyfile "$TLS_DIR/server.key" >"$TLS_SERVER_LOG" 2>&1 &
  TLS_SERVER_PID=$!
  deadline=$((SECONDS + SERVER_START_TIMEOUT))
  until curl -fsS -o /dev/null --max-time 2 --cacert "$TLS_DIR/ca.pem" "https://127.0.0.1:$port/health" 2>/dev/null; do
    if ! kill -0 "$TLS_SERVER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      note "ERROR: the TLS server did not answer; its log:"
      cat "$TLS_SERVER_LOG"
      return 1
    fi
    sleep 0.2
  done
  TLS_SERVER_ADDR="parsec://127.0.0.1:$port"
  note "TLS server ready at $TLS_SERVER_ADDR (CA: $TLS_DIR/ca.pem)"
}
stop_tls_server() {
  if [ -n "${TLS_SERVER_PID:-}" ]; then
    kill -TERM "$TLS_SERVER_PID" 2>/dev/null || true
    wait "$TLS_SERVER_PID" 2>/dev/null || true
  fi
  TLS_SERVER_PID=""
}

section "interop tests (tests/interop, parsec-cloud 2.10.0 client)"
if [ "$SERVER_OK" = 1 ] && [ -n "$VPY" ]; then
  start_tls_server || fail_step "TLS server start (scripts/gen-test-ca.sh, --ssl-certfile)"
  if start_server; then
    set +e
    (
      cd "$ROOT/tests/interop"
      PARSEC_INTEROP_ADDR="$SERVER_ADDR" PARSEC_INTEROP_ADMIN_TOKEN="$ADMIN_TOKEN" \
        PARSEC_INTEROP_TLS_ADDR="$TLS_SERVER_ADDR" PARSEC_INTEROP_TLS_CAFILE="$TLS_DIR/ca.pem" \
        timeout --kill-after=10 "$INTEROP_RUN_TIMEOUT" "$VPY" -m pytest "$@"
    )
    status=$?
    set -e
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
      fail_step "interop tests (killed after ${INTEROP_RUN_TIMEOUT}s)"
    elif [ "$status" -ne 0 ]; then
      fail_step "interop tests (pytest exit status $status)"
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      fail_step "the server died during the interop tests"
    fi
    stop_server
    stop_tls_server
    [ "$status" -eq 0 ] || print_server_log
  else
    fail_step "server start"
    stop_server
    print_server_log
  fi
else
  fail_step "interop tests (not run: no server binary or no venv)"
fi

# ------------------------------------------------------------------ summary
section "summary"
if [ "${#FAILED[@]}" -gt 0 ]; then
  for step in "${FAILED[@]}"; do note "FAILED: $step"; done
  exit 1
fi
note "all tests passed"
