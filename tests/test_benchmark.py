"""
The benchmark's smoke mode runs end to end, so the benchmark cannot rot; it asserts no speed (see README).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def test_quick_benchmark_produces_every_figure(tmp_path: Path) -> None:
    """bench.py --quick prints the table and writes JSON with every figure and target."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "| track() mean, us |" in result.stdout
    data = json.loads(out.read_text())
    results = data["results"]
    assert results["caller_cost"]["track_mean_us"] > 0
    assert results["throughput_0ms"]["sdk"]["events_per_s"] > 0
    assert results["throughput_0ms"]["baseline"]["events_per_s"] > 0
    assert results["throughput_20ms"]["limit_events_per_s"] == 3200
    assert results["backlog"]["bytes_per_queued_event"] > 0
    assert results["backlog"]["full_gc_ms"] > 0
    assert results["backlog"]["full_collections_during_burst"] >= 0
    assert results["backlog"]["max_stall_ms_1000_per_yield"] > 0
    assert results["drain"]["ratio"] > 0
    assert set(data["targets"]) == {
        "caller_cost.track_mean_us",
        "caller_cost.track_p99_us",
        "throughput_20ms.sdk_over_limit",
        "throughput_0ms.sdk_over_baseline",
        "backlog.bytes_per_queued_event",
        "backlog.max_stall_ms",
        "drain.ratio",
    }
    assert data["machine"]["python"]
