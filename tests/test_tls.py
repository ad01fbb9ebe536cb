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

from rehook_sdk import ConfigurationError, OutcomeStatus, Reason, RehookClient, RehookError
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
    # The same key under a name that is not the server's, and with dates long past (openssl ca sets any dates).
    (folder / "other.ext").write_text(STRICT_SERVER_EXTENSIONS + "subjectAltName=DNS:other.invalid\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "wrong-host.pem", "-days", "2", "-extfile", "other.ext")  # fmt: skip
    (folder / "index.txt").write_text("")
    (folder / "serial").write_text("1000\n")
    (folder / "ca.cnf").write_text(
        "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\n"
        "policy=p\n[p]\ncommonName=supplied\n"
    )
    openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", "server.csr",
            "-out", "expired.pem", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
            "-extfile", "san.ext", "-notext")  # fmt: skip
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


@pytest.fixture(params=["unknown CA", "wrong host name", "expired"])
async def refused_fake(request: pytest.FixtureRequest, ca: Path) -> AsyncIterator[tuple[FakeRehook, str]]:
    """A fake whose certificate the client refuses, and the words OpenSSL uses for why."""
    certificate, why = {
        "unknown CA": ("server.pem", "unable to get local issuer certificate"),
        "wrong host name": ("wrong-host.pem", "IP address mismatch"),
        "expired": ("expired.pem", "certificate has expired"),
    }[request.param]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca / certificate, ca / "server.key")
    async with FakeRehook(ssl_context=context) as fake:
        yield fake, why


def trusting_unless_unknown(ca: Path, why: str) -> ssl.SSLContext | None:
    if why.startswith("unable to get local issuer"):
        return None
    return ssl.create_default_context(cafile=str(ca / "ca.pem"))


@pytest.mark.usefixtures("both_transports")
async def test_a_refused_certificate_fails_at_once_as_tls_failed(
    refused_fake: tuple[FakeRehook, str], ca: Path
) -> None:
    """Unknown CA, wrong host name, expired: one handshake, no retry, reason tls_failed naming the problem."""
    fake, why = refused_fake
    async with fake.client(ssl=trusting_unless_unknown(ca, why)) as client:
        outcome = await client.track("e", user_id="u1")
        assert client.stats().retried == 0
        with pytest.raises(RehookError, match=f"the TLS handshake with .* refused its certificate: .*{why}"):
            await client.check_auth()
    assert (outcome.status, outcome.reason, outcome.attempts, outcome.maybe_delivered) == (
        OutcomeStatus.FAILED,
        Reason.TLS_FAILED,
        1,
        False,
    )
    assert outcome.message.startswith("TLS handshake failed, not retried: cannot connect: ")
    assert why in outcome.message
    assert fake.requests == []


async def test_a_refused_certificate_through_a_proxy_tunnel_is_tls_failed_too(
    refused_fake: tuple[FakeRehook, str], ca: Path
) -> None:
    """The same refusals when the TLS runs inside a proxy's CONNECT tunnel."""
    fake, why = refused_fake
    async with ForwardProxy() as proxy, fake.client(ssl=trusting_unless_unknown(ca, why), proxy=proxy.url) as client:
        outcome = await client.track("e", user_id="u1")
    assert (outcome.reason, outcome.attempts, outcome.maybe_delivered) == (Reason.TLS_FAILED, 1, False)
    assert why in outcome.message
    assert len(proxy.forwarded) == 1


@pytest.mark.parametrize("password", ["wrong-pw", None])
async def test_a_proxys_407_on_connect_is_rejected_once(tls_fake: FakeRehook, ca: Path, password: str | None) -> None:
    """https through a proxy that refuses the credentials (or their absence): rejected with 407, not retried, and
    never maybe delivered (the tunnel was never opened)."""
    trusting = ssl.create_default_context(cafile=str(ca / "ca.pem"))
    async with ForwardProxy(credentials=("team", "s3cret-pw")) as proxy:
        proxied = proxy.url.replace("http://", f"http://team:{password}@") if password else proxy.url
        async with tls_fake.client(ssl=trusting, proxy=proxied) as client:
            outcome = await client.track("e", user_id="u1")
    assert (outcome.reason, outcome.http_status, outcome.attempts, outcome.maybe_delivered) == (
        Reason.REJECTED,
        407,
        1,
        False,
    )
    assert outcome.message.startswith("the proxy refused to open the tunnel to Rehook with 407")
    assert "wrong-pw" not in outcome.message
    assert proxy.refused == 1
    assert tls_fake.requests == []


async def test_check_auth_names_a_proxys_refusal(tls_fake: FakeRehook, ca: Path) -> None:
    """check_auth() through a proxy that refuses the credentials says the proxy refused, not Rehook."""
    trusting = ssl.create_default_context(cafile=str(ca / "ca.pem"))
    async with ForwardProxy(credentials=("team", "s3cret-pw")) as proxy:
        proxied = proxy.url.replace("http://", "http://team:wrong-pw@")
        async with tls_fake.client(ssl=trusting, proxy=proxied) as client:
            with pytest.raises(RehookError, match=r"the proxy refused to open the tunnel to .* with HTTP 407"):
                await client.check_auth()


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


@pytest.mark.usefixtures("both_transports")
async def test_a_context_weakened_after_the_client_was_made_does_not_weaken_it(ca: Path) -> None:
    """The audit's finding 6: check_hostname = False on the caller's context, set later, let a wrong host through."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca / "wrong-host.pem", ca / "server.key")
    trusting = ssl.create_default_context(cafile=str(ca / "ca.pem"))
    async with FakeRehook(ssl_context=context) as fake, fake.client(ssl=trusting) as client:
        trusting.check_hostname = False
        trusting.verify_mode = ssl.CERT_NONE
        outcome = await client.track("e", user_id="u1")
        with pytest.raises(RehookError, match="no longer verifies the server"):
            await client.check_auth()
    assert (outcome.status, outcome.reason, outcome.attempts) == (OutcomeStatus.FAILED, Reason.TLS_FAILED, 1)
    assert "no longer verifies the server" in outcome.message
    assert fake.requests == []
