"""
The ``rehook`` command: send and replay calls from JSON Lines files, relay a spool, look after a spool, check
credentials, run the fake Rehook.

    rehook send calls.jsonl [more.jsonl | -] [--failed-to failed.jsonl] [--dry-run] [--concurrency 64] ...
    rehook relay --spool rehook-spool.db [--once]
    rehook spool stats --spool rehook-spool.db
    rehook check-auth
    rehook fake-server [--port 8080] [--conversion-event signup]

Credentials come from REHOOK_API_KEY/REHOOK_API_SECRET, --api-key and --api-secret-file (--api-secret is deprecated:
other users can read a command's arguments); the secret is never printed.
The progress bar needs the ``cli`` extra: ``pip install "rehook-sdk[cli]"``.

One module per job: `parser` (the arguments), `main` (run a command), `lines` (calls files), `send`, `relay` (a
spool's calls: relay and ``send --from-spool``), `spool` (``rehook spool``), `common` (exit codes, the client).
"""

from .main import main
from .parser import parser

__all__ = ["main", "parser"]
