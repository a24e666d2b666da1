"""Target 7's bench (bench/cost.py) in a tiny configuration, the wire counter it relies on, and the capacity model
(bench/scaling.py). Assertions are about shape and arithmetic, never about time."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections import Counter

import pytest

from bench.pgwire import MessageCounter
from bench.scaling import (
    Assumptions,
    ConversationCost,
    ceilings,
    conversations_per_day_per_core,
    first_to_saturate,
    model,
    predicted_throughput,
    sizing,
)
from tests.conftest import ROOT_DIR

COST = ConversationCost(
    web_cpu_ms=10.0,
    worker_cpu_ms=50.0,
    postgres_cpu_ms=30.0,
    redis_cpu_ms=10.0,
    statements=100.0,
    redis_commands=200.0,
    stored_bytes=20_000.0,
)


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def test_the_wire_counter_counts_queries_and_executes_however_the_bytes_are_cut() -> None:
    stream = message(b"Q", b"BEGIN\0") + message(b"P", b"\0SELECT $1\0\0\0") + message(b"B", b"x" * 20)
    stream += message(b"E", b"\0\0\0\0\0") + message(b"S", b"") + message(b"Q", b"COMMIT\0")
    for cut in (1, 2, 3, 7, len(stream)):
        counts: Counter[str] = Counter()
        counter = MessageCounter(counts)
        for start in range(0, len(stream), cut):
            counter.feed(stream[start : start + cut])
        assert counts == {"query": 2, "execute": 1, "messages": 6}, cut


def test_capacity_is_cores_over_cost() -> None:
    assert COST.total_cpu_ms == 100.0 and COST.app_cpu_ms == 60.0
    assert conversations_per_day_per_core(COST) == pytest.approx(864_000)
    assert predicted_throughput(100.0, 2) == pytest.approx(20.0)


def test_the_singleton_with_the_lowest_ceiling_saturates_first() -> None:
    assumptions = Assumptions(utilisation=0.5, postgres_max_cores=64, redis_max_cores=1.0)
    assert ceilings(COST, assumptions) == {"redis": pytest.approx(50.0), "postgres": pytest.approx(64 * 500 / 30)}
    assert first_to_saturate(COST, assumptions) == "redis"
    cheap_redis = ConversationCost(**{**COST.__dict__, "redis_cpu_ms": 0.1})
    assert first_to_saturate(cheap_redis, assumptions) == "postgres"


def test_sizing_scales_with_the_peak_and_flags_what_one_instance_cannot_do() -> None:
    assumptions = Assumptions(peak_factor=2.0, utilisation=0.5, host_cores=16, direct_connections_max=300)
    small = sizing(86_400 * 10, COST, assumptions)  # 10/s on average, 20/s at peak
    assert small["peak_per_s"] == pytest.approx(20.0)
    assert small["app_cores"] == pytest.approx(20 * 0.060 / 0.5)
    assert small["worker_hosts"] == 1
    assert small["postgres_cores"] == pytest.approx(20 * 0.030 / 0.5)
    assert small["redis_fits_one_instance"] and not small["pgbouncer"]
    assert small["statements_per_s_peak"] == pytest.approx(2000)
    assert small["stored_gb_per_day"] == pytest.approx(86_400 * 10 * 20_000 * 2.5 / 1e9)
    large = sizing(86_400 * 1000, COST, assumptions)
    assert large["worker_hosts"] == 15  # 240 app cores over 16-core hosts
    assert not large["redis_fits_one_instance"] and large["pgbouncer"]
    result = model(COST)
    assert set(result["sizing"]) == {"1M", "50M"}
    assert result["sizing"]["50M"]["peak_per_s"] == pytest.approx(50e6 / 86_400 * 3)


@pytest.mark.e2e
def test_the_cost_bench_runs_in_a_tiny_configuration(tmp_path) -> None:
    out = tmp_path / "cost.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.cost", "--quick", "-n", "4", "--json", str(out)],
        cwd=ROOT_DIR,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    cost = json.loads(out.read_text())["cost"]
    ours, raw = cost["switchboard"], cost["raw"]
    assert ours["completed"] == cost["conversations"] == 4
    kinds = {"front", "workers", "postgres (web)", "postgres (workers)", "postgres (background)", "redis"}
    assert set(ours["cpu_ms"]) == set(raw["cpu_ms"]) == kinds
    assert all(value >= 0 for value in [*ours["cpu_ms"].values(), *raw["cpu_ms"].values()])
    assert ours["cpu_ms"]["workers"] > 0 and raw["cpu_ms"]["workers"] > 0
    assert ours["statements"]["web"] > 0 and ours["statements"]["worker"] > 0 and raw["statements"]["total"] == 0
    assert ours["redis_commands"] > 0 and raw["redis_commands"] > 0
    assert ours["stored"]["step"]["rows"] >= 7  # seven steps at least
    assert "| CPU ms: total |" in result.stdout and "| Redis commands |" in result.stdout
