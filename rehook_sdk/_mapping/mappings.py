"""
User-defined mappings, as Segment's Rehook destination has them: a trigger plus one of Rehook's two actions, with
a field mapping; compiled once when the client is made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingABC
from typing import Any

import attrs

from .._core.exceptions import MappingError
from .._core.types import Action
from .actions import ACTION_FIELDS, DEFAULT_FIELDS, REQUIRED_FIELDS
from .directives import DirectiveError, Resolver, compile_value, object_resolver, producible
from .directives import reads as spec_reads
from .fql import Predicate, TriggerError, read_trigger

__all__ = ["DEFAULT_MAPPINGS", "MAX_MAPPINGS", "CompiledMapping", "Mapping", "compile_mappings"]

logger = logging.getLogger("rehook_sdk")

MAX_MAPPINGS = 50
"""Segment's limit of mappings per Rehook destination instance."""

Event = MappingABC[str, Any]
Trigger = str | Callable[[Event], bool]
Fields = MappingABC[str, Any] | Callable[[Event], MappingABC[str, Any]]


def _to_action(value: Action | str) -> Action:
    try:
        return Action(value)
    except ValueError:
        return value  # type: ignore[return-value]  # reported with the mapping's index by compile_mappings()


@attrs.frozen(kw_only=True)
class Mapping:
    """
    When to send which Rehook action, and with what fields.

    Attributes:
        trigger: Segment's subscription language (``'type = "track" and event = "Order Completed"'``), or a
            callable that takes the Segment event dict and returns a bool.
        action: ``"identify_user"`` or ``"track_event"`` (`Action`).
        fields: Field values (literal JSON or mapping-kit directives such as ``{"@path": "$.userId"}``) that
            override the action's defaults, or a callable that takes the Segment event dict and returns such
            overrides as plain values. ``None`` keeps every default.
        name: Shown in outcomes and errors; defaults to ``mappings[<index>]``.
    """

    trigger: Trigger
    action: Action = attrs.field(converter=_to_action)
    fields: Fields | None = None
    name: str | None = None


DEFAULT_MAPPINGS: tuple[Mapping, ...] = (
    Mapping(name="Identify User", trigger='type = "identify"', action=Action.IDENTIFY_USER),
    Mapping(name="Track Event", trigger='type = "track"', action=Action.TRACK_EVENT),
)
"""What a client sends without ``mappings=``: the Segment destination's two default subscriptions. It has no
presets, so page(), screen(), group() and alias() calls send nothing unless a mapping says so."""


@attrs.frozen
class CompiledMapping:
    """
    A validated mapping, ready to match and resolve events without parsing anything.
    """

    index: int
    name: str
    source: Mapping
    action: Action
    matches: Predicate
    resolve: Callable[[dict[str, Any]], dict[str, Any]]
    trusted: bool  # fields come only from directives over the JSON-safe event
    reads: frozenset[str] | None  # top-level event keys it reads; None: any


def compile_mappings(mappings: Iterable[Mapping]) -> tuple[CompiledMapping, ...]:
    """
    Validate and compile ``mappings``.

    Raises:
        MappingError: naming the mapping, what is wrong and where; or more than `MAX_MAPPINGS`.
    """
    if isinstance(mappings, Mapping):
        raise MappingError("mappings must be a list of Mapping, not one Mapping")
    items = list(mappings)
    if len(items) > MAX_MAPPINGS:
        raise MappingError(
            f"at most {MAX_MAPPINGS} mappings are allowed (Segment's limit per destination), got {len(items)}"
        )
    return tuple(_compile(index, mapping) for index, mapping in enumerate(items))


def _compile(index: int, mapping: object) -> CompiledMapping:
    if not isinstance(mapping, Mapping):
        raise MappingError(f"mappings[{index}] is a {type(mapping).__qualname__}, not a Mapping", index=index)
    label = f"mappings[{index}]" + (f" ({mapping.name!r})" if mapping.name else "")
    name = mapping.name or f"mappings[{index}]"

    def error(part: str, message: str, text: str | None = None, position: int | None = None) -> MappingError:
        where = f"{label}: {part}: {message}"
        if text is not None and position is not None:
            where += f"\n    {text}\n    {' ' * position}^"
        elif text is not None:
            where += f": {text}"
        return MappingError(where, index=index, name=mapping.name, part=part, text=text, position=position)

    action: object = mapping.action  # the converter lets an unknown string through, to be reported here
    if not isinstance(action, Action):
        choices = ", ".join(a.value for a in Action)
        raise error("action", f"unknown action {action!r}; use one of {choices}")
    reads: set[str] | None = set()
    trigger = mapping.trigger
    if isinstance(trigger, str):
        try:
            compiled = read_trigger(trigger)
        except TriggerError as exc:
            raise error("trigger", f"{exc.message} (at position {exc.position})", trigger, exc.position) from None
        for note in compiled.notes:
            logger.warning("%s: %s: %s", label, note, trigger)
        matches = compiled.matches
        reads = set(compiled.reads)
    elif callable(trigger):
        matches = _guarded_trigger(trigger)
        reads = None
    else:
        raise error("trigger", f"must be a str or a callable, not {type(trigger).__qualname__}")

    specs = dict(DEFAULT_FIELDS[action])
    fields = mapping.fields
    override: Callable[[Event], MappingABC[str, Any]] | None = None
    if fields is None:
        pass
    elif isinstance(fields, MappingABC):
        for key, spec in fields.items():
            if key not in ACTION_FIELDS[action]:
                known = ", ".join(ACTION_FIELDS[action])
                raise error(f"fields.{key}", f"{action.value} has no field {key!r}; its fields are {known}")
            specs[key] = spec
    elif callable(fields):
        override = fields
        reads = None
    else:
        raise error("fields", f"must be a mapping, a callable or None, not {type(fields).__qualname__}")

    for required in REQUIRED_FIELDS[action]:
        if not producible(specs[required]):
            raise error(
                f"fields.{required}",
                f"{action.value} needs {required}, and this value can never give one",
                repr(specs[required]),
            )
    resolvers: list[tuple[str, Resolver]] = []
    for key, spec in specs.items():
        try:
            resolvers.append((key, compile_value(spec, f"fields.{key}")))
        except DirectiveError as exc:
            raise error(exc.where, exc.message, repr(spec)) from None
        if reads is not None:
            reads = spec_reads(spec, reads)
    return CompiledMapping(
        index=index,
        name=name,
        source=mapping,
        action=action,
        matches=matches,
        resolve=_field_resolver(resolvers, override),
        trusted=override is None,
        reads=frozenset(reads) if reads is not None else None,
    )


def _field_resolver(
    resolvers: list[tuple[str, Resolver]], override: Callable[[Event], MappingABC[str, Any]] | None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    fields = object_resolver(resolvers)
    if override is None:
        return fields

    def resolve(event: dict[str, Any]) -> dict[str, Any]:
        out = fields(event)
        extra = override(event)
        if not isinstance(extra, MappingABC):
            raise TypeError(f"the fields callable returned a {type(extra).__qualname__}, not a mapping")
        out.update(extra)
        return out

    return resolve


def _guarded_trigger(trigger: Callable[[Event], bool]) -> Predicate:
    def matches(event: dict[str, Any]) -> bool:
        return bool(trigger(event))

    return matches
