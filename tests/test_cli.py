"""
The ``rehook`` command, run as a subprocess against the fake Rehook, as an operator would run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from rehook_sdk.testing import FakeRehook

from .helpers import wait_until

MIXED = [
    {"type": "identify", "userId": "adv1", "traits": {"referral_code": "ADV1", "plan": "pro"}},
    {"type": "track", "event": "Order Completed", "userId": "adv1", "properties": {"total": 20}},
    {"type": "track", "event": "signup", "userId": "f1", "properties": {"referral_code": "ADV1"}},
    {"type": "track", "event": "signup", "userId": "f2", "properties": {}},
    {"type": "track", "event": "Viewed", "anonymousId": "a1"},
    "not json at all",
    {"type": "merge", "userId": "x"},
    {"type": "track", "event": 5, "userId": "u"},
    {"type": "page", "name": "Home", "userId": "u1"},
]


def failed_files(folder: Path) -> list[Path]:
    return list(folder.glob("rehook-failed-*"))


def compact(body: object) -> str:
    return json.dumps(body, separators=(",", ":"))


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


async def rehook(
    fake: FakeRehook, *args: str, signal_after: int | None = None, stdin: bytes | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    """
    Run ``python -m rehook_sdk ARGS``; with ``signal_after``, send SIGINT once the fake has that many requests.
    """
    env = {**os.environ, "REHOOK_API_KEY": fake.api_key, "REHOOK_API_SECRET": fake.api_secret}
    env["REHOOK_BASE_URL"] = fake.url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rehook_sdk", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None, cwd=cwd,
    )  # fmt: skip
    if signal_after is not None:
        await wait_until(lambda: len(fake.requests) >= signal_after, timeout=30)
        proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_mixed_file_summary_and_exit_code(fake: FakeRehook, tmp_path: Path) -> None:
    """Good, dropped and malformed lines: each bad line named with file and line, the exact summary, exit 1."""
    calls = write_lines(tmp_path / "calls.jsonl", MIXED)

    code, out, err = await rehook(fake, "send", str(calls), "--conversion-event", "signup", cwd=tmp_path)

    assert code == 1  # bad lines were not delivered
    assert f"{calls}:6: not JSON" in err
    assert f"{calls}:7: unknown call type 'merge'" in err
    assert f"{calls}:8: track(): event must be a str, not int" in err
    rows = [line.split("|") for line in out.splitlines() if "|" in line]
    table = {(r[0].strip(), r[1].strip()): r[2].strip() for r in rows}
    assert table == {
        ("status", "reason"): "calls",
        ("delivered", "-"): "3",
        ("dropped", "anonymous_only"): "1",
        ("dropped", "missing_referral_code"): "1",
        ("dropped", "no_matching_mapping"): "1",  # page() is not sent by default, as in Segment
        ("bad line", "-"): "3",
        ("total", ""): "9",
    }
    assert sorted(e["event_name"] for e in fake.events) == ["Order Completed", "signup"]
    assert "adv1" in fake.customers
    assert not failed_files(tmp_path)  # nothing failed: the default failed file is not left behind


async def test_default_failed_file_is_named_and_kept(fake: FakeRehook, tmp_path: Path) -> None:
    """Without --failed-to, failures go to a rehook-failed-<time>.jsonl in the current folder, named at the end."""
    calls = write_lines(tmp_path / "calls.jsonl", [MIXED[1]])
    fake.fail_next(10, status=500)

    code, out, _ = await rehook(fake, "send", str(calls), "--max-attempts", "1", cwd=tmp_path)

    [failed] = failed_files(tmp_path)
    assert code == 1
    assert f"1 call to send again, in {failed.name}" in out
    assert json.loads(failed.read_text())["call"]["event"] == "Order Completed"


async def test_all_delivered_or_deliberately_dropped_exits_0(fake: FakeRehook, tmp_path: Path) -> None:
    """Exit code 0 when every call was delivered or dropped by a rule; stdin works as '-'."""
    calls = write_lines(tmp_path / "ok.jsonl", [MIXED[0], MIXED[1], MIXED[4]])
    piped = json.dumps(MIXED[8]).encode() + b"\n"
    code, out, _ = await rehook(fake, "send", str(calls), "-", "--no-progress", stdin=piped)
    assert code == 0, out
    rows = {tuple(c.strip() for c in line.split("|")) for line in out.splitlines() if "|" in line}
    assert ("delivered", "-", "2") in rows  # identify and track
    assert ("dropped", "no_matching_mapping", "1") in rows  # the page from stdin: not sent by default
    assert sorted(e["event_name"] for e in fake.events) == ["Order Completed"]


async def test_failed_calls_are_written_and_replayed(fake: FakeRehook, tmp_path: Path) -> None:
    """With Rehook failing, calls go to --failed-to; replaying that file later delivers them, once."""
    calls = write_lines(tmp_path / "calls.jsonl", [MIXED[0], MIXED[1], MIXED[2]])
    failed = tmp_path / "failed.jsonl"
    fake.fail_next(100, status=503)

    code, out, _ = await rehook(fake, "send", str(calls), "--failed-to", str(failed), "--max-attempts", "1")

    assert code == 1
    assert f"3 calls to send again, in {failed}" in out
    assert len(failed.read_text().splitlines()) == 3
    fake.clear_faults()
    code, out, _ = await rehook(fake, "send", str(failed))
    assert code == 0, out
    assert sorted(e["event_name"] for e in fake.events) == ["Order Completed", "signup"]
    assert "adv1" in fake.customers
    assert fake.duplicates == 0


async def test_dry_run_prints_requests_and_sends_nothing(fake: FakeRehook, tmp_path: Path) -> None:
    """--dry-run checks and maps every line like send does, prints the requests, and sends nothing."""
    calls = write_lines(tmp_path / "calls.jsonl", MIXED)

    code, out, err = await rehook(fake, "send", str(calls), "--dry-run", "--conversion-event", "signup")

    assert code == 1  # bad lines
    identify = {"source_id": "adv1", "metadata": {"referral_code": "ADV1", "plan": "pro"}, "referral_code": "ADV1"}
    order = {"event_name": "Order Completed", "source_id": "adv1", "metadata": {"total": 20}}
    signup = {"event_name": "signup", "source_id": "f1", "metadata": {"referral_code": "ADV1"}}
    assert out.splitlines() == [
        f"{calls}:1: POST /customers {compact(identify)}",
        f"{calls}:2: POST /events/invoke {compact(order)}",
        f"{calls}:3: POST /events/invoke {compact(signup)}",
        f"{calls}:4: DROP missing_referral_code: 'signup' is a conversion event and needs properties['referral_code']",
        f"{calls}:5: DROP anonymous_only: track() has only an anonymousId; Rehook needs a userId",
        f"{calls}:9: DROP no_matching_mapping: page() is not sent by default: Segment's Rehook destination sends "
        "only identify and track; add a Mapping for page and screen calls (docs/mappings.md) to send them as "
        "Track Event",
    ]
    assert f"{calls}:8: track(): event must be a str, not int" in err
    assert fake.requests == []


async def test_ctrl_c_loses_nothing(fake: FakeRehook, tmp_path: Path) -> None:
    """SIGINT: reading stops, what was accepted is delivered or written to the failed file, summary, exit 130."""
    n = 2000
    calls = write_lines(tmp_path / "many.jsonl", [{"type": "track", "event": "e", "userId": f"u{i}"} for i in range(n)])
    failed = tmp_path / "left.jsonl"
    fake.delay_next(n, seconds=0.05)

    code, out, err = await rehook(
        fake, "send", str(calls), "--failed-to", str(failed), "--concurrency", "4", "--drain-timeout", "0.2",
        "--max-queue", "100", signal_after=20,
    )  # fmt: skip

    assert code == 130, err
    assert "interrupted" in err
    rows = {
        line.split("|")[0].strip(): int(line.split("|")[2])
        for line in out.splitlines()
        if "|" in line[:12] and line.split("|")[2].strip().isdigit()
    }
    accepted = rows["total"]
    assert 20 <= accepted < n  # it stopped reading
    written = failed.read_text().splitlines() if failed.exists() else []
    await wait_until(lambda: fake.pending == 0)
    assert len(fake.delivered_keys) + len(written) >= accepted  # every accepted call is delivered or written


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
async def test_large_files_are_read_in_constant_memory(fake: FakeRehook, tmp_path: Path) -> None:
    """Peak memory does not grow with the file: five times the lines, about the same peak RSS (Linux)."""

    async def peak_rss(count: int) -> int:
        path = write_lines(
            tmp_path / f"{count}.jsonl",
            [
                {"type": "track", "event": "e", "userId": "u", "properties": {"i": i, "pad": "x" * 200}}
                for i in range(count)
            ],
        )
        # VmHWM, the process's own peak RSS (ru_maxrss would include the forked parent's pages from before exec).
        code = (
            "import sys; from rehook_sdk._cli import main; "
            f"c = main(['send', {str(path)!r}, '--no-progress', '--max-queue', '1000']); "
            "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
            "print('maxrss', hwm); sys.exit(c)"
        )
        env = {**os.environ, "REHOOK_API_KEY": fake.api_key, "REHOOK_API_SECRET": fake.api_secret}
        env["REHOOK_BASE_URL"] = fake.url
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, env=env)
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, out
        return int(out.decode().split("maxrss")[1].split()[0])

    small, large = await peak_rss(10_000), await peak_rss(50_000)
    # The larger file is 5x the size (about 10 MB more); read whole it would add far more than 8 MiB of objects.
    assert large - small < 8 * 1024, (small, large)


async def test_check_auth_command(fake: FakeRehook) -> None:
    """check-auth: ok and exit 0 for good credentials; a clear error and exit 1 for bad ones; no secret printed."""
    code, out, _ = await rehook(fake, "check-auth")
    assert (code, out.startswith("ok:")) == (0, True)
    code, out, err = await rehook(fake, "check-auth", "--api-secret", "definitely-wrong")
    assert code == 1
    assert "credentials refused" in err
    assert "definitely-wrong" not in out + err


async def test_missing_credentials_are_a_usage_error(tmp_path: Path) -> None:
    """No key and secret anywhere: exit 2 with the two ways to give them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REHOOK_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rehook_sdk", "check-auth", stderr=asyncio.subprocess.PIPE, env=env
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "REHOOK_API_KEY" in err.decode()


async def test_fake_server_command() -> None:
    """rehook fake-server prints where it listens and the key it accepts, never a real secret."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rehook_sdk", "fake-server", "--port", "0", "--conversion-event", "signup",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        second = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode()
    finally:
        proc.terminate()
        await proc.wait()
    assert first.startswith("Fake Rehook listening on http://127.0.0.1:")
    assert "REHOOK_API_KEY=test_key" in second
