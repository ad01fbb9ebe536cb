"""
Hostile input through the public API: every call either raises a clear error at the call or ends in a named
outcome, never the internal-error path; reprs never raise; and every failed call has its dead-letter line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rehook_sdk import EventHandle, OutcomeStatus, Reason, RehookClient
from rehook_sdk.testing import FakeRehook


class RaisingText(str):
    """A str whose __str__ and __repr__ raise: its text is still its text."""

    def __str__(self) -> str:
        raise RuntimeError("no __str__")

    def __repr__(self) -> str:
        raise RuntimeError("no __repr__")


class Opaque:
    """An object nothing can print."""

    def __str__(self) -> str:
        raise RuntimeError("no __str__")

    def __repr__(self) -> str:
        raise RuntimeError("no __repr__")


class BrokenMapping(Mapping[str, Any]):
    """A Mapping whose reads raise."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("cannot read")

    def __iter__(self) -> Iterator[str]:
        return iter(["a"])

    def __len__(self) -> int:
        return 1


class GrowingDict(dict[str, Any]):
    """A dict subclass that changes itself while it is copied."""

    def keys(self) -> Any:
        self[f"k{len(self)}"] = 1
        return super().keys()


SURROGATE = "\udc80"
HUGE = 10**5000

DROPS: list[tuple[str, Callable[[RehookClient], EventHandle], str]] = [
    ("surrogate in a property", lambda c: c.track("e", {"a": "x" + SURROGATE}, user_id="u"), "properties.a:"),
    ("surrogate in a key", lambda c: c.track("e", {SURROGATE: 1}, user_id="u"), "properties: key"),
    ("surrogate in the event", lambda c: c.track("e" + SURROGATE, user_id="u"), "event_name contains a lone"),
    ("surrogate in the user id", lambda c: c.track("e", user_id="u" + SURROGATE), "source_id (userId) contains"),
    ("surrogate in a trait", lambda c: c.identify("u", {"t": SURROGATE}), "traits.t:"),
    ("surrogate in the referral code", lambda c: c.identify("u", {"referral_code": SURROGATE}), "traits."),
    ("huge int property", lambda c: c.track("e", {"n": HUGE}, user_id="u"), "properties.n: an int of about 5000"),
    ("huge int trait", lambda c: c.identify("u", {"n": [-HUGE]}), "traits.n[0]: an int"),
    ("LF in messageId", lambda c: c.track("e", user_id="u", message_id="a\nb"), "messageId contains the control"),
    ("CR in messageId", lambda c: c.track("e", user_id="u", message_id="a\rb"), "messageId contains the control"),
    ("NUL in messageId", lambda c: c.track("e", user_id="u", message_id="a\x00b"), "messageId contains the control"),
    ("surrogate in messageId", lambda c: c.track("e", user_id="u", message_id="a" + SURROGATE), "messageId contains"),
    ("unprintable value", lambda c: c.track("e", {"o": Opaque()}, user_id="u"), "properties.o: a Opaque value"),
    ("unprintable key", lambda c: c.track("e", {Opaque(): 1}, user_id="u"), "cannot be shown"),  # type: ignore[dict-item]
    ("nested broken mapping", lambda c: c.track("e", {"m": BrokenMapping()}, user_id="u"), "properties.m: reading"),
]


@pytest.mark.parametrize(("name", "call", "message"), DROPS, ids=[d[0] for d in DROPS])
async def test_hostile_values_end_as_invalid_payload(
    client: RehookClient, fake: FakeRehook, name: str, call: Callable[[RehookClient], EventHandle], message: str
) -> None:
    """Each one ends dropped as invalid_payload naming where and what, nothing is sent, and repr works."""
    outcome = await call(client)
    assert (outcome.status, outcome.reason) == (OutcomeStatus.DROPPED, Reason.INVALID_PAYLOAD)
    assert message in outcome.message
    assert fake.requests == []
    assert repr(outcome)
    assert repr(outcome.call)


async def test_two_ids_differing_only_by_a_surrogate_never_share_a_key(client: RehookClient, fake: FakeRehook) -> None:
    """aiohttp drops a lone surrogate from a header: 'ab' and 'a\\udc80b' would both go out as 'ab'."""
    plain = await client.track("e", user_id="u", message_id="ab")
    odd = await client.track("e", user_id="u", message_id="a" + SURROGATE + "b")
    assert plain.delivered
    assert odd.reason is Reason.INVALID_PAYLOAD
    assert [r.idempotency_key for r in fake.requests] == ["ab"]


async def test_text_subclasses_are_sent_as_their_text(client: RehookClient, fake: FakeRehook) -> None:
    """A str subclass whose __str__/__repr__ raise: its own text is what is sent, as user id, key, value, event."""
    outcome = await client.track(
        RaisingText("signed_up"), {RaisingText("k"): RaisingText("v")}, user_id=RaisingText("u1")
    )
    assert outcome.delivered, outcome.message
    assert fake.requests[-1].json == {"event_name": "signed_up", "source_id": "u1", "metadata": {"k": "v"}}
    assert repr(outcome)


