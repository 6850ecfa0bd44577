"""Organization creation through the administration API, as the client's
`parsec core create_organization` command does it."""

import json
import urllib.error
import urllib.request

import trio

from parsec.api.protocol import OrganizationID
from parsec.api.rest import organization_config_rep_serializer
from parsec.core.backend_connection.transport import http_request
from parsec.core.types import BackendOrganizationBootstrapAddr

from parsec_interop import bootstrap, create_org, new_org_id, time_limit


async def _admin_get_org(server, org_id: OrganizationID) -> dict:
    """GET /administration/organizations/<id> with the client's HTTP helper."""
    raw = await http_request(
        url=server.addr.to_http_domain_url(f"/administration/organizations/{org_id.str}"),
        method="GET",
        headers={"authorization": f"Bearer {server.admin_token}"},
    )
    return organization_config_rep_serializer.loads(raw)


@time_limit(30)
async def test_create_organization_returns_bootstrap_token(server):
    org_id, bootstrap_addr = await create_org(server, "Admin")
    # The token is what the CLI puts in the bootstrap URL it prints
    assert isinstance(bootstrap_addr.token, str) and bootstrap_addr.token
    assert bootstrap_addr.organization_id == org_id
    # ...and that URL survives a round trip through its text form
    reparsed = BackendOrganizationBootstrapAddr.from_url(bootstrap_addr.to_url())
    assert reparsed == bootstrap_addr
    assert reparsed.token == bootstrap_addr.token


@time_limit(30)
async def test_created_organization_config_then_bootstrapped(server):
    org_id, bootstrap_addr = await create_org(server, "Admin")
    config = await _admin_get_org(server, org_id)
    assert config == {
        "is_bootstrapped": False,
        "is_expired": False,
        "user_profile_outsider_allowed": True,
        "active_users_limit": None,
    }
    await bootstrap(bootstrap_addr)
    assert (await _admin_get_org(server, org_id))["is_bootstrapped"] is True


@time_limit(30)
async def test_create_organization_with_wrong_admin_token_is_refused(server):
    request = urllib.request.Request(
        server.addr.to_http_domain_url("/administration/organizations"),
        data=json.dumps({"organization_id": new_org_id("Admin").str}).encode(),
        headers={"authorization": "Bearer not-the-token", "content-type": "application/json"},
        method="POST",
    )

    def post():
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as rep:
                return rep.status, rep.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    status, body = await trio.to_thread.run_sync(post)
    # Same answer as the reference server (parsec/backend/http.py)
    assert (status, json.loads(body)) == (403, {"error": "not_allowed"}), (status, body)
