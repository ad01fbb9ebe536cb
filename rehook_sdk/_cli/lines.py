"""
Calls files: JSON Lines of Segment calls read, numbered and turned into the client's calls; bad lines named.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import IO, Any, TextIO

from .._client.client import RehookClient
from .._core.types import CallType
from .._delivery.handle import EventHandle

# analytics.js message fields -> the options the client takes.
_OPTION_FIELDS = ("userId", "anonymousId", "timestamp", "context", "integrations", "messageId")


class BadLine(Exception):
    """
    A line that is not a call: reported with its file and line number, counted, and skipped.
    """


class MaybeDelivered(Exception):
    """
    A failed-file line whose request may have reached Rehook: skipped unless ``--resend-maybe-delivered``.
    """


def read_calls(paths: Sequence[str], stdin: TextIO) -> Iterator[tuple[str, int, str | BadLine]]:
    """
    (file name, line number, text) for every non-blank line, read lazily: a file of any size in constant memory.
    A line that is not UTF-8 comes as a `BadLine` instead of its text.
    """
    for path in paths:
        stream: IO[bytes]
        with contextlib.ExitStack() as stack:
            if path == "-":
                stream, name = stdin.buffer, "<stdin>"
            else:
                stream, name = stack.enter_context(open(path, "rb")), path
            for number, raw in enumerate(stream, 1):
                if not raw.strip():
                    continue
                try:
                    yield name, number, raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield name, number, BadLine(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")


def unreadable(paths: Sequence[str]) -> str | None:
    """
    Why one of ``paths`` cannot be read, checked before anything is sent; None when all can.
    """
    for path in paths:
        if path == "-":
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            return f"cannot read {path}: {exc.strerror or exc}"
    return None


def count_lines(paths: Sequence[str]) -> int | None:
    """
    How many lines the files hold, if all are regular files (counted in binary chunks, fast); else None.
    """
    total = 0
    for path in paths:
        if path == "-" or not os.path.isfile(path):
            return None
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                total += chunk.count(b"\n")
    return total


def parse_call(text: str, *, resend_maybe_delivered: bool = False) -> dict[str, Any]:
    """
    One Segment-spec call from a line: a message, or a dead-letter line (``{"v": 1, "call": {...}}``).

    Raises:
        BadLine: not JSON, not an object, or not a call this tool can send.
    """
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadLine(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(message, dict) and isinstance(message.get("call"), dict) and "v" in message:
        if message["v"] != 1:
            raise BadLine(f"dead-letter format version {message['v']!r} is not supported (this tool reads 1)")
        outcome = message.get("outcome")
        if not resend_maybe_delivered and isinstance(outcome, dict) and outcome.get("maybe_delivered") is True:
            raise MaybeDelivered
        message = message["call"]
    if not isinstance(message, dict):
        raise BadLine(f"a call must be a JSON object, not {type(message).__name__}")
    kind = message.get("type")
    if kind not in {t.value for t in CallType}:
        raise BadLine(f"unknown call type {kind!r}; expected identify, track, page, screen, group or alias")
    return message


def call_arguments(message: dict[str, Any]) -> tuple[CallType, dict[str, Any]]:
    """
    The client method and keyword arguments that make ``message``'s call.
    """
    kind = CallType(message["type"])
    options = {key: message[key] for key in _OPTION_FIELDS if key in message}
    args: dict[str, Any] = {"options": options or None}
    if kind is CallType.IDENTIFY:
        args |= {"user_id": message.get("userId"), "traits": message.get("traits")}
    elif kind is CallType.TRACK:
        if "event" not in message:
            raise BadLine("a track call needs an 'event'")
        args |= {"event": message["event"], "properties": message.get("properties")}
    elif kind in (CallType.PAGE, CallType.SCREEN):
        args |= {"name": message.get("name"), "properties": message.get("properties")}
    elif kind is CallType.GROUP:
        args |= {"group_id": message.get("groupId"), "traits": message.get("traits")}
    else:
        args |= {"user_id": message.get("userId"), "previous_id": message.get("previousId")}
    return kind, args


def submit(client: RehookClient, message: dict[str, Any], callback: Any) -> EventHandle:
    kind, args = call_arguments(message)
    method = getattr(client, kind.value)
    try:
        handle: EventHandle = method(callback=callback, **args)
    except TypeError as exc:
        raise BadLine(str(exc)) from None
    return handle
