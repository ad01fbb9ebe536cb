"""
Spools: where accepted calls are kept durably until they are delivered (#15). The in-memory queue stays the path
calls are delivered from; a spool keeps a copy that survives the process, for the next start or another process.
`SpoolWriter` is what every store shares; `SqliteSpool` and `PostgresSpool` supply the database.
"""

from ..._core.exceptions import SpoolError
from .base import Adopted, Holdings, Replay, SpoolState, decode_record, encode_record, failure_text
from .postgres import PostgresSpool, is_postgres_url, need_psycopg
from .sqlite import SqliteSpool
from .writer import SpoolWriter

__all__ = [
    "Adopted",
    "Holdings",
    "PostgresSpool",
    "Replay",
    "SpoolError",
    "SpoolState",
    "SpoolWriter",
    "SqliteSpool",
    "decode_record",
    "encode_record",
    "failure_text",
    "is_postgres_url",
    "need_psycopg",
]
