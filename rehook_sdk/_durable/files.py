"""
Files that hold users' calls (the dead-letter file, the CLI's ``--dropped-to``, a SQLite spool): created readable
by their owner only, and never written through a symbolic link.
"""

from __future__ import annotations

import errno
import os

__all__ = ["open_private", "private_error"]

# 0600: calls carry traits and properties, often personal data. A stricter umask still wins (open() applies it).
MODE = 0o600


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """
    Open ``path`` with ``flags``, creating it with mode 0600 if it is absent, refusing a symbolic link (O_NOFOLLOW,
    where the platform has it): an attacker who can write to the folder cannot point the SDK's appends at another
    file. Returns the descriptor.

    Raises:
        OSError: as ``os.open`` does; `private_error` words it.
    """
    return os.open(path, flags | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), MODE)


def private_error(exc: OSError) -> str:
    """
    Why `open_private` failed, in words.
    """
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link (give the file's own path: the SDK does not write through links)"
    return exc.strerror or str(exc)
