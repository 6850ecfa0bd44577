"""Organization bootstrap with the client's `bootstrap_organization` (POST
/anonymous/<org>, falling back to the API v1 websocket on 404)."""

import pytest

from parsec.api.data import UserProfile
from parsec.api.protocol import DeviceLabel, HumanHandle
from parsec.core.invite import InviteAlreadyUsedError, InviteNotFoundError
from parsec.core.types import BackendOrganizationBootstrapAddr

from parsec_interop import bootstrap, time_limit


@time_limit(30)
async def test_bootstrap_creates_first_admin(created_org):
    org_id, bootstrap_addr = created_org
    alice = await bootstrap(bootstrap_addr, email="alice@example.com", label="Alice", device_label="laptop")
    assert alice.organization_id == org_id
    assert alice.profile == UserProfile.ADMIN
    assert alice.human_handle == HumanHandle(email="alice@example.com", label="Alice")
    assert alice.device_label == DeviceLabel("laptop")
    # The organization address the device keeps carries the new root key
    assert alice.organization_addr.root_verify_key == alice.root_verify_key


@time_limit(30)
async def test_bootstrap_with_wrong_token_is_refused(created_org):
    org_id, bootstrap_addr = created_org
    wrong = BackendOrganizationBootstrapAddr.build(
        bootstrap_addr.get_backend_addr(), org_id, "0" * len(bootstrap_addr.token)
    )
    with pytest.raises(InviteNotFoundError):
        await bootstrap(wrong)
    # The organization is still waiting for its (real) bootstrap
    await bootstrap(bootstrap_addr)


@time_limit(30)
async def test_bootstrap_twice_is_refused(created_org):
    _, bootstrap_addr = created_org
    await bootstrap(bootstrap_addr, email="alice@example.com", label="Alice")
    with pytest.raises(InviteAlreadyUsedError):
        await bootstrap(bootstrap_addr, email="mallory@example.com", label="Mallory")
