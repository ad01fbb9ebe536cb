"""
TLS trust (#13): the fake Rehook served over https with a certificate from a throwaway CA, made with the openssl
command. Without ssl= the client refuses it (unknown CA); with a context that trusts the CA it delivers; a context
that would not verify is refused when the client is made.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rehook_sdk import ConfigurationError, OutcomeStatus, RehookClient
from rehook_sdk.testing import FakeRehook

from .helpers import ForwardProxy

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test CA")


# What Python 3.13's strict verification (VERIFY_X509_STRICT, on by default) requires of a server certificate.
STRICT_SERVER_EXTENSIONS = (
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid,issuer\nsubjectKeyIdentifier=hash\n"
)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate for 127.0.0.1 and localhost signed by it: ca.pem, server.pem, server.key."""
    folder = tmp_path_factory.mktemp("ca")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-subj", "/CN=rehook-sdk test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost")  # fmt: skip
    (folder / "san.ext").write_text(STRICT_SERVER_EXTENSIONS + "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return folder


@pytest.fixture
async def tls_fake(ca: Path) -> AsyncIterator[FakeRehook]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca / "server.pem", ca / "server.key")
    async with FakeRehook(ssl_context=context) as fake:
        yield fake


async def test_a_context_that_trusts_the_ca_delivers(tls_fake: FakeRehook, ca: Path) -> None:
    assert tls_fake.url.startswith("https://127.0.0.1:")
    trusting = ssl.create_default_context(cafile=str(ca / "ca.pem"))
    async with tls_fake.client(ssl=trusting) as client:
        outcome = await client.track("e", user_id="u1")
        await client.check_auth()
    assert outcome.delivered
    assert len(tls_fake.requests) == 2


async def test_without_it_the_unknown_ca_is_refused(tls_fake: FakeRehook) -> None:
    async with tls_fake.client() as client:
        outcome = await client.track("e", user_id="u1")
    assert outcome.status is OutcomeStatus.FAILED
    assert "certificate verify failed" in outcome.message
    assert tls_fake.requests == []


async def test_the_system_trust_store_through_truststore(
    tls_fake: FakeRehook, ca: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ssl="system" trusts what the operating system trusts: on Linux, OpenSSL's CA bundle (SSL_CERT_FILE here
    stands for the test CA installed system-wide); the same client refuses the CA when the system does not trust it."""
    async with tls_fake.client(ssl="system") as client:
        refused = await client.track("e", user_id="u1")
    assert "certificate verify failed" in refused.message

    monkeypatch.setenv("SSL_CERT_FILE", str(ca / "ca.pem"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    async with tls_fake.client(ssl="system") as client:
        outcome = await client.track("e", user_id="u1")
    assert outcome.delivered


def test_the_system_trust_store_needs_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "truststore", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'rehook-sdk\[truststore\]'"):
        RehookClient("k", "s", ssl="system")


@pytest.mark.parametrize("setting", ["off", False])
def test_verification_cannot_be_turned_off(setting: object) -> None:
    with pytest.raises(ConfigurationError, match="TLS verification cannot be turned off"):
        RehookClient("k", "s", ssl=setting)  # type: ignore[arg-type]
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    with pytest.raises(ConfigurationError, match="does not verify the server"):
        RehookClient("k", "s", ssl=lax)


async def test_https_goes_through_a_proxy_tunnel_with_the_proxys_credentials(tls_fake: FakeRehook, ca: Path) -> None:
    """An https base URL through an explicit proxy: CONNECT with Proxy-Authorization, TLS to Rehook inside."""
    trusting = ssl.create_default_context(cafile=str(ca / "ca.pem"))
    async with ForwardProxy(credentials=("team", "s3cret-pw")) as proxy:
        proxied = proxy.url.replace("http://", "http://team:s3cret-pw@")
        async with tls_fake.client(ssl=trusting, proxy=proxied) as client:
            outcome = await client.track("e", user_id="u1")
    assert outcome.delivered
    host_port = tls_fake.url.removeprefix("https://")
    assert [(method, target) for method, target, _ in proxy.forwarded] == [("CONNECT", host_port)]
    assert proxy.forwarded[0][2] is not None
    assert len(tls_fake.requests) == 1
