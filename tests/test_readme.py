"""
Every Python example in README.md runs as written (against the fake Rehook, with the credentials it shows).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import re
from pathlib import Path

import pytest

from rehook_sdk import RehookClient
from rehook_sdk.testing import FakeRehook

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_readme_has_examples() -> None:
    """The README shows code (and this file would silently test nothing otherwise)."""
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
async def test_readme_example_runs(source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The example runs without error, with top-level await as the README writes it, in a folder of its own (for
    the files an example makes: a spool, a dead-letter file)."""
    monkeypatch.chdir(tmp_path)
    # An example may configure the rehook_sdk logger (the Logging recipe): it must not outlive its test.
    sdk_logger = logging.getLogger("rehook_sdk")
    handlers, level = list(sdk_logger.handlers), sdk_logger.level
    try:
        await _run_block(source, monkeypatch)
    finally:
        sdk_logger.handlers[:] = handlers
        sdk_logger.setLevel(level)  # also clears the loggers' isEnabledFor caches


async def _run_block(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeRehook(api_key="API_KEY", api_secret="API_SECRET", conversion_events={"signup"}) as fake:
        monkeypatch.setenv("REHOOK_BASE_URL", fake.url)
        monkeypatch.setenv("REHOOK_API_KEY", "API_KEY")
        monkeypatch.setenv("REHOOK_API_SECRET", "API_SECRET")
        code = compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        if code.co_flags & inspect.CO_COROUTINE:
            await eval(code, {"__name__": "readme"})
        else:
            # Blocking code (the sync client) runs in a thread, as in a real sync program: this loop serves the fake.
            await asyncio.to_thread(exec, code, {"__name__": "readme"})


def test_the_configuration_section_shows_every_setting() -> None:
    """Each RehookClient setting appears, with its default, in the README's Configuration example."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Configuration") : text.index("## Delivery guarantees")]
    settings = [name for name in inspect.signature(RehookClient).parameters if name not in ("api_key", "api_secret")]
    assert [name for name in settings if f"    {name}=" not in section] == []
