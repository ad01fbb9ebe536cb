"""
Logging (#13): DEBUG lines for each request, answer and retry, and structured fields (extra=) on the records, so
log processors can filter and group without parsing messages.
"""

from __future__ import annotations

import logging

import pytest

from rehook_sdk.testing import FakeRehook


async def test_debug_shows_each_request_answer_and_retry(fake: FakeRehook, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="rehook_sdk")
    fake.fail_next(1, status=503)
    async with fake.client() as client:
        outcome = await client.track("e", user_id="u1", message_id="m-1")

    assert outcome.delivered
    lines = [r for r in caplog.records if getattr(r, "rehook_message_id", None) == "m-1" and r.levelno == logging.DEBUG]
    assert [r.getMessage() for r in lines][:5] == [
        "POST /events/invoke, message id m-1, attempt 1",
        "answer to message id m-1, attempt 1: HTTP 503",
        lines[2].getMessage(),  # the wait is random (jittered)
        "POST /events/invoke, message id m-1, attempt 2",
        "answer to message id m-1, attempt 2: HTTP 200",
    ]
    assert lines[2].getMessage().startswith("retrying message id m-1 in ")
    assert lines[2].getMessage().endswith(" s (attempt 2 of 8 next)")
    assert [getattr(r, "rehook_http_status", None) for r in lines[:5]] == [None, 503, 503, None, 200]
    assert [getattr(r, "rehook_attempt", None) for r in lines[:5]] == [1, 1, 1, 2, 2]


async def test_drop_and_failure_records_carry_structured_fields(
    fake: FakeRehook, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next(1, status=400)
    async with fake.client() as client:
        dropped = await client.track("e", message_id="m-2")  # no user id
        failed = await client.track("e", user_id="u1", message_id="m-3")

    records = {getattr(r, "rehook_reason", None): r.__dict__ for r in caplog.records if r.levelno == logging.WARNING}
    drop, failure = records["missing_user_id"], records["rejected"]
    assert (drop["rehook_status"], drop["rehook_count"]) == ("dropped", 1)
    assert drop["rehook_message_id"] is None  # nothing was sent (Outcome.message_id says the same)
    assert (failure["rehook_status"], failure["rehook_http_status"]) == ("failed", 400)
    assert failure["rehook_message_id"] == failed.message_id == "m-3"
    assert dropped.message_id is None


async def test_nothing_below_warning_costs_a_record(fake: FakeRehook, caplog: pytest.LogCaptureFixture) -> None:
    """At the default level no DEBUG record is made at all (the lines are guarded, not filtered)."""
    caplog.set_level(logging.WARNING, logger="rehook_sdk")
    async with fake.client() as client:
        await client.track("e", user_id="u1")
    assert [r for r in caplog.records if r.name == "rehook_sdk"] == []
