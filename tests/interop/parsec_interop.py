"""Helpers of the interop suite: where the server under test is, time limits,
and the organization set-up steps every scenario starts with. Everything goes
through the public API of the parsec-cloud 2.10.0 client, the way its CLI and
GUI call it, so the server is judged by exactly what the real client sends."""

import functools
import inspect
import os
import uuid
from typing import Tuple

import attr
import trio

from parsec.api.protocol import DeviceLabel, HumanHandle, OrganizationID
from parsec.core.backend_connection import backend_authenticated_cmds_factory
from parsec.core.cli.create_organization import create_organization_req
from parsec.core.invite import bootstrap_organization
from parsec.core.types import BackendAddr, BackendOrganizationBootstrapAddr, LocalDevice

# A debug build on a loaded 2-core CI box can be slow: scale every limit.
TIMEOUT_FACTOR = float(os.environ.get("PARSEC_INTEROP_TIMEOUT_FACTOR", "1"))


@attr.s(auto_attribs=True, frozen=True)
class ServerUnderTest:
    """The server the suite talks to (set by scripts/test.sh)."""

    url: str
    admin_token: str

    @classmethod
    def from_env(cls) -> "ServerUnderTest":
        url = os.environ.get("PARSEC_INTEROP_ADDR", "")
        if not url:
            raise RuntimeError(
                "PARSEC_INTEROP_ADDR is not set (e.g. parsec://127.0.0.1:6777?no_ssl=true); "
                "scripts/test.sh starts a server and sets it"
            )
        return cls(url=url, admin_token=os.environ.get("PARSEC_INTEROP_ADMIN_TOKEN") or "s3cr3t")

    @property
    def addr(self) -> BackendAddr:
        return BackendAddr.from_url(self.url)


def time_limit(seconds: float):
    """Fail an async test (instead of hanging the run) when it takes longer
    than `seconds` times PARSEC_INTEROP_TIMEOUT_FACTOR."""

    def decorate(test_fn):
        assert inspect.iscoroutinefunction(test_fn), test_fn

        @functools.wraps(test_fn)
        async def limited(*args, **kwargs):
            limit = seconds * TIMEOUT_FACTOR
            try:
                with trio.fail_after(limit):
                    return await test_fn(*args, **kwargs)
            except trio.TooSlowError:
                raise AssertionError(
                    f"{test_fn.__name__} did not finish within {limit:.0f}s: "
                    "the server under test stopped answering?"
                ) from None

        return limited

    return decorate


def new_org_id(prefix: str = "Interop") -> OrganizationID:
    """A fresh organization id, so tests never share state and can run against
    a server that already holds data. Ids are at most 32 chars of [\\w-]."""
    return OrganizationID(f"{prefix[:16]}-{uuid.uuid4().hex[:12]}")


async def create_org(server: ServerUnderTest, prefix: str = "Interop") -> Tuple[OrganizationID, BackendOrganizationBootstrapAddr]:
    """Create an organization exactly as `parsec core create_organization`
    does (POST /administration/organizations), and build the bootstrap URL
    the CLI would print."""
    org_id = new_org_id(prefix)
    token = await create_organization_req(org_id, server.addr, server.admin_token)
    return org_id, BackendOrganizationBootstrapAddr.build(server.addr, org_id, token)


async def bootstrap(
    bootstrap_addr: BackendOrganizationBootstrapAddr,
    email: str = "alice@example.com",
    label: str = "Alice",
    device_label: str = "alice-laptop",
) -> LocalDevice:
    """Bootstrap the organization through the client (first user, ADMIN)."""
    return await bootstrap_organization(
        bootstrap_addr,
        human_handle=HumanHandle(email=email, label=label),
        device_label=DeviceLabel(device_label),
    )


def authenticated_cmds(device: LocalDevice, **overrides):
    """Authenticated connection of `device` (what the logged core uses under
    the hood, without its monitors nor local storage). `overrides` forge a
    wrong identity: organization_addr=..., signing_key=..., device_id=..."""
    return backend_authenticated_cmds_factory(
        addr=overrides.get("organization_addr", device.organization_addr),
        device_id=overrides.get("device_id", device.device_id),
        signing_key=overrides.get("signing_key", device.signing_key),
    )
