"""The benchmark harness, in a tiny configuration, so that it cannot rot. Assertions are about
correctness (every conversation answered, counts match), never about time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT_DIR

pytestmark = [pytest.mark.e2e]


def test_the_benchmark_runs_end_to_end_in_a_tiny_configuration(tmp_path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--json", str(out)],
        cwd=ROOT_DIR,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    data = json.loads(out.read_text())
    assert data["machine"]["cores"] == os.cpu_count()
    hop = data["per_hop"]
    assert hop["raw_ms_per_hop"] > 0 and hop["switchboard_ms_per_hop"] > 0 and hop["ratio"] > 0
    throughput = data["throughput"]
    assert throughput["completed"] == throughput["conversations"]
    io = data["io"]
    for latency in ("0ms", io["slow"]):
        assert io[f"completed_{latency}"] == io["conversations"]
        assert io[f"llm_requests_{latency}"] == io["conversations"] * 4  # triage, planner, responder, validator
        assert io[f"peak_llm_in_flight_{latency}"] >= 1
    assert io["workers_peak_rss_mb"] > 0
    api = data["api"]
    for name in ("bare_post", "post_message", "get_conversation"):
        assert api[name]["requests_per_s"] > 0 and api[name]["errors"] == 0, (name, api[name])
    assert "| 1 per-hop overhead |" in result.stdout
