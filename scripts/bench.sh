#!/usr/bin/env bash
# Side-by-side benchmark, in one run on this machine:
#   - PostgreSQL's own bound (pgbench: single-row 1 KiB insert, primary-key
#     select, 50 clients) on a throwaway cluster;
#   - the reference server (parsec-cloud[backend]==2.10.0 from PyPI) and ours
#     (release build), each on its own database of that cluster with the
#     POSTGRESQL blockstore, driven by the same parsec-load scenarios.
# Prints a Markdown table (and writes it to $BENCH_OUT, default
# ./bench-results.md) with the three figures and the ratios.
#
#   scripts/bench.sh                        # every scenario, 10 s each, 50 clients
#   BENCH_DURATION=5 BENCH_SCENARIOS="ping vlob_read" scripts/bench.sh
#   BENCH_REFERENCE=0 BENCH_PGBENCH=0 scripts/bench.sh   # ours only (quick iterations)
#   BENCH_BRACKET=0 scripts/bench.sh        # one measurement of each instead of two
#
# Each scenario is measured in the order bound, ours, reference, ours,
# bound, and the table gives the means of the two measurements of ours and
# of the bound (the larger p99): all three are then centred on the same
# moment, so a drift of the host's speed during the scenario (seen at 10–20 %
# within minutes on this machine) weighs on none of the ratios. The single
# measurements follow the table.
#
# Needs what scripts/test.sh installs (PostgreSQL, python3-venv) and PyPI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parsec-target}"
DURATION="${BENCH_DURATION:-10}"
CLIENTS="${BENCH_CLIENTS:-50}"
# `name@N`: that scenario with N clients (fan-out: N listeners) instead of $CLIENTS.
SCENARIOS="${BENCH_SCENARIOS:-ping vlob_create vlob_create@10 vlob_read vlob_update vlob_update@10 block_create block_read handshake fanout fanout@100 fanout@1000 mix}"
OUT="${BENCH_OUT:-$ROOT/bench-results.md}"
LOGS="${BENCH_LOGS:-$ROOT/bench-logs}"
REF_VENV="${PARSEC_BENCH_REF_VENV:-$HOME/.cache/parsec-bench-ref-venv}"
WITH_REF="${BENCH_REFERENCE:-1}"
BRACKET="${BENCH_BRACKET:-1}"
TOKEN=s3cr3t

