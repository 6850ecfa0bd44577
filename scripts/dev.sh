#!/usr/bin/env bash
# Runs the server in development mode (`run --dev`: in-memory database and
# blockstore, administration token s3cr3t) on 127.0.0.1:6777, from a fresh
# Debian machine: installs the build dependencies that are missing (as root),
# builds, runs. Extra arguments go to `parsec-server run`, e.g. `-P 7000`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "dev.sh: please install: ${missing[*]}" >&2
    exit 1
  fi
fi
cd "$ROOT"
exec cargo run --release -p parsec-server -- run --dev "$@"
