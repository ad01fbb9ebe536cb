"""
Secrets stay secret, credentials only travel encrypted, and TLS certificates are always verified.
"""

from __future__ import annotations

import base64
import inspect
import logging
import ssl
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from rehook_sdk import AuthenticationError, ConfigurationError, Reason, RehookClient, RetryPolicy, SyncRehookClient
from rehook_sdk.testing import FakeRehook

SECRET = "s3cr3t-value-that-must-not-leak"


async def test_secret_never_appears_anywhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Not in DEBUG logs (ours and aiohttp's), reprs, exceptions, outcomes, or the dead-letter file."""
    caplog.set_level(logging.DEBUG)
    async with FakeRehook(api_secret=SECRET) as fake:
        await _exercise(fake, tmp_path, caplog)


async def _exercise(fake: FakeRehook, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    token = base64.b64encode(f"{fake.api_key}:{SECRET}".encode()).decode()
    dead = tmp_path / "dead.jsonl"
    fake.fail_next(1, status=400)
    fake.fail_next(1, status=503)
    client = RehookClient(fake.api_key, SECRET, base_url=fake.url, dead_letter=dead, retry=RetryPolicy(time_scale=0))
    seen: list[str] = [repr(client)]
    async with client:
        outcomes = [await client.track("e", user_id="u1") for _ in range(3)]
        seen += [repr(o) for o in outcomes] + [repr(client), repr(client.stats())]
    wrong = RehookClient(fake.api_key, SECRET + "-wrong", base_url=fake.url)
    async with wrong:
        with pytest.raises(AuthenticationError) as info:
            await wrong.check_auth()
        failed = await wrong.track("e", user_id="u1")
    seen += [str(info.value), repr(info.value), repr(failed), repr(wrong), repr(SyncRehookClient("k", SECRET))]

    assert [o.reason for o in outcomes] == [Reason.REJECTED, None, None]
    assert outcomes[0].http_status == 400
    assert failed.http_status == 401
    everything = "\n".join([caplog.text, *seen, dead.read_text()])
    assert SECRET not in everything
    assert token not in everything


def test_no_switch_disables_tls_verification() -> None:
    """The client has no setting that turns certificate checks off: ssl= takes only a context that verifies."""
    settings = set(inspect.signature(RehookClient).parameters)
    assert not settings & {"verify", "verify_ssl", "insecure", "ssl_context"}
    for off in (False, 0, "none"):
        with pytest.raises(ConfigurationError, match="TLS verification cannot be turned off"):
            RehookClient("k", "s", ssl=off)  # type: ignore[arg-type]


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_untrusted_certificate_is_refused(self_signed: ssl.SSLContext) -> None:
    """An https server with a certificate nobody vouches for gets no credentials: the call fails at once."""
    received: list[web.Request] = []

    async def anything(request: web.Request) -> web.Response:
        received.append(request)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with RehookClient(
            "k", "s", base_url=f"https://127.0.0.1:{port}", retry=RetryPolicy(max_attempts=2, time_scale=0)
        ) as client:
            outcome = await client.track("e", user_id="u1")
    finally:
        await runner.cleanup()

    assert (outcome.reason, outcome.attempts) == (Reason.TLS_FAILED, 1)
    assert "certificate" in outcome.message.lower()
    assert received == []
