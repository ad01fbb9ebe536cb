"""
The security audit's configuration findings (#27), kept as tests: headers that frame or route a request, a proxy
that would carry the Authorization header in clear, the proxy environment read as curl documents it, and the
command line's secret kept out of the process list.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from yarl import URL

from rehook_sdk import ConfigurationError, RehookClient
from rehook_sdk._transports import no_proxy_exempts, proxy_for
from rehook_sdk.testing import FakeRehook

from ..helpers import ForwardProxy

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
REHOOK = URL("https://api.rehook.ai")


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "name",
    [
        "Transfer-Encoding", "transfer-encoding", "Content-Length", "CONTENT-LENGTH", "Host", "Connection",
        "Expect", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Authorization", "proxy-connection", "Proxy-Foo",
    ],
)  # fmt: skip
def test_headers_that_frame_or_route_the_request_are_refused_by_name(name: str) -> None:
    with pytest.raises(ConfigurationError, match=f"headers: {name} frames or routes the request"):
        RehookClient("k", "s", headers={name: "x"})


@pytest.mark.usefixtures("both_transports")
async def test_headers_a_gateway_needs_are_still_sent(fake: FakeRehook) -> None:
    async with fake.client(headers={"X-Gateway-Key": "g", "User-Agent": "mine/1"}) as client:
        assert (await client.track("e", user_id="u1")).delivered
    sent = fake.requests[0].headers
    assert (sent["X-Gateway-Key"], sent["User-Agent"]) == ("g", "mine/1")


@pytest.mark.parametrize("proxy", ["http://10.0.0.5:3128", "http://proxy.example.com:3128", "https://proxy.example"])
def test_a_remote_proxy_is_refused_with_a_plain_http_base_url(proxy: str) -> None:
    """The audit's finding 4: the Authorization header would cross the network to the proxy in clear."""
    with pytest.raises(ConfigurationError, match="would travel unencrypted to the proxy"):
        RehookClient("k", "s", base_url="http://127.0.0.1:8080", proxy=proxy)


async def test_a_loopback_proxy_with_a_plain_http_base_url_still_delivers(fake: FakeRehook) -> None:
    async with ForwardProxy() as proxy, fake.client(proxy=proxy.url) as client:
        outcome = await client.track("e", user_id="u1")
    assert outcome.delivered
    assert len(proxy.forwarded) == 1


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "exempt"),
    [
        ("*", "api.rehook.ai", 443, True),
        ("rehook.ai", "api.rehook.ai", 443, True),
        ("rehook.ai", "rehook.ai", 443, True),
        (".rehook.ai", "api.rehook.ai", 443, True),
        ("*.rehook.ai", "api.rehook.ai", 443, True),
        ("rehook.ai", "notrehook.ai", 443, False),
        ("hook.ai", "api.rehook.ai", 443, False),
        ("api.rehook.ai:443", "api.rehook.ai", 443, True),
        ("api.rehook.ai:8443", "api.rehook.ai", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.1.2.3", "10.1.2.3", 443, True),
        ("fd00::/8", "fd12::1", 443, True),
        ("[fd12::1]:443", "fd12::1", 443, True),
        ("example.com, rehook.ai", "api.rehook.ai", 443, True),
        ("example.com rehook.ai", "api.rehook.ai", 443, True),
        ("REHOOK.AI", "Api.Rehook.Ai", 443, True),
        ("", "api.rehook.ai", 443, False),
        ("10.0.0.0/8", "api.rehook.ai", 443, False),
    ],
)
def test_no_proxy_exempts_hosts_as_curl_does(no_proxy: str, host: str, port: int, exempt: bool) -> None:
    assert no_proxy_exempts(no_proxy, host, port) is exempt


@pytest.mark.parametrize("entry", ["*.rehook.ai", "api.rehook.ai:443", "*", ".rehook.ai"])
def test_the_environments_no_proxy_takes_the_client_past_the_proxy(environment: pytest.MonkeyPatch, entry: str) -> None:
    environment.setenv("HTTPS_PROXY", "http://egress.internal:3128")
    assert proxy_for(REHOOK, None) == URL("http://egress.internal:3128")
    environment.setenv("NO_PROXY", entry)
    assert proxy_for(REHOOK, None) is None


def test_all_proxy_is_the_fallback(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("ALL_PROXY", "http://all.internal:3128")
    assert proxy_for(REHOOK, None) == URL("http://all.internal:3128")
    environment.setenv("https_proxy", "http://https.internal:3128")
    assert proxy_for(REHOOK, None) == URL("http://https.internal:3128")


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_a_socks_proxy_in_the_environment_is_an_error_not_a_direct_connection(
    environment: pytest.MonkeyPatch, variable: str
) -> None:
    """The audit's finding 7: HTTPS_PROXY=socks5://... was ignored, and the client connected past it."""
    environment.setenv(variable, "socks5://team:pr0xy-s3cret@socks.internal:1080")
    with pytest.raises(ConfigurationError, match=f"{variable.upper()} names a socks5:// proxy") as info:
        RehookClient("k", "s")
    assert "pr0xy-s3cret" not in str(info.value)
    environment.setenv("NO_PROXY", "rehook.ai")
    assert "state='not started'" in repr(RehookClient("k", "s"))  # exempt: the variable does not apply


def rehook(
    fake: FakeRehook, *args: str, stdin: str = "", secret_in_env: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REHOOK_")}
    if secret_in_env:
        env["REHOOK_API_SECRET"] = fake.api_secret
    return subprocess.run(
        [sys.executable, "-m", "rehook_sdk", *args, "--api-key", fake.api_key, "--base-url", fake.url],
        input=stdin, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def test_the_command_line_reads_the_secret_from_a_file_or_standard_input(
    threaded_fake: FakeRehook, tmp_path: Path
) -> None:
    """The audit's finding 8: --api-secret is in /proc/PID/cmdline for every local user to read."""
    fake = threaded_fake
    secret_file = tmp_path / "secret"
    secret_file.write_text(fake.api_secret + "\n")
    from_file = rehook(fake, "check-auth", "--api-secret-file", str(secret_file))
    from_stdin = rehook(fake, "check-auth", "--api-secret-file", "-", stdin=fake.api_secret + "\n")
    from_env = rehook(fake, "check-auth", secret_in_env=True)
    for done in (from_file, from_stdin, from_env):
        assert done.returncode == 0, done
        assert fake.api_secret not in done.stdout + done.stderr
        assert "warning" not in done.stderr


def test_api_secret_on_the_command_line_still_works_with_a_warning(threaded_fake: FakeRehook) -> None:
    fake = threaded_fake
    done = rehook(fake, "check-auth", "--api-secret", fake.api_secret)
    assert done.returncode == 0, done
    assert "warning: --api-secret shows the secret to every user of this machine" in done.stderr
    assert fake.api_secret not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "problem"),
    [
        (["send", "-", "--api-secret-file", "-"], "", "standard input carries the calls"),
        (["check-auth", "--api-secret-file", "/nonexistent/secret"], "", "cannot read the secret from"),
        (["check-auth", "--api-secret-file", "-"], "\n", "its first line is empty"),
        (["check-auth", "--api-secret-file", "-", "--api-secret", "x"], "", "not allowed with argument"),
    ],
)
def test_a_secret_source_that_cannot_be_used_is_a_usage_error(
    threaded_fake: FakeRehook, args: list[str], stdin: str, problem: str
) -> None:
    fake = threaded_fake
    done = rehook(fake, *args, stdin=stdin)
    assert done.returncode == 2, done
    assert problem in done.stderr, done.stderr
    assert fake.requests == []
