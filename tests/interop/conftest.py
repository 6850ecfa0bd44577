"""Fixtures of the interop suite (see parsec_interop.py for the helpers).

The server under test is given by PARSEC_INTEROP_ADDR (and
PARSEC_INTEROP_ADMIN_TOKEN, default `s3cr3t`); scripts/test.sh starts one from
the build and sets both."""

import os
import socket
import sys

import pytest

# pytest's default "prepend" import mode puts this directory on sys.path for
# the conftest; make it explicit so `import parsec_interop` works however the
# suite is invoked.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trio  # noqa: E402

from parsec_interop import TIMEOUT_FACTOR, ServerUnderTest, bootstrap, create_org  # noqa: E402

# The admin API calls of the client run urllib in a worker thread that trio
# cannot cancel; a socket timeout keeps a stuck server from hanging the run.
socket.setdefaulttimeout(60 * TIMEOUT_FACTOR)
SETUP_LIMIT = 30 * TIMEOUT_FACTOR


def _configure_client_logging():
    # The client logs every request at INFO through structlog; keep warnings
    # and errors (shown with failing tests, they explain refused connections).
    from parsec.logging import configure_logging

    level = os.environ.get("PARSEC_INTEROP_LOG_LEVEL", "WARNING")
    configure_logging(log_level=level, log_format="CONSOLE", log_stream=sys.stderr)


def pytest_report_header(config):
    return [f"server under test: {os.environ.get('PARSEC_INTEROP_ADDR') or '<PARSEC_INTEROP_ADDR not set>'}"]


def pytest_sessionstart(session):
    if session.config.getoption("collectonly"):
        return
    _configure_client_logging()
    try:
        server = ServerUnderTest.from_env()
        addr = server.addr
    except (RuntimeError, ValueError) as exc:
        pytest.exit(f"interop suite: {exc}", returncode=2)
    try:
        with socket.create_connection((addr.hostname, addr.port), timeout=5):
            pass
    except OSError as exc:
        pytest.exit(f"interop suite: server not reachable at {addr.hostname}:{addr.port}: {exc}", returncode=2)


@pytest.fixture
def server() -> ServerUnderTest:
    return ServerUnderTest.from_env()


@pytest.fixture
async def created_org(server):
    """(organization_id, bootstrap_addr) of a new, not yet bootstrapped organization."""
    with trio.fail_after(SETUP_LIMIT):
        return await create_org(server)


@pytest.fixture
async def alice(created_org):
    """First user (ADMIN) of a freshly bootstrapped organization."""
    _, bootstrap_addr = created_org
    with trio.fail_after(SETUP_LIMIT):
        return await bootstrap(bootstrap_addr)
