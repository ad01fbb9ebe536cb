"""
Every Python example in README.md and on the documentation site (docs/) runs as written, against the fake Rehook,
with the credentials it shows (also in REHOOK_API_KEY / REHOOK_API_SECRET / REHOOK_BASE_URL).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import re
from pathlib import Path

import pytest

from rehook_sdk import ClientSettings, RehookClient
from rehook_sdk.testing import FakeRehook

ROOT = Path(__file__).resolve().parent.parent
# The database the examples on PostgreSQL name; the test server's URL replaces it.
EXAMPLE_DATABASE = "postgresql://app@localhost/app"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [
    (f"{page.relative_to(ROOT)}#{i}", source)
    for page in PAGES
    for i, source in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.DOTALL))
]


def test_the_readme_and_the_site_have_examples() -> None:
    """Both show code (and this file would silently test nothing otherwise)."""
    assert sum(name.startswith("README.md#") for name, _ in BLOCKS) >= 3
    assert sum(name.startswith("docs") for name, _ in BLOCKS) >= 20


def test_readme_examples_are_complete_scripts() -> None:
    """The README's examples run as a script, with no top-level await (the site's pages say when theirs use it)."""
    readme = [source for name, source in BLOCKS if name.startswith("README.md#")]
    flags = [compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT).co_flags for source in readme]
    assert [bool(f & inspect.CO_COROUTINE) for f in flags] == [False] * len(readme)


def test_every_page_with_top_level_await_says_so() -> None:
    for page in PAGES[1:]:
        sources = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.DOTALL)
        compiled = [compile(s, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT) for s in sources]
        if any(code.co_flags & inspect.CO_COROUTINE for code in compiled):
            assert "python -m asyncio" in page.read_text(encoding="utf-8"), page.name


@pytest.mark.parametrize("source", [source for _, source in BLOCKS], ids=[name for name, _ in BLOCKS])
async def test_example_runs(
    source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The example runs without error, with top-level await as a page writes it, in a folder of its own (for
    the files an example makes: a spool, a dead-letter file). An example on a PostgreSQL database runs on the test
    server, in a schema of its own (skipped without one, as the other PostgreSQL tests are)."""
    monkeypatch.chdir(tmp_path)
    if EXAMPLE_DATABASE in source:
        source = source.replace(EXAMPLE_DATABASE, request.getfixturevalue("postgres_url"))
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
        code = compile(source, "example", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        if code.co_flags & inspect.CO_COROUTINE:
            await eval(code, {"__name__": "readme"})
        else:
            # Blocking code (the sync client) runs in a thread, as in a real sync program: this loop serves the fake.
            await asyncio.to_thread(exec, code, {"__name__": "readme"})


def test_the_configuration_page_shows_every_setting() -> None:
    """Each RehookClient setting appears, with its default, in the Configuration page's example."""
    section = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    settings = [name for name in inspect.signature(RehookClient).parameters if name not in ("api_key", "api_secret")]
    assert [name for name in settings if f"    {name}=" not in section] == []


def test_client_settings_document_every_setting_of_both_clients() -> None:
    """
    Every RehookClient setting but the credentials, ``session`` and ``atexit_timeout`` is a key of ClientSettings (what
    SyncRehookClient takes), and its docstring documents each: a new setting is added and documented in one place.
    """
    own = {"api_key", "api_secret", "session", "atexit_timeout"}
    settings = [name for name in inspect.signature(RehookClient).parameters if name not in own]
    assert sorted(ClientSettings.__optional_keys__) == sorted(settings)
    documented = inspect.cleandoc(ClientSettings.__doc__ or "")  # Python 3.13 dedents docstrings itself
    assert [name for name in settings if f"\n    {name}: " not in documented] == []
