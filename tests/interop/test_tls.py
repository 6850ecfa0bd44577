"""The real client over TLS: a `parsec://host:port` address without `no_ssl`,
served by `parsec-server run --ssl-certfile/--ssl-keyfile` with a certificate
from a custom CA (scripts/gen-test-ca.sh), which the client trusts through
`SSL_CAFILE` exactly as it does in the field (its transport adds that file to
certifi's roots, for the websocket and for the administration API alike).

scripts/test.sh starts that second server and sets PARSEC_INTEROP_TLS_ADDR
and PARSEC_INTEROP_TLS_CAFILE. Without them these tests are skipped, except
under CI=true where they fail."""

import os
import ssl
import urllib.error

import pytest

from parsec.core.backend_connection import BackendNotAvailable
from parsec.core.types import BackendOrganizationAddr

from parsec_interop import ServerUnderTest, authenticated_cmds, bootstrap, create_org, time_limit


@pytest.fixture
def tls_server(monkeypatch) -> ServerUnderTest:
    url = os.environ.get("PARSEC_INTEROP_TLS_ADDR")
    cafile = os.environ.get("PARSEC_INTEROP_TLS_CAFILE")
    if not (url and cafile):
        message = "no TLS server (PARSEC_INTEROP_TLS_ADDR / PARSEC_INTEROP_TLS_CAFILE unset)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    monkeypatch.setenv("SSL_CAFILE", cafile)
    server = ServerUnderTest(url=url, admin_token=os.environ.get("PARSEC_INTEROP_ADMIN_TOKEN") or "s3cr3t")
    assert server.addr.use_ssl, f"{url} must be a TLS address (no no_ssl=true)"
    return server


@time_limit(60)
async def test_create_bootstrap_and_login_over_tls(tls_server):
    # Administration API over https, bootstrap and commands over wss.
    org_id, bootstrap_addr = await create_org(tls_server, prefix="Tls")
    assert bootstrap_addr.use_ssl
    alice = await bootstrap(bootstrap_addr)
    assert alice.organization_addr.use_ssl
    async with authenticated_cmds(alice) as cmds:
        rep = await cmds.ping("over tls")
        assert rep == {"status": "ok", "pong": "over tls"}
        rep = await cmds.organization_config()
        assert rep["status"] == "ok", rep
    # The organization URL the client would share keeps TLS on.
    url = alice.organization_addr.to_url()
    assert "no_ssl" not in url
    assert BackendOrganizationAddr.from_url(url).organization_id == org_id


@time_limit(60)
async def test_a_client_without_the_ca_is_refused(tls_server, monkeypatch):
    _, bootstrap_addr = await create_org(tls_server, prefix="TlsNoCA")
    alice = await bootstrap(bootstrap_addr)
    monkeypatch.delenv("SSL_CAFILE")
    # Administration and anonymous API (https): certificate verification fails.
    with pytest.raises(urllib.error.URLError) as exc_info:
        await create_org(tls_server, prefix="TlsNoCA")
    assert isinstance(exc_info.value.reason, ssl.SSLCertVerificationError), exc_info.value
    # Websocket (wss): the server is not available to this client.
    with pytest.raises(BackendNotAvailable):
        async with authenticated_cmds(alice) as cmds:
            await cmds.ping("never")
