"""
``rehook send`` as operators use it for backfills and replays (issue #12): normal runs lose nothing, input mistakes
are one-line errors, Ctrl-C says where to resume, replays do not duplicate silently, rule drops can be written out.
Every test drives the command as a subprocess against the fake Rehook.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from rehook_sdk import RetryPolicy, __version__
from rehook_sdk._cli import parser
from rehook_sdk.testing import FakeRehook

from .helpers import wait_until
from .test_cli import MIXED, failed_files, rehook, write_lines


def table(out: str) -> dict[tuple[str, str], int]:
    rows = [[cell.strip() for cell in line.split("|")] for line in out.splitlines() if line.count("|") == 2]
    return {(r[0], r[1]): int(r[2]) for r in rows if r[2].isdigit()}


def tracks(n: int, prefix: str = "u") -> list[object]:
    return [{"type": "track", "event": "e", "userId": f"{prefix}{i}", "messageId": f"m-{i}"} for i in range(n)]


async def test_a_run_that_is_not_interrupted_delivers_everything_however_slow(fake: FakeRehook, tmp_path: Path) -> None:
    """--drain-timeout applies only after Ctrl-C: with Rehook slow and the queue deep, every call is delivered."""
    n = 300
    calls = write_lines(tmp_path / "calls.jsonl", tracks(n))
    fake.delay_next(n, seconds=0.02)  # 300 calls x 20 ms over 4 connections: about 1.5 s, far past the drain timeout

    code, out, err = await rehook(
        fake, "send", str(calls), "--concurrency", "4", "--drain-timeout", "0.05", "--no-progress", cwd=tmp_path
    )

    assert code == 0, err
    assert table(out)[("delivered", "-")] == n
    assert len(fake.delivered_keys) == n
    assert not failed_files(tmp_path)


async def test_a_line_that_is_not_utf8_is_a_bad_line_and_the_run_goes_on(fake: FakeRehook, tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    good = json.dumps({"type": "track", "event": "e", "userId": "u1"}).encode()
    calls.write_bytes(good + b"\n\xff\xfe\n" + good.replace(b"u1", b"u2") + b"\n")

    code, out, err = await rehook(fake, "send", str(calls), "--no-progress", cwd=tmp_path)

    assert code == 1  # a bad line
    assert f"{calls}:2: not UTF-8 (byte 0xff at column 1)" in err
    assert "Traceback" not in err
    assert table(out)[("delivered", "-")] == 2
    assert table(out)[("bad line", "-")] == 1


async def test_a_missing_file_stops_the_run_before_anything_is_sent(fake: FakeRehook, tmp_path: Path) -> None:
    calls = write_lines(tmp_path / "calls.jsonl", tracks(3))

    code, _, err = await rehook(fake, "send", str(calls), str(tmp_path / "nope.jsonl"), cwd=tmp_path)

    assert code == 2
    assert err.strip() == f"rehook send: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory"
    assert fake.requests == []
    assert not failed_files(tmp_path)  # no empty failed file left behind


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-attempts", "0", "must be 1 or more, got 0"),
        ("--max-queue", "-5", "must be 1 or more, got -5"),
        ("--max-queue", "0", "must be 1 or more, got 0"),
        ("--concurrency", "0", "must be 1 or more, got 0"),
        ("--drain-timeout", "-1", "must be 0 or more seconds, got -1"),
        ("--drain-timeout", "nan", "must be 0 or more seconds, got nan"),
        ("--skip", "-1", "must be 0 or more, got -1"),
        ("--max-queue", "many", "not a whole number: 'many'"),
    ],
)
async def test_bad_option_values_are_usage_errors(
    fake: FakeRehook, tmp_path: Path, option: str, value: str, message: str
) -> None:
    calls = write_lines(tmp_path / "calls.jsonl", tracks(1))

    code, _, err = await rehook(fake, "send", str(calls), option, value, cwd=tmp_path)

    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert fake.requests == []
    assert not failed_files(tmp_path)


async def test_a_closed_pipe_ends_a_dry_run_quietly(tmp_path: Path) -> None:
    """rehook send --dry-run big.jsonl | head -1: no BrokenPipeError traceback, the SIGPIPE exit status (141)."""
    calls = write_lines(tmp_path / "calls.jsonl", tracks(20_000))
    script = f"{sys.executable} -m rehook_sdk send --dry-run {calls} | head -1; echo status=${{PIPESTATUS[0]}} >&2"
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)

    assert out.decode().startswith(f"{calls}:1: POST /events/invoke")
    assert len(out.decode().splitlines()) == 1
    assert "Traceback" not in err.decode()
    assert err.decode().strip().endswith("status=141")


async def test_ctrl_c_says_where_reading_stopped_and_the_resumed_run_sends_the_rest(
    fake: FakeRehook, tmp_path: Path
) -> None:
    n = 1000
    calls = write_lines(tmp_path / "calls.jsonl", tracks(n))
    failed = tmp_path / "left.jsonl"
    fake.delay_next(n, seconds=0.02)

    code, _, err = await rehook(
        fake, "send", str(calls), "--failed-to", str(failed), "--concurrency", "4", "--max-queue", "50",
        "--drain-timeout", "30", "--no-progress", signal_after=10,
    )  # fmt: skip

    assert code == 130, err
    stopped = next(line for line in err.splitlines() if "interrupted: stopped reading after" in line)
    skip = int(stopped.rsplit("--skip ", 1)[1])
    assert f"after {calls}:{skip} ({skip} lines read, {skip} calls accepted)" in stopped
    assert 10 <= skip < n
    await wait_until(lambda: fake.pending == 0)
    assert len(fake.delivered_keys) == skip  # the drain had time for all it read
    fake.clear_faults()

    code, out, err = await rehook(fake, "send", str(calls), "--skip", str(skip), "--no-progress", cwd=tmp_path)

    assert code == 0, err
    assert table(out)[("delivered", "-")] == n - skip
    assert len(fake.delivered_keys) == n
    assert fake.duplicates == 0


async def test_a_third_ctrl_c_stops_the_drain_and_writes_what_is_left(fake: FakeRehook, tmp_path: Path) -> None:
    n = 200
    calls = write_lines(tmp_path / "calls.jsonl", tracks(n))
    failed = tmp_path / "left.jsonl"
    fake.hang_next(10_000)  # Rehook never answers
    env = {**os.environ, "REHOOK_API_KEY": fake.api_key, "REHOOK_API_SECRET": fake.api_secret}
    env["REHOOK_BASE_URL"] = fake.url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rehook_sdk", "send", str(calls), "--failed-to", str(failed), "--max-queue", "50",
        "--concurrency", "4", "--drain-timeout", "600", "--no-progress",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    await wait_until(lambda: len(fake.requests) >= 4, timeout=30)
    proc.send_signal(signal.SIGINT)
    lines: list[str] = []
    while not any("delivering the calls already read" in line for line in lines):
        lines.append((await asyncio.wait_for(proc.stderr.readline(), 30)).decode())
    proc.send_signal(signal.SIGINT)
    lines.append((await asyncio.wait_for(proc.stderr.readline(), 30)).decode())
    assert "press Ctrl-C once more to stop now" in lines[-1]
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)  # well before the 600 s drain timeout

    assert proc.returncode == 130
    written = failed.read_text().splitlines()
    accepted = sum(table(out.decode()).values()) - table(out.decode())[("total", "")]
    assert accepted == len(written) == 50  # every call read is in the failed file
    assert all(json.loads(line)["outcome"]["reason"] == "shutdown_timeout" for line in written)


async def test_replays_skip_calls_that_may_have_been_delivered(fake: FakeRehook, tmp_path: Path) -> None:
    """A failed file's maybe_delivered lines are skipped and counted; --resend-maybe-delivered sends them."""

    def line(i: int, maybe: bool) -> dict[str, object]:
        call = {"type": "track", "event": "e", "userId": f"u{i}", "messageId": f"m-{i}"}
        outcome = {"status": "failed", "reason": "retries_exhausted", "maybe_delivered": maybe}
        return {"v": 1, "call": call, "outcome": outcome}

    failed = write_lines(tmp_path / "failed.jsonl", [line(0, False), line(1, True), line(2, False)])

    code, out, _ = await rehook(fake, "send", str(failed), "--no-progress", cwd=tmp_path)

    assert code == 0
    assert table(out)[("skipped", "maybe_delivered")] == 1
    assert "--resend-maybe-delivered sends them" in out
    assert sorted(fake.delivered_keys) == ["m-0", "m-2"]

    code, out, _ = await rehook(fake, "send", str(failed), "--resend-maybe-delivered", "--no-progress", cwd=tmp_path)

    assert code == 0
    assert table(out)[("delivered", "-")] == 3
    assert "m-1" in fake.delivered_keys


