"""
The kill switch (#13): enabled=False or REHOOK_DISABLED keeps every call from leaving the process, for test and
staging environments. Calls still end in an outcome, counted, quietly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rehook_sdk import (
    ClientStateError,
    ConfigurationError,
    Outcome,
    OutcomeStatus,
    Reason,
    RehookClient,
    SyncRehookClient,
)
from rehook_sdk.testing import FakeRehook


async def test_a_disabled_client_sends_nothing_and_says_so_in_each_outcome(
    fake: FakeRehook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[Outcome] = []
    caplog.set_level(logging.DEBUG, logger="rehook_sdk")
    async with fake.client(enabled=False, on_error=errors.append, dead_letter=tmp_path / "dead.jsonl") as client:
        fast = await client.track("e", {"a": 1}, user_id="u1")  # the fast path
        slow = await client.identify("u1", {"plan": "pro"}, {"context": {"ip": "1.2.3.4"}})
        seen: list[Outcome] = []
        await client.page("Home", user_id="u1", callback=seen.append)
        with pytest.raises(ClientStateError, match="disabled"):
            await client.check_auth()
        stats = client.stats()

    for outcome in (fast, slow, seen[0]):
        assert (outcome.status, outcome.reason) == (OutcomeStatus.DROPPED, Reason.DISABLED)
        assert "nothing is sent" in outcome.message
    assert fast.call.properties == {"a": 1}
    assert stats.dropped == {Reason.DISABLED: 3}
    assert stats.accepted == 3
    assert fake.requests == []
    assert errors == []  # on_error is for trouble; a disabled client is not in trouble
    assert not (tmp_path / "dead.jsonl").exists() or (tmp_path / "dead.jsonl").read_text() == ""
    per_call = [r for r in caplog.records if "disabled" in r.getMessage() and r.levelno >= logging.WARNING]
    assert per_call == []  # no line per call, at any level above INFO
    assert sum("is disabled" in r.getMessage() for r in caplog.records) == 1  # one INFO line when made


def test_the_environment_disables_and_enabled_true_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REHOOK_API_KEY", "REHOOK_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REHOOK_DISABLED", "1")
    with SyncRehookClient() as client:  # no credentials needed: nothing will be sent
        assert client.track("e", user_id="u1").result(5).reason is Reason.DISABLED
    with pytest.raises(ConfigurationError, match="credentials are missing"):
        RehookClient(enabled=True)
    for value in ("true", "YES", "on"):
        monkeypatch.setenv("REHOOK_DISABLED", value)
        assert "enabled=False" in repr(RehookClient())
    for value in ("0", "false", "off", ""):
        monkeypatch.setenv("REHOOK_DISABLED", value)
        assert "enabled=False" not in repr(RehookClient("k", "s"))


@pytest.mark.parametrize(("setting", "env"), [("maybe", None), (None, "perhaps")])
def test_unclear_values_are_refused(monkeypatch: pytest.MonkeyPatch, setting: object, env: str | None) -> None:
    if env is not None:
        monkeypatch.setenv("REHOOK_DISABLED", env)
    with pytest.raises(ConfigurationError, match=r"enabled must be|REHOOK_DISABLED must be"):
        RehookClient("k", "s", enabled=setting)  # type: ignore[arg-type]
