"""
Fuzzed input: properties of any shape either raise TypeError at the call (wrong top-level type) or end in an
outcome; what is sent is strict JSON equal to the documented conversion, numbers staying numbers; what cannot be
sent ends as invalid_payload naming the key path. The oracle below restates the rules of docs/concepts.md independently.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import enum
import json
import math
import sys
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rehook_sdk import Reason, RehookClient
from rehook_sdk.testing import FakeRehook


class Color(enum.Enum):
    RED = "red"
    DEEP = 3


class Invalid(Exception):
    def __init__(self, path: str) -> None:
        self.path = path


def expected(value: Any, path: str = "properties", depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """
    The "What gets sent" table of docs/concepts.md, as an oracle.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in value):  # a lone surrogate: not Unicode UTF-8 can carry
            raise Invalid(path)
        return value
    if isinstance(value, enum.Enum):
        return expected(value.value, path, depth + 1, seen)
    if isinstance(value, int):
        if abs(value) >= 10**4300:  # past Python's default limit for writing an int in decimal
            raise Invalid(path)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Invalid(path)
        return value
    if isinstance(value, dict | list | tuple | set | frozenset):
        if depth >= 64 or id(value) in seen:
            raise Invalid(path)
        inner = seen | {id(value)}
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if isinstance(key, str):
                    name = key
                    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
                        raise Invalid(path)
                elif isinstance(key, int) and not isinstance(key, bool):
                    name = str(key)
                else:
                    raise Invalid(path)
                if name in out:
                    raise Invalid(path)
                out[name] = expected(item, f"{path}.{name}", depth + 1, inner)
            return out
        items = list(value)
        if isinstance(value, set | frozenset):
            with contextlib.suppress(TypeError):  # unsortable sets keep their iteration order
                items = sorted(value)
        return [expected(item, f"{path}[{i}]", depth + 1, inner) for i, item in enumerate(items)]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        if not value.is_finite() or abs(value) > decimal.Decimal(sys.float_info.max):  # Infinity to JSON readers
            raise Invalid(path)
        return expected(int(value), path) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid(path) from None
    raise Invalid(path)


def same(a: Any, b: Any) -> bool:
    """
    Equal, and numbers of the same kind (an int stays an int, a float a float, a bool a bool).
    """
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def deep(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels):
        node["x"] = {}
        node = node["x"]
    return root


def self_containing(n: int) -> dict[str, Any]:
    value: dict[str, Any] = {"n": n, "inner": []}
    value["inner"].append(value)
    return value


# Values the rules convert (and so must arrive, converted); long strings included.
convertible = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.text(min_size=2000, max_size=3000),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    st.dates(),
    st.times(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    st.text(max_size=8).map(str.encode),  # valid UTF-8 bytes
    st.sampled_from(list(Color)),
    st.sets(st.integers(0, 9), max_size=4),
    st.frozensets(st.text(max_size=3), max_size=3),
)
valid_trees = st.recursive(
    convertible,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers(10, 99), children, max_size=4)
        | st.tuples(children, children)
    ),
    max_leaves=25,
)
# Values that cannot be sent: each must end the call as invalid_payload naming where it is.
poisons = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.sampled_from([decimal.Decimal("NaN"), decimal.Decimal("sNaN"), decimal.Decimal("-Infinity")]),
    st.builds(object),
    st.sampled_from([b"\xff", b"caf\xc3", b"\xc3\x28"]),  # invalid UTF-8
    st.sampled_from([{(1,): 1}, {None: 1}, {True: 1}, {1.5: 1}, {1: "a", "1": "b"}]),  # bad or colliding keys
    st.integers(0, 3).map(self_containing),
    st.integers(65, 80).map(deep),
    st.builds(lambda a, b: a + b, st.text(max_size=3), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    st.sampled_from([10**4300, -(10**5000), decimal.Decimal(10) ** 4400]),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF).map(lambda c: {c: 1}),
)


def wrap(value: Any, layers: list[str]) -> Any:
    for layer in layers:
        value = {"k": value} if layer == "dict" else [value]
    return value


poisoned = st.builds(
    lambda valid, poison, layers: {**valid, "poisoned": wrap(poison, layers)},
    st.dictionaries(st.text(max_size=6), valid_trees, max_size=3),
    poisons,
    st.lists(st.sampled_from(["dict", "list"]), max_size=3),
)
properties = st.one_of(st.dictionaries(st.text(max_size=8), valid_trees, max_size=5), poisoned)
not_mappings = st.one_of(
    st.lists(st.integers(), max_size=2), st.integers(), st.text(max_size=3), st.tuples(st.integers())
)


@settings(max_examples=300)
@given(props=properties)
async def test_any_properties_end_in_an_honest_outcome(client: RehookClient, fake: FakeRehook, props: Any) -> None:
    """Sent exactly as the rules say, or dropped as invalid_payload naming the first bad key path."""
    fake.requests.clear()
    try:
        want = expected(props)
    except Invalid as exc:
        want, bad_path = None, exc.path
    outcome = await client.track("fuzz", props, user_id="u1")

    if want is None:
        assert outcome.reason is Reason.INVALID_PAYLOAD
        assert outcome.message.startswith(bad_path + ":"), (outcome.message, bad_path)
        assert fake.requests == []
    else:
        assert outcome.delivered, outcome.message
        [request] = fake.requests
        assert same(want, request.json["metadata"])


@settings(max_examples=50)
@given(value=not_mappings)
async def test_wrong_top_level_types_raise_type_error(client: RehookClient, value: Any) -> None:
    """A properties/traits value that is not a mapping is a TypeError at the call, and nothing is queued."""
    with pytest.raises(TypeError, match="must be a mapping"):
        _ = client.track("e", value, user_id="u1")
    with pytest.raises(TypeError, match="must be a mapping"):
        _ = client.identify("u1", value)
    assert client.stats().accepted == 0


async def test_what_is_sent_is_strict_json(fake: FakeRehook, client: RehookClient) -> None:
    """The body parses as strict JSON (no NaN/Infinity tokens) and keeps ints, floats and bools apart."""
    await client.track("e", {"i": 1, "f": 1.0, "b": True, "d": decimal.Decimal("2.50"), "big": 2**64}, user_id="u1")
    raw = json.dumps(fake.requests[0].json)

    def refuse(token: str) -> None:
        raise ValueError(token)

    metadata = json.loads(raw, parse_constant=refuse)["metadata"]
    assert same(metadata, {"i": 1, "f": 1.0, "b": True, "d": 2.5, "big": 2**64})


async def test_the_sender_survives_everything(client: RehookClient) -> None:
    """After hostile input, ordinary calls still go through."""
    for props in ({"x": math.nan}, {"o": object()}, self_containing(1), deep(200)):
        await client.track("e", props, user_id="u1")
    assert (await client.track("e", {"ok": True}, user_id="u1")).delivered
