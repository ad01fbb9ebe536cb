"""
Engage audience keys against lodash.snakecase 4.1.1 (tests/conformance/audiences.mjs; `npm ci && npm run generate`
there regenerates the vectors, CI needs no node): 549 names, hand-written (deburring, apostrophes, acronyms, emoji,
names with no letters) and seeded random.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rehook_sdk import Mapping, OutcomeStatus
from rehook_sdk._mapping.audience import snake_case
from rehook_sdk.testing import FakeRehook

HERE = Path(__file__).resolve().parent / "conformance"
VECTORS = json.loads((HERE / "vectors" / "audiences.json").read_text(encoding="utf-8"))


def test_vectors_come_from_the_pinned_package() -> None:
    pinned = json.loads((HERE / "package.json").read_text())["dependencies"]
    assert VECTORS["packages"] == {"lodash.snakecase": pinned["lodash.snakecase"]}
    assert len(VECTORS["audiences"]) >= 500


def test_every_key_is_lodashs() -> None:
    wrong = [
        (v["name"], v["key"], snake_case(v["name"])) for v in VECTORS["audiences"] if snake_case(v["name"]) != v["key"]
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("café lovers", "cafe_lovers"),
        ("Straße", "strasse"),
        ("Don't Churn", "dont_churn"),
        ("VIPUsers", "vip_users"),
        ("🎉 Party", "🎉_party"),
    ],
)
async def test_audience_sends_the_key_and_the_engage_context(fake_rehook: FakeRehook, name: str, key: str) -> None:
    """audience() identifies the user with the key as a boolean trait and the context.personas Engage sends, so a
    trigger on context.personas.computation_class matches it as it would in Segment."""
    metadata = {"key": {"@path": "$.context.personas.computation_key"}, "member": {"@path": f"$.traits.{key}"}}
    mapping = Mapping(
        trigger='type = "identify" and context.personas.computation_class = "audience"',
        action="identify_user",
        fields={"metadata": metadata},
    )
    async with fake_rehook.client(mappings=[mapping]) as client:
        entered = await client.audience("u1", name)
        left = await client.audience("u1", name, member=False)
        plain = await client.identify("u1", {key: True})

    assert (entered.status, left.status) == (OutcomeStatus.DELIVERED, OutcomeStatus.DELIVERED)
    assert plain.status is OutcomeStatus.DROPPED  # no personas context: not an audience call
    assert [r.json["metadata"] for r in fake_rehook.requests] == [
        {"key": key, "member": True},
        {"key": key, "member": False},
    ]


@pytest.mark.parametrize("name", ["!!!", "   ", "", "\u00d7\u00f7"])
async def test_a_name_whose_key_would_be_empty_is_refused(fake_rehook: FakeRehook, name: str) -> None:
    """lodash gives "" for these; Engage keys are never empty, so the call raises instead of sending a "" trait."""
    async with fake_rehook.client() as client:
        with pytest.raises(ValueError, match="its key would be empty"):
            _ = client.audience("u1", name)
