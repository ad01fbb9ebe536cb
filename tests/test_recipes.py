"""
The server recipes (docs/integrations), run for real: each server serves an example app in worker processes, answers
signups while Rehook is slow, and is stopped with SIGTERM as a deployment stops it. Every call the views made must
reach the fake exactly once (those still queued or in flight at SIGTERM included).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from rehook_sdk.testing import FakeRehook

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SIGNUPS = 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(command: list[str], fake: FakeRehook, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REHOOK_")}
    env.update(REHOOK_API_KEY=fake.api_key, REHOOK_API_SECRET=fake.api_secret, REHOOK_BASE_URL=fake.url)
    env["PYTHONPATH"] = str(EXAMPLES)
    server = subprocess.Popen(
        command, env=env, cwd=EXAMPLES, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.05)
    server.kill()
    output, _ = server.communicate()
    raise AssertionError(f"the server did not start: {output}")


def signup(port: int, user: str) -> object:
    body = json.dumps({"user_id": user, "referral_code": "ADV001"}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/signup", data=body, headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def signups_then_sigterm(server: subprocess.Popen[str], fake: FakeRehook, port: int) -> None:
    """Send the signups, stop the server with SIGTERM, and check that each call reached the fake exactly once."""
    try:
        for i in range(SIGNUPS):
            assert signup(port, f"u{i}") == {"ok": True}
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert "Traceback" not in output, output
    assert Counter(event["source_id"] for event in fake.events) == Counter(f"u{i}" for i in range(SIGNUPS))
    assert sorted(fake.customers) == sorted(f"u{i}" for i in range(SIGNUPS))


WSGI = ["flask_app:create_app()"]
ASGI_FACTORY = ["fastapi_app:create_app()"]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["gunicorn", "--preload", "-w", "2", *WSGI], id="gunicorn-sync-preload"),
        pytest.param(["gunicorn", "-k", "gthread", "--threads", "4", "-w", "2", *WSGI], id="gunicorn-gthread"),
        pytest.param(["uvicorn", "--workers", "2", "--factory", "fastapi_app:create_app"], id="uvicorn-workers"),
        pytest.param(
            ["gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2", *ASGI_FACTORY], id="gunicorn-uvicorn"
        ),
        pytest.param(["hypercorn", "-w", "2", *ASGI_FACTORY], id="hypercorn-workers"),
    ],
)
def test_a_server_stopped_with_sigterm_has_delivered_every_call_once(
    threaded_fake: FakeRehook, command: list[str]
) -> None:
    port = free_port()
    executable, *options = command
    if executable == "gunicorn":
        options += ["-b", f"127.0.0.1:{port}", "--graceful-timeout", "20"]
    elif executable == "uvicorn":
        options += ["--host", "127.0.0.1", "--port", str(port)]
    else:
        options += ["-b", f"127.0.0.1:{port}"]
    threaded_fake.delay_next(SIGNUPS * 2, seconds=0.2)  # slow Rehook: calls are still pending at SIGTERM
    signups_then_sigterm(serve([sys.executable, "-m", executable, *options], threaded_fake, port), threaded_fake, port)


def uwsgi_binary() -> str:
    found = shutil.which("uwsgi", path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("REHOOK_REQUIRE_UWSGI") == "1":
            pytest.fail("REHOOK_REQUIRE_UWSGI=1 but uwsgi is not installed in this environment")
        pytest.skip("uWSGI is not installed (pip install uwsgi; it needs a C compiler): .ci/run installs it")
    return found


@pytest.mark.parametrize("hooks", [[], ["--py-call-uwsgi-fork-hooks"]], ids=["no-fork-hooks", "fork-hooks"])
def test_uwsgi_stopped_with_sigterm_has_delivered_every_call_once(
    threaded_fake: FakeRehook, tmp_path: Path, hooks: list[str]
) -> None:
    """uWSGI's master imports the app (which makes the client, no call) and forks 2 workers from C, running
    os.register_at_fork's hooks only with --py-call-uwsgi-fork-hooks; SIGTERM with --die-on-term stops them."""
    (tmp_path / "uwsgi_app.py").write_text("from flask_app import create_app\n\napplication = create_app()\n")
    port = free_port()
    threaded_fake.delay_next(SIGNUPS * 2, seconds=0.2)
    command = [
        *(uwsgi_binary(), "--http-socket", f"127.0.0.1:{port}", "--master", "--processes", "2", "--enable-threads"),
        *("--die-on-term", "--module", "uwsgi_app", "--pythonpath", str(tmp_path), "--pythonpath", str(EXAMPLES)),
        *("--home", sys.prefix, *hooks),
    ]
    signups_then_sigterm(serve(command, threaded_fake, port), threaded_fake, port)


HELD_SIGTERM = """
import asyncio, os, signal, sys
from rehook_sdk import RehookClient
from rehook_sdk.integrations.aiohttp import running_client

async def main() -> None:
    client = RehookClient(api_key=sys.argv[2], api_secret=sys.argv[3], base_url=sys.argv[1])
    async with running_client(client, close_timeout=30) as rehook:
        for i in range(10):
            rehook.track("Order Completed", user_id=f"u{i}")
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)  # during the drain
    print("not reached: the held SIGTERM ends the process as the drain ends", flush=True)

asyncio.run(main())
"""


def test_a_sigterm_during_the_lifespan_drain_waits_for_the_drain_then_takes_effect(
    threaded_fake: FakeRehook,
) -> None:
    """hypercorn's master SIGTERMs its other workers as soon as one exits, while they may still be draining."""
    threaded_fake.delay_next(10, seconds=0.3)  # the calls are in flight when SIGTERM comes
    env = {k: v for k, v in os.environ.items() if not k.startswith("REHOOK_")}
    done = subprocess.run(
        [sys.executable, "-c", HELD_SIGTERM, threaded_fake.url, threaded_fake.api_key, threaded_fake.api_secret],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGTERM, done
    assert done.stdout == "", done
    assert Counter(event["source_id"] for event in threaded_fake.events) == Counter(f"u{i}" for i in range(10))
