#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for tests: initdb in a temporary
# directory, a free port on 127.0.0.1, trust auth, fsync off.
#
#   eval "$(scripts/pg-start.sh)"     # exports PARSEC_TEST_PG_URL and PARSEC_TEST_PG_DIR
#   scripts/pg-stop.sh "$PARSEC_TEST_PG_DIR"
#
# Needs Debian's postgresql package (installed by scripts/test.sh). Under root
# the cluster runs as the `postgres` user, since initdb refuses root.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

bindir=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bindir="$d"; done
if [ -z "$bindir" ]; then
  echo "pg-start.sh: no PostgreSQL server found (apt-get install postgresql)" >&2
  exit 1
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/parsec-pg.XXXXXX")"
port="$("$HERE/free-port.sh")"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 >"$dir/initdb.log" 2>&1 || {
  cat "$dir/initdb.log" >&2
  exit 1
}
# start.sh / stop.sh: restart the same cluster (tests that stop PostgreSQL under load).
opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
runas=""
[ "${#as_pg[@]}" -gt 0 ] && runas="runuser -u postgres --"
printf '#!/bin/sh\nexec %s "%s/pg_ctl" -D "%s/data" -l "%s/log" -w -o "%s" start >/dev/null\n' "$runas" "$bindir" "$dir" "$dir" "$opts" >"$dir/start.sh"
printf '#!/bin/sh\nexec %s "%s/pg_ctl" -D "%s/data" -m fast -w stop >/dev/null\n' "$runas" "$bindir" "$dir" >"$dir/stop.sh"
chmod +x "$dir/start.sh" "$dir/stop.sh"
"$dir/start.sh" || {
  cat "$dir/log" >&2
  exit 1
}
echo "export PARSEC_TEST_PG_URL='postgresql://postgres@127.0.0.1:$port'"
echo "export PARSEC_TEST_PG_DIR='$dir'"
echo "export PARSEC_TEST_PG_BIN='$bindir'"
