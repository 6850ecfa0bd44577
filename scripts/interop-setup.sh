#!/usr/bin/env bash
# Creates (idempotently) the Python venv that runs tests/interop/: the real
# Parsec client (parsec-cloud 2.10.0 from PyPI), pytest and pytest-trio, plus
# our Python 3.11 compatibility shim (tests/interop/support/sitecustomize.py,
# installed as the venv's sitecustomize).
#
#   PARSEC_INTEROP_VENV  where the venv lives (default: ~/.cache/parsec-interop-venv)
#   PYTHON               interpreter to create it with (default: python3.11 if
#                        found, else python3; must be 3.9-3.11)
#
# A second run with nothing changed is a no-op (stamp file in the venv). Prints
# the venv's python path on stdout as its last line; logs go to stderr.
#
# On a fresh Debian machine, as root, it installs what pip needs and is missing
# (python3-venv, a C compiler, the Python headers: msgpack, pendulum and
# pyqt5-sip are built from source for Python 3.11).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHIM="$ROOT/tests/interop/support/sitecustomize.py"
VENV="${PARSEC_INTEROP_VENV:-$HOME/.cache/parsec-interop-venv}"

# Pinned: the interop suite must always judge the server with the same client.
REQUIREMENTS=(
  "parsec-cloud[core]==2.10.0"
  "pytest==7.4.4"
  "pytest-trio==0.7.0"
)

log() { printf '[interop-setup] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

APT_UPDATED=0
apt_install() {
  # Installs Debian packages, only as root on a machine with apt-get.
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing system packages ($*); install them (apt-get install -y $*) and retry"
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# ---------------------------------------------------------------- interpreter
if [ -z "${PYTHON:-}" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found (set PYTHON=/path/to/python3.11)"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$PYVER" in
  3.9|3.10|3.11) ;;
  *) die "parsec-cloud 2.10.0 needs Python 3.9-3.11; '$PYTHON' is $PYVER (set PYTHON=...)" ;;
esac

[ -f "$SHIM" ] || die "shim not found: $SHIM"
STAMP="$VENV/.interop-setup-stamp"
STAMP_CONTENT="interop-v1 python$PYVER ${REQUIREMENTS[*]} shim=$(sha256sum "$SHIM" | cut -d' ' -f1)"

# ---------------------------------------------------------------- fast path
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_CONTENT" ]; then
  log "venv $VENV is up to date"
  echo "$VENV/bin/python"
  exit 0
fi

# ---------------------------------------------------------------- venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  log "creating venv $VENV with $PYTHON ($PYVER)"
  mkdir -p "$(dirname "$VENV")"
  if ! "$PYTHON" -m venv --clear "$VENV" >&2; then
    # Debian's python3 ships without ensurepip unless python3-venv is installed.
    rm -rf "$VENV"
    apt_install python3-venv
    "$PYTHON" -m venv "$VENV" >&2 || die "cannot create the venv with $PYTHON"
  fi
fi
VPY="$VENV/bin/python"

# ---------------------------------------------------------------- build tools
# Some pinned packages have no wheel for Python 3.11 and are compiled once
# (pip caches the wheels afterwards).
need=()
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || need+=(build-essential)
if ! "$VPY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  need+=(python3-dev)
fi
if [ "${#need[@]}" -gt 0 ]; then
  apt_install "${need[@]}"
fi

# ---------------------------------------------------------------- packages
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# The shim goes first: it is harmless before attrs/trio exist, and anything
# importing parsec afterwards (including the check below) needs it.
install -m 0644 "$SHIM" "$SITE/sitecustomize.py"

log "installing ${REQUIREMENTS[*]} (first time: a few minutes)"
"$VPY" -m pip install --disable-pip-version-check --progress-bar off -q "${REQUIREMENTS[@]}" >&2

# ---------------------------------------------------------------- sanity check
# The client must import, and the shim must make bare super() in attrs slotted
# classes (certificate loading) and chained-exception printing work.
"$VPY" - >&2 <<'PYEOF'
import sys
import traceback
import warnings

warnings.simplefilter("error", RuntimeWarning)  # attrs' "cannot patch closure cell" warning

import parsec
import parsec.core.backend_connection
import parsec.core.invite
import pendulum
import pytest
import pytest_trio
import trio
from parsec.api.data import UserCertificateContent, UserProfile
from parsec.api.protocol import UserID
from parsec.crypto import PrivateKey, SigningKey

assert parsec.__version__.lstrip("v") == "2.10.0", parsec.__version__

sk = SigningKey.generate()
cert = UserCertificateContent(
    author=None,
    timestamp=pendulum.now(),
    user_id=UserID("alice"),
    human_handle=None,
    public_key=PrivateKey.generate().public_key,
    profile=UserProfile.ADMIN,
)
signed = cert.dump_and_sign(sk)
loaded = UserCertificateContent.verify_and_load(signed, author_verify_key=sk.verify_key, expected_author=None)
assert loaded == cert

try:
    try:
        raise ValueError("inner cause")
    except ValueError as exc:
        raise RuntimeError("outer") from exc
except RuntimeError as exc:
    text = "".join(traceback.format_exception(exc))
    assert "inner cause" in text, text

print(f"[interop-setup] parsec-cloud {parsec.__version__} OK on python {sys.version.split()[0]}")
PYEOF

printf '%s' "$STAMP_CONTENT" > "$STAMP"
log "done: $VENV"
echo "$VPY"