note() { printf '[bench] %s\n' "$*" >&2; }
# field KEY[.KEY…] < JSON → the value, or - when missing.
field() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip() or "{}"); v=d
for k in sys.argv[1].split("."): v=v.get(k) if isinstance(v,dict) else None
print("-" if v is None else (round(v,2) if isinstance(v,float) else v))' "$1"; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/parsec-bench.XXXXXX")"
PIDS=()
PG_DIR=""
cleanup() {
  # `start` runs in a subshell (`< <(start …)`): its pids are in a file.
  for p in "${PIDS[@]}" $(cat "$WORK/pids" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  [ -z "$PG_DIR" ] || "$ROOT/scripts/pg-stop.sh" "$PG_DIR"
  # Server logs and the load tool's errors, kept for a look afterwards.
  mkdir -p "$LOGS" && cp "$WORK"/*.log "$WORK"/*.json "$WORK"/load.err "$LOGS"/ 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# ------------------------------------------------------------ builds
note "building parsec-server, parsec-load and the blockstore bench (release)"
cargo build --release -q -p parsec-server -p parsec-load
cargo build --release -q -p parsec-actors --example blockstore_bench
OURS="$CARGO_TARGET_DIR/release/parsec-server"
LOAD="$CARGO_TARGET_DIR/release/parsec-load"
BLOCKSTORE_BENCH="$CARGO_TARGET_DIR/release/examples/blockstore_bench"

# ------------------------------------------------------------ reference server
if [ "$WITH_REF" = 1 ]; then
  [ -x "$REF_VENV/bin/python" ] || python3 -m venv "$REF_VENV"
  # The 2.10 package needs our Python 3.11 shim (see tests/interop/support),
  # in place before anything imports it.
  SITE="$("$REF_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  install -m 0644 "$ROOT/tests/interop/support/sitecustomize.py" "$SITE/sitecustomize.py"
  if ! "$REF_VENV/bin/python" -c 'import parsec.backend' 2>/dev/null; then
    note "installing parsec-cloud[backend]==2.10.0 into $REF_VENV"
    "$REF_VENV/bin/pip" install -q --disable-pip-version-check "parsec-cloud[core,backend]==2.10.0"
  fi
fi

# ------------------------------------------------------------ PostgreSQL
eval "$("$ROOT/scripts/pg-start.sh")"
PG_DIR="$PARSEC_TEST_PG_DIR"
PG="$PARSEC_TEST_PG_URL"
# Between scenarios, outside the measurements: dirty pages written. (Not
# ANALYZE: statistics taken while a table is empty make the foreign-key
# checks of a fresh connection scan that table for as long as the
# connection lives, so a scenario that fills it slows down as it runs.)
# Before each measurement (a bound, ours, the reference), what the previous
# one left to do in the background is done: the vacuum its inserts call for
# (a 64 KiB block scenario, or its bound, leaves over a million TOAST rows,
# whose autovacuum took seconds of CPU a minute later, during whatever ran
# then), PostgreSQL's dirty buffers, then the kernel's dirty pages (with the
# default `dirty_expire_centisecs`, the 1.5–2 GB written were flushed 30 s
# later).
settle() {
  local db
  for db in $(psql -At "$PG/postgres" -c "SELECT datname FROM pg_database WHERE datallowconn AND datname NOT IN ('template1')"); do
    psql -q "$PG/$db" -c "VACUUM"
  done
  psql -q "$PG/postgres" -c "CHECKPOINT"
  sync
}
for db in ours ref pgbench; do psql -q "$PG/postgres" -c "CREATE DATABASE $db"; done
"$OURS" migrate --db "$PG/ours" >/dev/null
[ "$WITH_REF" != 1 ] || "$REF_VENV/bin/parsec" backend migrate --db "$PG/ref" >/dev/null 2>&1

# pgbench: 1 KiB single-row inserts, primary-key selects, 50 clients.
psql -q "$PG/pgbench" -c "CREATE TABLE kv (id BIGSERIAL PRIMARY KEY, v BYTEA NOT NULL)"
psql -q "$PG/pgbench" -c "INSERT INTO kv (v) SELECT decode(repeat('ab', 1024), 'hex') FROM generate_series(1, 100000)"
echo "INSERT INTO kv (v) VALUES (decode(repeat('ab', 1024), 'hex'));" >"$WORK/insert.sql"
printf '\\set id random(1, 100000)\nSELECT v FROM kv WHERE id = :id;\n' >"$WORK/select.sql"
pgbench_tps() {
  "$PARSEC_TEST_PG_BIN/pgbench" -n -c "$CLIENTS" -j 2 -T "$DURATION" -f "$1" "$PG/pgbench" 2>/dev/null |
    awk '/^tps = /{print int($3)}'
}
# The blockstore's own bound (ours and the reference use `--blockstore
# POSTGRESQL`): 64 KiB of incompressible bytes (like encrypted blocks),
# inserted as a row, read back by primary key.
psql -q "$PG/pgbench" -c "CREATE TABLE blk_src (v BYTEA NOT NULL)"
psql -q "$PG/pgbench" -c "INSERT INTO blk_src SELECT string_agg(decode(md5(random()::text || g), 'hex'), ''::bytea) FROM generate_series(1, 4096) g"
psql -q "$PG/pgbench" -c "CREATE TABLE blk (id BIGSERIAL PRIMARY KEY, v BYTEA NOT NULL)"
psql -q "$PG/pgbench" -c "INSERT INTO blk (v) SELECT v FROM blk_src, generate_series(1, 2000)"
echo "INSERT INTO blk (v) SELECT v FROM blk_src;" >"$WORK/block-insert.sql"
printf '\\set id random(1, 2000)\nSELECT v FROM blk WHERE id = :id;\n' >"$WORK/block-select.sql"
note "pgbench insert / select, 1 KiB rows and 64 KiB blocks ($CLIENTS clients, ${DURATION}s)"
PG_INSERT=- PG_SELECT=- PG_BLOCK_INSERT=- PG_BLOCK_SELECT=-
if [ "${BENCH_PGBENCH:-1}" = 1 ]; then
  PG_INSERT="$(pgbench_tps "$WORK/insert.sql")"
  PG_SELECT="$(pgbench_tps "$WORK/select.sql")"
  PG_BLOCK_INSERT="$(pgbench_tps "$WORK/block-insert.sql")"
  PG_BLOCK_SELECT="$(pgbench_tps "$WORK/block-select.sql")"
fi
# The blockstore as the server drives it (actors/examples/blockstore_bench.rs):
# `PgBlockStore` on the server's pool of 7, the block bytes sent and received
# in binary. pgbench's block insert above copies a stored value without
# sending it, and its select receives hex text: a bound for PostgreSQL, not
# for the blockstore a request goes through.
# Each block measurement, the store bench's or ours, runs on a database of
# its own, created right before it and dropped right after it: its inserts,
# which its reads then read, are not added to those of the measurements
# before (2.6 GB each), and each one starts where the one before has just
# freed its gigabytes. On this VM that matters: without a database dropped
# first, ours made 2,500–3,500 block_creates/s and the store bench
# 3,200–3,500 inserts/s; right after one was dropped, 3,800–4,700 and
# 5,200–5,700 (BENCHMARKS.md, third session of 2026-11-23).
fresh_db() { # name: dropped if there, created, migrated, flushed
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
  "$OURS" migrate --db "$PG/$1" >/dev/null
  psql -q "$PG/postgres" -c "CHECKPOINT"
  sync
}
drop_db() { psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)"; }
PG_STORE_INSERT=- PG_STORE_SELECT=-
if [ "${BENCH_PGBENCH:-1}" = 1 ]; then
  note "blockstore bench: PgBlockStore, 64 KiB blocks ($CLIENTS clients, ${DURATION}s)"
  fresh_db blockstore
  store_json="$("$BLOCKSTORE_BENCH" "$PG/blockstore" "$CLIENTS" "$DURATION" 65536 7)"
  drop_db blockstore
  PG_STORE_INSERT="$(field insert_per_s <<<"$store_json")"
  PG_STORE_SELECT="$(field select_per_s <<<"$store_json")"
fi

# The bound a scenario's target is set against, measured again right before
# the scenario: the host's speed drifts within a run (pgbench selects moved
# by a third between runs an hour apart), and a target is a ratio to what
# PostgreSQL sustains at that moment (the store bench runs again before
# block_read: in one run, its select rate measured 30 s before block_read
# was 5,620/s, against 8,166/s at the start).
bound() { # scenario → req/s, or -
  [ "${BENCH_PGBENCH:-1}" = 1 ] || { echo -; return; }
  case "$1" in
    vlob_create | vlob_update) pgbench_tps "$WORK/insert.sql" ;;
    vlob_read) pgbench_tps "$WORK/select.sql" ;;
    block_create | block_read)
      fresh_db blockstore
      "$BLOCKSTORE_BENCH" "$PG/blockstore" "$CLIENTS" "$DURATION" 65536 7 >"$WORK/store-bound.json"
      drop_db blockstore
      if [ "$1" = block_create ]; then field insert_per_s <"$WORK/store-bound.json"; else field select_per_s <"$WORK/store-bound.json"; fi
      ;;
    *) echo - ;;
  esac
}

# ------------------------------------------------------------ servers
start() { # name command... ; echoes "port pid"
  local name="$1" port
  shift
  port="$("$ROOT/scripts/free-port.sh")"
  "$@" -P "$port" --backend-addr "parsec://127.0.0.1:$port?no_ssl=true" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  echo "$pid" >>"$WORK/pids"
  for _ in $(seq 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && { echo "$port $pid"; return; }
    sleep 0.1
  done
  note "$name did not start:"; tail -20 "$WORK/$name.log" >&2; exit 1
}
COMMON=(--blockstore POSTGRESQL --administration-token "$TOKEN" --email-host MOCKED --email-sender no-reply@parsec.com)
# Ours runs the block scenarios on a database of its own (see fresh_db).
ours_db() { case "$1" in block_*) echo ours_blocks ;; *) echo ours ;; esac; }
start_ours() { start "${2:-ours}-$1" "$OURS" run --db "$PG/$(ours_db "$1")" --log-level WARNING "${COMMON[@]}"; }
start_ref() { start "ref-$1" "$REF_VENV/bin/parsec" backend run --db "$PG/ref" --log-level WARNING "${COMMON[@]}"; }
stop() { # pid (not our child: started in a subshell), waits up to 10 s for it to end
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}

run() { # port pid scenario[@N] → JSON
  local name="${3%@*}" n="$CLIENTS" clients extra=()
  [ "$name" = "$3" ] || n="${3#*@}"
  clients="$n"
  # Fan-out: N listeners and one writer.
  [ "$name" != fanout ] || { extra=(--listeners "$n"); clients=1; }
  "$LOAD" "$name" --addr "parsec://127.0.0.1:$1?no_ssl=true" --clients "$clients" --duration "$DURATION" \
    --server-pid "$2" --json -q "${extra[@]}" 2>>"$WORK/load.err" || true
}

# mean A B → A and B averaged where both are numbers, else A.
mean() { python3 -c 'import sys; a,b=sys.argv[1:]
try: print(round((float(a)+float(b))/2))
except ValueError: print(a)' "$1" "$2"; }
# merge JSON JSON → the two measurements of ours as one: mean throughput
# and CPU, the larger p99 (the second may be {} when not bracketing).
merge() { python3 -c 'import json,sys
a,b=(json.loads(x.strip() or "{}") for x in sys.argv[1:])
if not (a.get("throughput_rps") and b.get("throughput_rps")): print(json.dumps(a)); sys.exit()
m=dict(a)
m["throughput_rps"]=(a["throughput_rps"]+b["throughput_rps"])/2
cpu=[x.get("server_cpu_ms_per_request") for x in (a,b)]
if None not in cpu: m["server_cpu_ms_per_request"]=sum(cpu)/2
m["latency_ms"]=dict(a.get("latency_ms") or {})
p=[x.get("latency_ms",{}).get("p99") for x in (a,b)]
if None not in p: m["latency_ms"]["p99"]=max(p)
print(json.dumps(m))' "$1" "$2"; }
once() { # start_ours|start_ref scenario [log name prefix] → JSON, from a fresh process
  local port pid db
  db="$(ours_db "$2")"
  [ "$1" != start_ours ] || [ "$db" = ours ] || fresh_db "$db"
  read -r port pid < <("$@")
  run "$port" "$pid" "$2"
  stop "$pid"
  [ "$1" != start_ours ] || [ "$db" = ours ] || drop_db "$db"
}

SAMPLES="$WORK/samples.md"
{
  echo "| scenario | bound before | ours, first | reference | ours, second | bound after |"
  echo "|---|---|---|---|---|---|"
} >"$SAMPLES"
{
  echo "| scenario | ours req/s | ours p99 ms | ours CPU ms/req | reference req/s | reference p99 ms | reference CPU ms/req | ratio req/s | ratio CPU | bound req/s | ours / bound |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  # A fresh process of each server per measurement (same databases): one
  # scenario's leftovers (the reference stays deadlocked once concurrent
  # block_creates have exhausted its pool) do not weigh on the next.
  for s in $SCENARIOS; do
    note "scenario $s"
    settle
    b1="$(bound "$s")"
    settle
    o1="$(once start_ours "$s")"
    echo "$o1" >"$WORK/ours1-$s.json"
    r="{}"
    if [ "$WITH_REF" = 1 ]; then
      settle
      r="$(once start_ref "$s")"
      echo "$r" >"$WORK/ref-$s.json"
    fi
    o2="{}" b2=-
    if [ "$BRACKET" = 1 ]; then
      settle
      o2="$(once start_ours "$s" ours2)"
      echo "$o2" >"$WORK/ours2-$s.json"
      settle
      b2="$(bound "$s")"
    fi
    o="$(merge "$o1" "$o2")"
    echo "$o" >"$WORK/ours-$s.json"
    b="$(mean "$b1" "$b2")"
    ot="$(field throughput_rps <<<"$o")"; rt="$(field throughput_rps <<<"$r")"
    oc="$(field server_cpu_ms_per_request <<<"$o")"; rc="$(field server_cpu_ms_per_request <<<"$r")"
    ratio="$(python3 -c 'import sys; a,b=sys.argv[1:]; print("%.1fx" % (float(a)/float(b)) if b not in ("-","0","0.0") and a != "-" else "-")' "$ot" "$rt")"
    ratio_cpu="$(python3 -c 'import sys; a,b=sys.argv[1:]; print("%.0fx" % (float(b)/float(a)) if "-" not in (a,b) and float(a) else "-")' "$oc" "$rc")"
    vs_bound="$(python3 -c 'import sys; a,b=sys.argv[1:]; print("%.1f %%" % (100*float(a)/float(b)) if "-" not in (a,b) and float(b) else "-")' "$ot" "$b")"
    echo "| $s | $ot | $(field latency_ms.p99 <<<"$o") | $oc | $rt | $(field latency_ms.p99 <<<"$r") | $rc | $ratio | $ratio_cpu | $b | $vs_bound |"
    echo "| $s | $b1 | $(field throughput_rps <<<"$o1") | $rt | $(field throughput_rps <<<"$o2") | $b2 |" >>"$SAMPLES"
  done
  echo
  echo "bound: what the target of the scenario is set against, measured before and after ours (mean): pgbench's"
  echo "single-row insert (vlob_create, vlob_update) or primary-key select (vlob_read), PgBlockStore's"
  echo "insert (block_create) or select (block_read). Targets: ours / bound ≥ 50 % for the vlob scenarios, ≥ 80 % for the block ones."
  echo
  echo "At the start of the run, PostgreSQL alone (pgbench, $CLIENTS clients, ${DURATION}s): $PG_INSERT single-row 1 KiB inserts/s, $PG_SELECT primary-key selects/s;"
  echo "as a blockstore: $PG_BLOCK_INSERT 64 KiB block inserts/s, $PG_BLOCK_SELECT 64 KiB block selects/s (pgbench);"
  echo "$PG_STORE_INSERT inserts/s, $PG_STORE_SELECT selects/s through PgBlockStore (actors/examples/blockstore_bench.rs)."
  echo
  echo "Single measurements, req/s, in the order taken (the table above gives the means):"
  echo
  cat "$SAMPLES"
} | tee "$OUT"
note "written to $OUT"
