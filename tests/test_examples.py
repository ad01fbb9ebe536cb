"""
The examples run as a user runs them, against the embedded fake Rehook.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import urllib.request
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def _run(script: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("REHOOK_API_KEY", "REHOOK_API_SECRET", "REHOOK_BASE_URL")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_quickstart_sends_the_seed_examples() -> None:
    """The quickstart prints every seed example's outcome and what the fake recorded."""
    out = await _run("quickstart.py")
    assert out.count("DELIVERED") == 4
    assert "anonymous_only" in out
    assert "missing_referral_code" in out
    assert 'POST /customers -> 200  {"source_id": "userId12345"' in out


async def test_custom_mappings_example() -> None:
    """The custom mappings example shows each kind of mapping at work."""
    out = await _run("custom_mappings.py")
    for expected in ["order_success", "all 2 actions delivered", "no_matching_mapping", "high_ltv_customers"]:
        assert expected in out


async def test_lambda_handler_example() -> None:
    """The Lambda example invokes its handler as the runtime would: nothing is left in flight after each."""
    out = await _run("lambda_handler.py")
    assert "u1: {'statusCode': 200}; delivered so far 2, left in flight 0" in out
    assert "u2: {'statusCode': 200}; delivered so far 4, left in flight 0" in out
    assert "the fake recorded 2 customers and 2 events" in out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


async def _serve_and_stop(script: str) -> str:
    """Run an example server as its docstring says, send a signup and an order, stop it with Ctrl-C (SIGINT)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REHOOK_API_KEY", "REHOOK_API_SECRET", "REHOOK_BASE_URL")}
    env["PORT"] = str(port)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        for _ in range(300):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        base = f"http://127.0.0.1:{port}"
        signup = await asyncio.to_thread(_post, f"{base}/signup", {"user_id": "u1", "referral_code": "ADV001"})
        assert signup == {"ok": True}
        order = await asyncio.to_thread(_post, f"{base}/orders", {"user_id": "u1", "total": 10})
        assert order == {"rehook": "delivered", "reason": None}
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode() + err.decode()


async def test_the_flask_example_serves_and_drains() -> None:
    out = await _serve_and_stop("flask_app.py")
    assert "The fake Rehook received:" in out
    assert out.count("POST /events/invoke -> 200") == 2
    assert "POST /customers -> 200" in out


async def test_the_django_example_serves_and_drains() -> None:
    out = await _serve_and_stop("django_app.py")
    assert "The fake Rehook received:" in out
    assert out.count("POST /events/invoke -> 200") == 2
    assert "POST /customers -> 200" in out
