"""
mapping-kit conformance: seeded random directive trees and events, with the outputs and errors of
@segment/actions-core 3.170.0's transform() and its mapping validation (tests/conformance/mappings.mjs;
`npm ci && npm run generate` there regenerates them, CI needs no node).

A mapping mapping-kit's validation refuses, the SDK refuses when compiling it; any other mapping compiles, and for
every event it resolves to mapping-kit's output, or fails (DirectiveRuntimeError) where mapping-kit throws.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rehook_sdk._mapping.directives import DirectiveError, DirectiveRuntimeError, compile_value

HERE = Path(__file__).resolve().parent / "conformance"
VECTORS = json.loads((HERE / "vectors" / "mappings.json").read_text(encoding="utf-8"))


def test_vectors_come_from_the_pinned_packages() -> None:
    pinned = json.loads((HERE / "package.json").read_text())["dependencies"]
    assert VECTORS["packages"] == {name: pinned[name] for name in VECTORS["packages"]}
    assert len(VECTORS["mappings"]) >= 400
    assert len(VECTORS["events"]) >= 30


def test_what_mapping_kit_refuses_the_sdk_refuses() -> None:
    wrong = []
    for vector in VECTORS["mappings"]:
        try:
            compile_value(vector["mapping"], "fields")
        except DirectiveError as exc:
            if vector["refused"] is None:
                wrong.append((vector["mapping"], f"the SDK refuses it: {exc}"))
            continue
        if vector["refused"] is not None:
            wrong.append((vector["mapping"], f"the SDK accepts it; mapping-kit: {vector['refused']}"))
    assert wrong == []
    assert sum(v["refused"] is not None for v in VECTORS["mappings"]) >= 20  # the refusals are exercised


def test_every_output_is_mapping_kits() -> None:
    events: list[dict[str, Any]] = VECTORS["events"]
    wrong = []
    compared = 0
    for vector in VECTORS["mappings"]:
        if vector["refused"] is not None:
            continue
        resolve = compile_value(vector["mapping"], "fields")
        for event, expected in zip(events, vector["outputs"], strict=True):
            try:
                actual: Any = {"output": resolve(json.loads(json.dumps(event)))}
            except DirectiveRuntimeError:
                actual = "error"
            want = "error" if "error" in expected else expected
            if actual != want:
                wrong.append({"mapping": vector["mapping"], "event": event, "segment": expected, "sdk": actual})
            compared += 1
    assert wrong[:5] == []
    assert compared >= 10_000