async def test_dropped_calls_can_be_written_with_their_reason(fake: FakeRehook, tmp_path: Path) -> None:
    calls = write_lines(tmp_path / "calls.jsonl", MIXED)
    dropped = tmp_path / "dropped.jsonl"

    code, _, _ = await rehook(
        fake, "send", str(calls), "--conversion-event", "signup", "--dropped-to", str(dropped), cwd=tmp_path
    )

    assert code == 1  # the bad lines
    records = [json.loads(line) for line in dropped.read_text().splitlines()]
    assert sorted(
        (r["call"].get("userId") or r["call"].get("anonymousId"), r["outcome"]["reason"]) for r in records
    ) == [
        ("a1", "anonymous_only"),
        ("f2", "missing_referral_code"),
        ("u1", "no_matching_mapping"),
    ]


async def test_version_and_credentials_errors(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rehook_sdk", "--version", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert (proc.returncode, out.decode().strip()) == (0, f"rehook-sdk {__version__}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REHOOK_")}
    calls = write_lines(tmp_path / "calls.jsonl", tracks(1))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rehook_sdk", "send", str(calls), stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "set REHOOK_API_KEY and REHOOK_API_SECRET, or pass --api-key and --api-secret-file" in err.decode()
    assert not failed_files(tmp_path)


def test_every_option_has_help_and_fake_server_takes_the_fake_modules_options() -> None:
    import argparse

    from rehook_sdk.testing.__main__ import add_arguments

    top = parser()
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {action.dest}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert missing == []
    fake_module = argparse.ArgumentParser()
    add_arguments(fake_module)
    options = {opt for a in fake_module._actions for opt in a.option_strings}
    assert options <= {opt for a in commands.choices["fake-server"]._actions for opt in a.option_strings}


async def test_fake_server_prints_a_summary_when_stopped() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rehook_sdk", "fake-server", "--port", "0", "--host", "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    assert first.startswith("Fake Rehook listening on")
    await asyncio.wait_for(proc.stdout.readline(), 5)
    await asyncio.wait_for(proc.stdout.readline(), 5)
    proc.send_signal(signal.SIGINT)
    rest = (await asyncio.wait_for(proc.stdout.read(), 20)).decode()
    await proc.wait()
    assert "Fake Rehook stopped: 0 requests, 0 calls delivered, 0 duplicates, 0 customers, 0 events recorded" in rest


async def test_a_call_whose_first_answer_was_lost_is_not_replayed_after_later_503s(
    fake: FakeRehook, tmp_path: Path
) -> None:
    """Attempt 1 lost its answer, attempts 2-3 got 503: the dead-letter line says maybe_delivered, so the replay of
    that file skips it instead of sending it again (#25: the last attempt alone used to decide)."""
    dead = tmp_path / "dead.jsonl"
    fake.disconnect_next(1)
    fake.fail_next(2, status=503)
    async with fake.client(dead_letter=dead, retry=RetryPolicy(max_attempts=3, time_scale=0)) as client:
        outcome = await client.track("e", user_id="u1", message_id="m-lost")
    assert (outcome.attempts, outcome.http_status, outcome.maybe_delivered) == (3, 503, True)
    assert json.loads(dead.read_text())["outcome"]["maybe_delivered"] is True

    code, out, _ = await rehook(fake, "send", str(dead), "--no-progress", cwd=tmp_path)

    assert code == 0
    assert table(out)[("skipped", "maybe_delivered")] == 1
    assert len(fake.requests) == 3  # the client's three attempts, nothing replayed
