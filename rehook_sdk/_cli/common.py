"""
What the ``rehook`` commands share: their exit codes and the client they make from the command line.
"""

from __future__ import annotations

import argparse
from typing import Any

from .._client.client import RehookClient

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_HELD, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 3, 130, 141


def client_from(args: argparse.Namespace, **settings: Any) -> RehookClient:
    return RehookClient(args.api_key, args.api_secret, base_url=args.base_url, **settings)
