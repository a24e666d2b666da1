"""The scaled-down chaos run (`python -m bench.chaos --quick --strict`), one per broker, in `make test`: the real
stack (the Procfile's processes, two of each worker) under a seeded load with a worker kill per pool, a web kill, a
Redis restart (and a RabbitMQ restart on that broker), terminated database connections, duplicate deliveries and
20% LLM faults. The two run at once, about a minute and a half together. Asserts nothing lost, nothing duplicated,
no run sent to review by faults alone and worker-kill recovery p99 within 15 s (docs/reliability.md). Needs root on
this machine (a vhost is made with rabbitmqctl); `make chaos` is the full run.
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


BROKERS = ("redis", "rabbitmq") if shutil.which("rabbitmqctl") else ("redis",)


@pytest.fixture(scope="module")
def chaos_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Both scaled-down runs at once (each has its own Redis, database and vhost; the RabbitMQ restart touches only
    the RabbitMQ run's broker): the report of each, by broker."""
    folder = tmp_path_factory.mktemp("chaos")
    running = {}
    for broker in BROKERS:
        report = folder / f"chaos-{broker}.json"
        args = [sys.executable, "-m", "bench.chaos", "--quick", "--conversations", "30", "--broker", broker]
        args += ["--seed", "1", "--report", str(report), "--strict"]
        log = (folder / f"chaos-{broker}.log").open("w")
        running[broker] = (subprocess.Popen(args, cwd=ROOT_DIR, stdout=log, stderr=subprocess.STDOUT), report, log)
    reports = {}
    for broker, (process, report, log) in running.items():
        returncode = process.wait(timeout=850)
        log.close()
        output = Path(log.name).read_text()
        assert report.exists(), output[-6000:]
        print(output[-6000:])
        reports[broker] = {**json.loads(report.read_text()), "returncode": returncode}
    return reports


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


def test_quick_chaos_on_redis(chaos_reports: dict[str, dict[str, Any]]) -> None:
    assert_sound(chaos_reports["redis"])


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs RabbitMQ and rabbitmqctl on this machine")
def test_quick_chaos_on_rabbitmq(chaos_reports: dict[str, dict[str, Any]]) -> None:
    """The run makes its own vhost (deleted after) and restarts RabbitMQ's app once."""
    data = chaos_reports["rabbitmq"]
    assert_sound(data)
    assert "broker_restart" in {event["kind"] for event in data["faults"]}
