"""The scaled-down chaos run (`python -m bench.chaos --quick --strict`), one per broker, in `make test`: the real
stack (the Procfile's processes, two of each worker) under a seeded load with a worker kill per pool, a web kill, a
Redis restart (and a RabbitMQ restart on that broker), terminated database connections, duplicate deliveries and
20% LLM faults. About a minute and a half each. Asserts nothing lost, nothing duplicated, no run sent to review by
faults alone and worker-kill recovery p99 within 15 s (docs/reliability.md). Needs root on this machine (a vhost is
made with rabbitmqctl); `make chaos` is the full run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT_DIR

pytestmark = [pytest.mark.chaos, pytest.mark.fault, pytest.mark.e2e, pytest.mark.timeout(900)]


def chaos_quick(tmp_path: Path, broker: str, *extra: str) -> dict[str, Any]:
    report = tmp_path / f"chaos-{broker}.json"
    args = [sys.executable, "-m", "bench.chaos", "--quick", "--conversations", "30", "--broker", broker]
    args += ["--seed", "1", "--report", str(report), "--strict", *extra]
    result = subprocess.run(args, cwd=ROOT_DIR, capture_output=True, text=True, timeout=850)
    assert report.exists(), result.stdout[-6000:] + result.stderr[-6000:]
    data = json.loads(report.read_text())
    print(result.stdout[-6000:])
    return {**data, "returncode": result.returncode}


def assert_sound(data: dict[str, Any]) -> None:
    verdict = data["verdict"]
    assert verdict["messages_accepted"] == verdict["conversations_sent"] == 30
    assert verdict["lost"] == [], verdict["lost"]
    assert verdict["duplicated"] == [], verdict["duplicated"]
    assert {event["kind"] for event in data["faults"]} >= {"worker_kill", "redis_restart", "duplicate"}
    assert data["llm"]["faults"], "the LLM fault mix injected nothing"
    assert verdict["review_fault_runs"] == 0, verdict["review_fault_reasons"]
    assert data["exit_status"] == 0, data["exit_reasons"]  # --strict: also worker-kill recovery p99 <= 15 s
    assert data["returncode"] == data["exit_status"]


def test_quick_chaos_on_redis(tmp_path: Path) -> None:
    assert_sound(chaos_quick(tmp_path, "redis"))


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs RabbitMQ and rabbitmqctl on this machine")
def test_quick_chaos_on_rabbitmq(tmp_path: Path) -> None:
    """The run makes its own vhost (deleted after) and restarts RabbitMQ's app once."""
    data = chaos_quick(tmp_path, "rabbitmq")
    assert_sound(data)
    assert "broker_restart" in {event["kind"] for event in data["faults"]}
