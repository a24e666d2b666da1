"""The benchmark harness, in a tiny configuration, so that it cannot rot. Assertions are about
correctness (every conversation answered, counts match), never about time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import peer
from tests.conftest import ROOT_DIR

pytestmark = [pytest.mark.e2e]


SECTIONS = "per_hop,throughput,io,api,latency"


def test_the_benchmark_runs_end_to_end_in_a_tiny_configuration(tmp_path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        # cost has its own tiny run (tests/test_bench_cost.py); langgraph needs its own virtualenv (skipped without).
        [sys.executable, "-m", "bench.run", "--quick", "--only", SECTIONS, "--json", str(out)],
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
    latency = data["latency"]
    assert latency["conversations"] == 3 and 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    api = data["api"]
    for name in ("bare_post", "post_message", "get_conversation"):
        assert api[name]["requests_per_s"] > 0 and api[name]["errors"] == 0, (name, api[name])
    assert "| 1 per-hop overhead |" in result.stdout


@pytest.mark.skipif(
    not peer.langgraph_python().exists(),
    reason=f"no {peer.LANGGRAPH_VENV}: `make bench-langgraph-venv` creates it (LangGraph: the bench only)",
)
@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the LangGraph peer needs PostgreSQL"
)
def test_the_langgraph_peer_runs_in_a_tiny_configuration() -> None:
    url = os.environ["DATABASE_URL"]
    database = url.split("?")[0].rsplit("/", 1)[-1] + "_lg"  # one per test database: the shards run side by side
    command = [*peer.peer_command(url, 2, 8, 1), "--warmup", "1", "--database", database]
    result = subprocess.run(command, cwd=ROOT_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    figures = peer.parse_peer_output(result.stdout)
    assert figures["serial_ms_per_step"] > 0 and figures["threads8_steps_per_s"] > 0
    # Seven nodes (and LangGraph's input step): a checkpoint per step and one for the input, the nodes' writes.
    assert figures["checkpoint_rows_per_run"]["checkpoints"] == 9
    assert figures["calls_per_run"]["saver_put"] == 9
