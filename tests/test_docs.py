"""
The documentation site builds with warnings as errors, and its API reference documents every public name (its
examples run in tests/test_doc_examples.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import rehook_sdk

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_site_builds_without_warnings_and_documents_every_public_name(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html", str(DOCS), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    reference = (tmp_path / "api.html").read_text(encoding="utf-8")
    missing = [name for name in rehook_sdk.__all__ if f'id="rehook_sdk.{name}"' not in reference]
    assert missing == [], f"public names missing from docs/api.md: {missing}"
    for client in ("RehookClient", "SyncRehookClient"):  # the calls too, wherever a client class defines them
        methods = ("identify", "track", "page", "screen", "group", "alias", "audience", "flush", "stats")
        undocumented = [m for m in methods if f'id="rehook_sdk.{client}.{m}"' not in reference]
        assert undocumented == [], f"{client} methods missing from docs/api.md: {undocumented}"
    pages = {"starlette": "fastapi"}  # each integration's reference is on its page
    for module in ("aiohttp", "starlette", "django", "flask", "celery", "serverless"):
        page = pages.get(module, module)
        html = (tmp_path / "integrations" / f"{page}.html").read_text(encoding="utf-8")
        assert f'id="module-rehook_sdk.integrations.{module}"' in html
    assert 'id="module-rehook_sdk.testing"' in (tmp_path / "testing.html").read_text(encoding="utf-8")
    assert 'id="module-rehook_sdk.outbox"' in (tmp_path / "durable-delivery.html").read_text(encoding="utf-8")


def test_the_readmes_links_into_the_repository_resolve() -> None:
    """The README links into docs/ (and to LICENSE, SECURITY.md...) by relative paths, as a repository shows them."""
    readme = DOCS.parent / "README.md"
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme.read_text(encoding="utf-8"))
    assert len(targets) >= 10
    assert [target for target in targets if not (DOCS.parent / target).is_file()] == []
