"""
The documentation site builds with warnings as errors, and its API reference documents every public name.
"""

from __future__ import annotations

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
    integrations = (tmp_path / "integrations.html").read_text(encoding="utf-8")
    for module in ("aiohttp", "starlette", "django", "flask", "celery", "serverless"):
        assert f'id="module-rehook_sdk.integrations.{module}"' in integrations


def test_every_python_example_on_the_site_runs(tmp_path: Path) -> None:
    blocks = [
        (page.name, block.split("\n", 1)[1])
        for page in sorted(DOCS.glob("*.md"))
        for block in page.read_text(encoding="utf-8").split("```")[1::2]
        if block.startswith("python\n")
    ]
    assert blocks, "no python examples found"
    for name, code in blocks:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"
