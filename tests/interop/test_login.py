"""Authenticated connection of a bootstrapped device
(`backend_authenticated_cmds_factory`: websocket + handshake), then the first
commands a logged-in client sends."""

import pytest

from parsec.api.data import UserProfile
from parsec.api.protocol import HandshakeRVKMismatch
from parsec.core.backend_connection import BackendConnectionRefused
from parsec.core.remote_devices_manager import RemoteDevicesManager
from parsec.core.types import BackendOrganizationAddr
from parsec.crypto import SigningKey

from parsec_interop import authenticated_cmds, time_limit


@time_limit(30)
async def test_login_and_ping(alice):
    async with authenticated_cmds(alice) as cmds:
        rep = await cmds.ping("hello from interop")
        assert rep == {"status": "ok", "pong": "hello from interop"}
        # Same connection, second request
        rep = await cmds.ping("")
        assert rep == {"status": "ok", "pong": ""}


@time_limit(30)
async def test_organization_config(alice):
    async with authenticated_cmds(alice) as cmds:
        rep = await cmds.organization_config()
    # Defaults of a new organization: no users limit, OUTSIDER profile allowed
    assert rep == {"status": "ok", "user_profile_outsider_allowed": True, "active_users_limit": None}


@time_limit(30)
async def test_user_get_of_bootstrapped_user(alice):
    async with authenticated_cmds(alice) as cmds:
        rep = await cmds.user_get(alice.user_id)
        assert rep["status"] == "ok", rep
        assert rep["revoked_user_certificate"] is None
        assert len(rep["device_certificates"]) == 1
        # Bootstrap certificates are signed by the root key: empty trustchain
        assert rep["trustchain"] == {"devices": [], "users": [], "revoked_users": []}

        # The client's own check: certificates verified against the root key
        devices_manager = RemoteDevicesManager(cmds, alice.root_verify_key)
        user, revoked_user, devices = await devices_manager.get_user_and_devices(alice.user_id, no_cache=True)

    assert revoked_user is None
    assert user.user_id == alice.user_id
    assert user.profile == UserProfile.ADMIN
    assert user.human_handle == alice.human_handle  # asked by the user itself: not redacted
    assert user.public_key == alice.public_key
    assert user.author is None  # signed by the root key
    assert [d.device_id for d in devices] == [alice.device_id]
    assert devices[0].device_label == alice.device_label
    assert devices[0].verify_key == alice.verify_key


@time_limit(30)
async def test_handshake_with_wrong_root_verify_key_is_refused(alice):
    other_root_key = SigningKey.generate().verify_key
    wrong_addr = BackendOrganizationAddr.build(
        alice.organization_addr.get_backend_addr(), alice.organization_id, other_root_key
    )
    async with authenticated_cmds(alice, organization_addr=wrong_addr) as cmds:
        with pytest.raises(BackendConnectionRefused) as exc_info:
            await cmds.ping("x")
    # Handshake result `rvk_mismatch`, as the client decodes it
    assert isinstance(exc_info.value.__cause__, HandshakeRVKMismatch), repr(exc_info.value.__cause__)

    # The genuine device is not affected
    async with authenticated_cmds(alice) as cmds:
        assert (await cmds.ping("still ok"))["pong"] == "still ok"
