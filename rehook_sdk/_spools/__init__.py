"""
Spools: where accepted calls are kept durably until they are delivered (#15). The in-memory queue stays the path
calls are delivered from; a spool keeps a copy that survives the process, for the next start or another process.
"""

from .base import Adopted, SpoolState, decode_record, encode_record
from .sqlite import SpoolError, SqliteSpool

__all__ = ["Adopted", "SpoolError", "SpoolState", "SqliteSpool", "decode_record", "encode_record"]
