#!/usr/bin/env bash
# Stops and removes a cluster made by scripts/pg-start.sh: pg-stop.sh DIR
set -uo pipefail
dir="${1:?usage: pg-stop.sh DIR}"
bindir=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && bindir="$d"; done
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)
[ -n "$bindir" ] && [ -d "$dir/data" ] && "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
rm -rf "$dir"
