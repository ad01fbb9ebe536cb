"""
The examples run as a user runs them, against the embedded fake Rehook.
"""

from __future__ import annotations

import asyncio
import os
import sys
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
