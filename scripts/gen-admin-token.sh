#!/usr/bin/env bash
# Generates an administration token (256 random bits, hex) for
# `parsec-server run --administration-token` / PARSEC_ADMINISTRATION_TOKEN.
#
#   scripts/gen-admin-token.sh              # prints a new token
#   scripts/gen-admin-token.sh ENV_FILE     # sets PARSEC_ADMINISTRATION_TOKEN in
#                                           # ENV_FILE (created 0600 if missing,
#                                           # an existing line replaced), prints nothing
#
# The token is the password of the administration API: keep it out of shell
# history, command lines (visible in `ps`) and logs; give it to the server
# through its environment file.
set -euo pipefail

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

if command -v openssl >/dev/null 2>&1; then
  token="$(openssl rand -hex 32)"
else
  token="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
fi
[ "${#token}" -eq 64 ] || { echo "gen-admin-token.sh: could not generate a token" >&2; exit 1; }

if [ $# -eq 0 ]; then
  printf '%s\n' "$token"
  exit 0
fi

env_file="$1"
if [ ! -e "$env_file" ]; then
  (umask 077 && : >"$env_file")
fi
tmp="$(mktemp "$(dirname "$env_file")/.parsec-env.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
# Same owner and mode as the original (root:parsec 0640 in a deployment).
chmod --reference="$env_file" "$tmp" 2>/dev/null || chmod 600 "$tmp"
chown --reference="$env_file" "$tmp" 2>/dev/null || true
grep -v '^[[:space:]]*PARSEC_ADMINISTRATION_TOKEN=' "$env_file" >"$tmp" || true
printf 'PARSEC_ADMINISTRATION_TOKEN=%s\n' "$token" >>"$tmp"
mv "$tmp" "$env_file"
trap - EXIT
echo "gen-admin-token.sh: PARSEC_ADMINISTRATION_TOKEN set in $env_file" >&2