def test_an_unreadable_mapping_is_a_clear_error_at_the_call(fake: FakeRehook) -> None:
    """A Mapping that raises when read cannot be queued: TypeError at the call, naming the argument and why."""
    client = fake.client()
    with pytest.raises(TypeError, match=r"track\(\): properties could not be read as a mapping: RuntimeError"):
        _ = client.track("e", BrokenMapping(), user_id="u")
    assert client.stats().accepted == 0


async def test_a_dict_that_changes_while_copied_is_sent_as_copied(client: RehookClient, fake: FakeRehook) -> None:
    """A dict subclass that mutates itself during the copy: what the copy saw is sent, nothing raises."""
    outcome = await client.track("e", GrowingDict(a=1), user_id="u")
    assert outcome.delivered
    assert fake.events[-1]["metadata"]["a"] == 1


def test_an_int_id_too_long_for_str_is_a_clear_error(fake: FakeRehook) -> None:
    """An int user id past Python's digit limit cannot become a str id: ValueError at the call, naming it."""
    client = fake.client()
    with pytest.raises(ValueError, match=r"userId is an int too long"):
        _ = client.track("e", user_id=HUGE)


async def test_an_internal_error_fails_the_call_with_its_dead_letter_line(
    fake: FakeRehook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug inside the SDK (simulated here) ends the call failed as internal_error, logged, in the dead letter."""
    from rehook_sdk._mapping import router as _router

    def broken(self: object, call: object, message_id: str) -> object:
        raise KeyError("a bug")

    monkeypatch.setattr(_router.Router, "route", broken)
    path = tmp_path / "dead.jsonl"
    async with fake.client(dead_letter=path) as client:
        outcome = await client.track("e", {"n": HUGE, "s": SURROGATE}, user_id="u1")
    assert (outcome.status, outcome.reason) == (OutcomeStatus.FAILED, Reason.INTERNAL_ERROR)
    assert "KeyError('a bug')" in outcome.message
    assert "internal error while sending a call" in caplog.text
    [line] = path.read_bytes().splitlines()
    record = json.loads(line.decode("utf-8"))  # valid UTF-8 JSON, even with a surrogate and a huge int inside
    assert record["outcome"]["reason"] == "internal_error"
    assert record["call"]["properties"]["s"] == SURROGATE  # written as its JSON escape, read back as given
    assert record["call"]["properties"]["n"].startswith("<int of about 5000 digits")
    assert "record.call.properties.n" in record["unencodable"]


# -- hypothesis over the public API -----------------------------------------------------------------------

# Hypothesis prints what it draws, and cannot print objects whose __repr__ raises: it draws plain markers
# ("raising text", "opaque", "broken mapping", "huge int") that `build` turns into the hostile objects in the test.
texts = st.text(st.characters(exclude_categories=()), max_size=8)  # surrogates and control characters included
marked_texts = st.tuples(st.just("text"), texts)
leaves = st.one_of(
    texts,
    marked_texts,
    st.integers(),
    st.tuples(st.just("huge"), st.sampled_from([4299, 4301, 5000])),
    st.floats(),
    st.just(("opaque",)),
    st.just(("broken",)),
    st.none(),
    st.booleans(),
)
trees = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts | marked_texts, children, max_size=3),
    max_leaves=12,
)


def build(value: Any) -> Any:
    """
    The hostile object a drawn marker stands for.
    """
    if isinstance(value, tuple):
        kind = value[0]
        if kind == "text":
            return RaisingText(value[1])
        if kind == "huge":
            return -(10 ** value[1])
        return Opaque() if kind == "opaque" else BrokenMapping()
    if isinstance(value, list):
        return [build(v) for v in value]
    if isinstance(value, dict):
        return {build(k): build(v) for k, v in value.items()}
    return value


@settings(max_examples=200)
@given(
    method=st.sampled_from(["track", "identify", "page"]),
    user_id=texts | marked_texts | st.integers(-(10**6), 10**6),
    event=texts | marked_texts,
    props=st.none() | st.dictionaries(texts | marked_texts, trees, max_size=4),
    growing=st.booleans(),
    message_id=st.none() | texts,
)
async def test_any_call_ends_in_a_named_outcome(
    client: RehookClient, method: str, user_id: Any, event: Any, props: Any, growing: bool, message_id: Any
) -> None:
    """Whatever the values: a named outcome (never internal_error), a repr that works, and the sender lives on."""
    user_id, event, props = build(user_id), build(event), build(props)
    if growing and props is not None:
        props = GrowingDict(props)
    if method == "track":
        handle = client.track(event, props, user_id=user_id, message_id=message_id)
    elif method == "identify":
        handle = client.identify(user_id, props, message_id=message_id)
    else:
        handle = client.page(event, props, user_id=user_id, message_id=message_id)
    outcome = await handle
    assert outcome.reason is not Reason.INTERNAL_ERROR, outcome.message
    assert outcome.status is not OutcomeStatus.FAILED, outcome.message
    assert repr(outcome)
    assert repr(handle)
