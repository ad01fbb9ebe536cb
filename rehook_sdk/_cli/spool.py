"""
``rehook spool stats`` and ``rehook spool purge``: what a spool holds (every application's calls, counted by state,
with their bytes and the age of the oldest), and removing one application's failed calls older than a retention.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._core.constants import API_KEY_ENV
from .._core.exceptions import ConfigurationError, SpoolError
from .._durable.spools import PostgresSpool, SpoolState, SqliteSpool, encode_record, is_postgres_url
from .._durable.spools.identity import identity_from
from .._durable.spools.writer import SpoolWriter
from .._report.outcome_log import calls

__all__ = ["spool_command"]

_STATES = {SpoolState.QUEUED: "queued", SpoolState.SENDING: "being sent", SpoolState.FAILED: "failed"}
_TIMEOUT = 60.0  # seconds a statement may take (a spool another process holds locked)


def spool_command(args: argparse.Namespace) -> int:
    """
    Run ``rehook spool stats`` or ``rehook spool purge``; the exit status.

    Raises:
        ConfigurationError: no API key, or a bad base URL.
        SpoolError: the spool cannot be opened.
    """
    with _opened(args) as spool:
        if args.spool_command == "stats":
            for line in _stats_lines(spool.where, spool.app, spool.census().result(_TIMEOUT)):
                print(line)
            return 0
        removed = spool.purge(args.older_than).result(_TIMEOUT)
    print(
        f"rehook spool purge: removed {calls(removed)} of this application's failed calls accepted more than "
        f"{_age(args.older_than)} ago from {spool.where}"
    )
    return 0


@contextlib.contextmanager
def _opened(args: argparse.Namespace) -> Iterator[SpoolWriter[Any, Any]]:
    app = identity_from(args.api_key, args.base_url)
    if app is None:
        raise ConfigurationError(
            f"the spool's rows name their application: pass --api-key or set {API_KEY_ENV} (the secret is not needed)"
        )
    spool: SpoolWriter[Any, Any]
    if is_postgres_url(args.spool):
        spool = PostgresSpool(args.spool, encode_record, app=app)
    else:
        if not Path(args.spool).is_file():  # looking must not create an empty spool
            raise SpoolError(f"{args.spool}: no spool there")
        spool = SqliteSpool(args.spool, encode_record, app=app)
    try:
        yield spool
    finally:
        spool.close(release=False, timeout=_TIMEOUT)


def _stats_lines(where: str, app: str, census: list[tuple[str | None, int, int, int, float]]) -> list[str]:
    groups: dict[str, dict[int, tuple[int, int, float]]] = {"mine": {}, "others": {}, "none": {}}
    others = {owner for owner, *_ in census if owner is not None and owner != app}
    for owner, state, count, size, age in census:
        kind = "mine" if owner == app else "none" if owner is None else "others"
        was = groups[kind].get(state, (0, 0, 0.0))
        groups[kind][state] = (was[0] + count, was[1] + size, max(was[2], age))
    labels = {
        "mine": "this application",
        "others": f"{len(others)} other application{'s' if len(others) != 1 else ''}",
        "none": "no application (spooled before rows named one)",
    }
    total = sum(size for group in groups.values() for _, size, _ in group.values())
    lines = [f"rehook spool stats: {where}: {total:,} bytes of calls"]
    for kind, label in labels.items():
        states = groups[kind]
        if not states and kind != "mine":
            continue
        parts = [
            f"{count:,} {_STATES[SpoolState(state)]}"
            + (f" (the oldest {_age(age)} old)" if state == SpoolState.FAILED else "")
            for state, (count, _, age) in sorted(states.items())
        ]
        lines.append(f"  {label}: {', '.join(parts) or 'nothing'}")
    return lines


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
