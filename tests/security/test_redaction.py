"""
Redaction (#27, the audit's findings 1 and 3): a PostgreSQL password in any form libpq accepts never reaches a
message, a log line or the command line's output; an answer that echoes the credentials in any encoding a server
could use never carries them into an outcome, a log line or the dead-letter file, wherever the echo falls.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rehook_sdk import ConfigurationError, RehookClient, SpoolError
from rehook_sdk.testing import FakeRehook

from ..helpers import ScriptedServer, read_request

pytest.importorskip("psycopg")

PASSWORD = "S3cretPw-9d1e"
# Nothing listens on port 1: every form fails to connect, and each place that reports it is checked.
LOCATIONS = {
    "userinfo": f"postgresql://rehook:{PASSWORD}@127.0.0.1:1/test",
    "query": f"postgresql://rehook@127.0.0.1:1/test?sslmode=disable&password={PASSWORD}",
    "query-sslpassword": f"postgres://rehook@127.0.0.1:1/test?sslpassword={PASSWORD}",
    "conninfo": f"host=127.0.0.1 port=1 user=rehook password={PASSWORD} dbname=test",
    "conninfo-quoted": f"host=127.0.0.1 port=1 password = '{PASSWORD} x\\'y' dbname=test",
}


@pytest.fixture(params=list(LOCATIONS))
def location(request: pytest.FixtureRequest) -> str:
    return LOCATIONS[request.param]


async def test_a_spool_password_is_in_no_error_and_no_log_line(
    fake: FakeRehook, location: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = fake.client(spool=location)
    with pytest.raises(SpoolError) as refused:
        await client.start()
    assert "127.0.0.1" in str(refused.value)
    started_by_a_call = fake.client(spool=location)  # it logs, and delivers from memory
    assert (await started_by_a_call.track("e", user_id="u1")).delivered
    await started_by_a_call.aclose()
    assert "cannot be opened" in caplog.text
    for shown in (str(refused.value), repr(refused.value), caplog.text, repr(client)):
        assert PASSWORD not in shown


FORKED = """
import logging, os, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from rehook_sdk import SyncRehookClient
client = SyncRehookClient(api_key="k" * 8, api_secret="s" * 8, base_url=sys.argv[1], spool=sys.argv[2])
pid = os.fork()
if pid == 0:
    client.track("e", user_id="u1")  # the child opens its own spool, and cannot
    client.close(5)
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_a_forked_child_that_cannot_open_its_spool_does_not_log_the_password(fake: FakeRehook, location: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORKED, fake.url, location], capture_output=True, text=True, timeout=60
    )
    assert "cannot" in done.stderr, done.stderr
    assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "command", [["relay", "--once", "--spool"], ["send", "--from-spool"], ["spool", "stats", "--spool"]]
)
def test_the_command_line_does_not_print_the_password(fake: FakeRehook, location: str, command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rehook_sdk", *command, location, "--base-url", fake.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={"REHOOK_API_KEY": fake.api_key, "REHOOK_API_SECRET": fake.api_secret, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode != 0
    assert "127.0.0.1" in done.stdout + done.stderr, done
    assert PASSWORD not in done.stdout + done.stderr


KEY, SECRET = "rk_live_4f9a2c", "sk_live_c0ffee-7b"
TOKEN = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()


def echoes() -> dict[str, str]:
    """What an echoing server or proxy could answer, each form in one body."""
    json_escaped = json.dumps({"secret": "".join(f"\\u{ord(c):04x}" for c in SECRET)})
    return {
        "raw": f"Authorization: Basic {TOKEN}",
        "secret": f"bad secret {SECRET}",
        "key:secret": f"{KEY}:{SECRET}",
        "unpadded": f"token {TOKEN.rstrip('=')}.",
        "json-short": json.dumps({"auth": f"Basic {TOKEN}".replace("/", "\\/")}),
        "json-unicode": json_escaped.replace("\\\\", "\\"),
        "json-mixed": SECRET[:3] + "".join(f"\\u{ord(c):04X}" for c in SECRET[3:]),
        "percent": urllib.parse.quote(f"Basic {TOKEN}", safe=""),
        "percent-all": "".join(f"%{b:02x}" for b in SECRET.encode()),
        # The audit's bypass: the token placed across the old 8,192-character cut, its padding beyond it.
        "at-the-cut": "x" * (8192 - len(TOKEN) + 2) + TOKEN,
    }


def secret_forms() -> list[str]:
    return [SECRET, TOKEN, TOKEN.rstrip("="), TOKEN[:-4], f"{KEY}:{SECRET}"]


@pytest.mark.usefixtures("both_transports")
@pytest.mark.parametrize("form", list(echoes()))
async def test_an_echoed_secret_is_redacted_in_every_form(form: str, tmp_path: Path) -> None:
    body = echoes()[form].encode()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    dead_letter = tmp_path / "dead.jsonl"
    async with (
        ScriptedServer(answer) as server,
        RehookClient(KEY, SECRET, base_url=server.url, dead_letter=dead_letter) as client,
    ):
        outcome = await client.track("e", user_id="u1")
    kept = [outcome.message, outcome.response_body or "", repr(outcome), dead_letter.read_text()]
    assert "[redacted]" in (outcome.response_body or "")
    for text in kept:
        decoded = urllib.parse.unquote(text.encode().decode("unicode_escape", errors="ignore"))
        for secret in secret_forms():
            assert secret not in text, (form, text[-300:])
            assert secret not in decoded, (form, decoded[-300:])


def test_a_connection_string_libpq_cannot_read_is_refused_without_quoting_it() -> None:
    """libpq's own message would quote the piece after an unquoted space: here a part of the password."""
    with pytest.raises(ConfigurationError, match="password=\\*\\*\\*") as refused:
        RehookClient("k", "s", spool=f"host=127.0.0.1 password={PASSWORD} tail-{PASSWORD} dbname=test")
    assert PASSWORD not in str(refused.value)


SECRET_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))


