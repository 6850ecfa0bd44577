#!/usr/bin/env bash
# Applies the database migrations of a deployment: `parsec-server migrate`,
# with the deployment's environment file, retried while the database does
# not answer yet (a container or a service starting alongside PostgreSQL).
#
#   scripts/migrate.sh [--env-file FILE] [--retries N] [--pause SECONDS] [-- MIGRATE ARGS...]
#
#   --env-file FILE   read PARSEC_DB (and PARSEC_LOG_*) from FILE, the same
#                     KEY=VALUE file the server's EnvironmentFile= uses
#   --retries N       attempts while the database is unreachable (default 30)
#   --pause SECONDS   between attempts (default 2)
#   MIGRATE ARGS      passed on, e.g. `-- --dry-run`
#
#   PARSEC_SERVER_BIN  the binary (default: parsec-server from PATH, else the
#                      build of this tree under CARGO_TARGET_DIR)
#
# Migrating is idempotent and safe from two processes at once. Any error
# other than "cannot connect" (a database newer than the binary, a failing
# migration) stops at once, with the server's message.
set -euo pipefail

env_file=""
retries=30
pause=2
while [ $# -gt 0 ]; do
  case "$1" in
    --env-file) env_file="${2:?--env-file needs a file}"; shift 2 ;;
    --env-file=*) env_file="${1#*=}"; shift ;;
    --retries) retries="${2:?--retries needs a number}"; shift 2 ;;
    --retries=*) retries="${1#*=}"; shift ;;
    --pause) pause="${2:?--pause needs a number}"; shift 2 ;;
    --pause=*) pause="${1#*=}"; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) echo "migrate.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$retries" =~ ^[0-9]+$ ]] || [ "$retries" -lt 1 ]; then
  echo "migrate.sh: --retries must be a number >= 1" >&2
  exit 2
fi

if [ -n "$env_file" ]; then
  [ -r "$env_file" ] || { echo "migrate.sh: cannot read $env_file" >&2; exit 2; }
  # KEY=VALUE lines as systemd reads them (comments and blank lines skipped;
  # surrounding quotes removed); exported for parsec-server only.
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line#"${line%%[![:space:]]*}"}"
    case "$line" in ''|'#'*|';'*) continue ;; esac
    key="${line%%=*}"
    value="${line#*=}"
    [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then value="${BASH_REMATCH[1]}"; fi
    export "$key=$value"
  done <"$env_file"
fi
[ -n "${PARSEC_DB:-}" ] || { echo "migrate.sh: PARSEC_DB is not set (--env-file?)" >&2; exit 2; }

bin="${PARSEC_SERVER_BIN:-}"
if [ -z "$bin" ]; then
  if command -v parsec-server >/dev/null 2>&1; then
    bin="parsec-server"
  else
    bin="${CARGO_TARGET_DIR:-${HOME:-.}/.cache/parsec-target}/debug/parsec-server"
  fi
fi

attempt=1
while :; do
  set +e
  out="$("$bin" migrate "$@" 2>&1)"
  status=$?
  set -e
  if [ "$status" -eq 0 ]; then
    printf '%s\n' "$out"
    exit 0
  fi
  if [[ "$out" != *"cannot connect to the database"* ]]; then
    printf '%s\n' "$out" >&2 # not a connection problem: retrying will not help
    exit "$status"
  fi
  if [ "$attempt" -ge "$retries" ]; then
    printf '%s\n' "$out" >&2
    echo "migrate.sh: the database did not answer after $attempt attempts" >&2
    exit "$status"
  fi
  echo "migrate.sh: database not reachable yet (attempt $attempt/$retries), retrying in ${pause}s" >&2
  attempt=$((attempt + 1))
  sleep "$pause"
done
