#!/usr/bin/env bash
# A throwaway S3-compatible server for the S3 blockstore tests: moto (PyPI,
# in-memory, accepts any credentials) on a free 127.0.0.1 port, with the test
# buckets created.
#
#   eval "$(scripts/moto.sh start)"   # exports PARSEC_TEST_S3_* (below) and PARSEC_TEST_MOTO_*
#   scripts/moto.sh stop "$PARSEC_TEST_MOTO_DIR"
#   scripts/moto.sh venv              # installs moto only; prints the moto_server path
#
# Exports:
#   PARSEC_TEST_S3_ENDPOINT      http://127.0.0.1:<port>
#   PARSEC_TEST_S3_REGION        region the buckets were created in
#   PARSEC_TEST_S3_BUCKET        a plain bucket
#   PARSEC_TEST_S3_LOCKED_BUCKET a bucket with object locking and a default
#                                retention (uploads must carry Content-MD5)
#   PARSEC_TEST_S3_BUCKETS       space-separated extra buckets (RAID nodes)
#   PARSEC_TEST_MOTO_SERVER      the moto_server program (tests start their
#                                own servers to stop them)
#   PARSEC_TEST_MOTO_DIR         pid file and log (removed by stop)
#
#   PARSEC_MOTO_VENV   venv holding moto (default ~/.cache/parsec-moto-venv),
#                      created on first use (about 16 s)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${PARSEC_MOTO_VENV:-$HOME/.cache/parsec-moto-venv}"
REGION="parsec-test-1"

log() { echo "[moto.sh] $*" >&2; }

ensure_venv() {
  mkdir -p "$(dirname "$VENV")"
  (
    flock 9
    if ! "$VENV/bin/python" -c 'import moto.server, flask_cors, boto3' 2>/dev/null; then
      log "installing moto into $VENV"
      python3 -m venv "$VENV"
      "$VENV/bin/pip" install -q --disable-pip-version-check "moto[s3]" flask flask-cors >&2
    fi
  ) 9>"$VENV.lock"
}

case "${1:-}" in
  venv)
    ensure_venv
    echo "$VENV/bin/moto_server"
    ;;
  stop)
    dir="${2:?usage: moto.sh stop DIR}"
    if [ -f "$dir/pid" ]; then
      pid="$(cat "$dir/pid")"
      # Only our own process: its command line names moto_server.
      if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto_server; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
      fi
      rm -f "$dir/pid"
    fi
    # The directory start made (its log): ours only by its name.
    case "$(basename "$dir")" in
      parsec-moto.*) rm -rf "$dir" ;;
    esac
    ;;
  start)
    ensure_venv
    dir="$(mktemp -d "${TMPDIR:-/tmp}/parsec-moto.XXXXXX")"
    port="$("$HERE/free-port.sh")"
    setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    endpoint="http://127.0.0.1:$port"
    for _ in $(seq 150); do # 15 s
      curl -s -o /dev/null "$endpoint/" 2>/dev/null && break
      kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
      sleep 0.1
    done
    if ! curl -s -o /dev/null "$endpoint/"; then
      log "moto did not start; its log:"
      cat "$dir/log" >&2
      "$0" stop "$dir"
      exit 1
    fi
    AWS_ACCESS_KEY_ID=testkey AWS_SECRET_ACCESS_KEY=testsecret "$VENV/bin/python" - "$endpoint" "$REGION" <<'EOF' >&2 || { "$0" stop "$dir"; exit 1; }
import sys
import boto3

endpoint, region = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)
where = {"CreateBucketConfiguration": {"LocationConstraint": region}}
for name in ("parsec-test", "parsec-raid-0", "parsec-raid-1", "parsec-raid-2"):
    s3.create_bucket(Bucket=name, **where)
s3.create_bucket(Bucket="parsec-locked", ObjectLockEnabledForBucket=True, **where)
s3.put_object_lock_configuration(
    Bucket="parsec-locked",
    ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
    },
)
EOF
    log "moto on $endpoint (pid $(cat "$dir/pid"), log $dir/log)"
    echo "export PARSEC_TEST_S3_ENDPOINT='$endpoint'"
    echo "export PARSEC_TEST_S3_REGION='$REGION'"
    echo "export PARSEC_TEST_S3_BUCKET='parsec-test'"
    echo "export PARSEC_TEST_S3_LOCKED_BUCKET='parsec-locked'"
    echo "export PARSEC_TEST_S3_BUCKETS='parsec-raid-0 parsec-raid-1 parsec-raid-2'"
    echo "export PARSEC_TEST_MOTO_SERVER='$VENV/bin/moto_server'"
    echo "export PARSEC_TEST_MOTO_DIR='$dir'"
    ;;
  *)
    echo "usage: $0 start | stop DIR | venv" >&2
    exit 2
    ;;
esac
