"""
The caller's side: `RehookClient` and `SyncRehookClient`, the analytics.js calls, every setting checked once, and a
client's life outside the caller's code (fork, collection, exit). `delivery_engine` is the package's one seam into
the delivery engine behind a client.
"""

from .client import RehookClient, delivery_engine

__all__ = ["RehookClient", "delivery_engine"]