@settings(deadline=None)
@given(
    secret=st.text(SECRET_CHARS, min_size=8, max_size=40),
    before=st.integers(min_value=0, max_value=9000),
    form=st.sampled_from(["secret", "token", "unpadded", "key:secret"]),
    after=st.text(max_size=20),
)
def test_an_echoed_secret_never_survives_whatever_it_is_and_wherever_it_falls(
    secret: str, before: int, form: str, after: str
) -> None:
    """Any secret, in any of its forms, at any offset (across the 8,192-character cut too), inside a JSON answer
    (which escapes quotes, backslashes and every non-ASCII character as \\uXXXX): never in the kept body, raw or
    decoded."""
    assume(secret not in MARKER)  # what replaces a secret then holds it: test_a_secret_inside_the_marker_is_replaced
    token = base64.b64encode(f"{KEY}:{secret}".encode()).decode()
    echoed = {"secret": secret, "token": token, "unpadded": token.rstrip("="), "key:secret": f"{KEY}:{secret}"}[form]

    async def run() -> str:
        async with FakeRehook(api_key=KEY, api_secret=secret) as fake:
            fake.fail_next(status=400, body={"echo": "x" * before + echoed + after})
            async with fake.memory_client() as client:
                outcome = await client.track("e", user_id="u1")
        return outcome.response_body or ""

    kept = asyncio.run(run())
    decoded = kept.encode().decode("unicode_escape", errors="ignore") if "\\" in kept else kept
    for text in (kept, decoded):
        assert secret not in text
        assert token.rstrip("=") not in text


MARKER = "[redacted]"


@pytest.mark.parametrize("secret", ["[redacte", "redacted", "edacted]"])
def test_a_secret_inside_the_marker_is_replaced(secret: str) -> None:
    """A secret that is part of the text that replaces secrets (found by Hypothesis: '[redacte') is replaced like any
    other: the answer keeps only the marker, so the secret is seen there and nowhere else."""

    async def run() -> str:
        async with FakeRehook(api_key=KEY, api_secret=secret) as fake:
            fake.fail_next(status=400, body={"echo": secret})
            async with fake.memory_client() as client:
                outcome = await client.track("e", user_id="u1")
        return outcome.response_body or ""

    assert json.loads(asyncio.run(run())) == {"echo": MARKER}


@pytest.mark.parametrize("secret", ['sk-"quoted"\\back/slash', "sk-ünïcödé-ß", "sk-😀-emoji-𝄞", "sk with spaces+plus"])
def test_secrets_with_characters_json_or_urls_escape_are_redacted_in_every_form(secret: str) -> None:
    async def run(body: object) -> str:
        async with FakeRehook(api_key=KEY, api_secret=secret) as fake:
            fake.fail_next(status=400, body=body)
            async with fake.memory_client() as client:
                outcome = await client.track("e", user_id="u1")
        return outcome.response_body or ""

    for body in ({"echo": secret}, urllib.parse.quote(secret), urllib.parse.quote_plus(secret), [secret]):
        kept = asyncio.run(run(body))
        assert "[redacted]" in kept, (body, kept)
        assert secret not in kept
        assert secret not in json.loads(kept).__repr__()
