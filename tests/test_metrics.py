"""A real Prometheus server (Debian's package) scrapes /metrics of the web, a worker and the supervisor while a known
workload runs — conversations answered, a refund held for review, a dead letter, a model whose breaker opens — and its
HTTP API returns the expected values. Also: /metrics is protected, and says so."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.fake_openai import SHIPPING_ANSWERS, refund_answers
from harness.processes import SupervisorProcess, WorkerProcess, free_port, web_server
from orchestration.cancel import run_cancel
from orchestration.models import DeadLetter, ReviewItem
from project.celery import app
from tests.conftest import WORKER_ENV, broker_reset, llm_env, order_add, run_wait, wait_for
from tests.http import ApiClient

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        shutil.which("prometheus") is None, reason="Debian's prometheus package (make test installs it)"
    ),
]

TOKEN = "metrics-test-token-0123456789"
ORDER = "SB-79001"


@pytest.fixture
def monitored(database_url: str, tmp_path: Path, fake: Any) -> Iterator[dict[str, Any]]:
    """The web, a worker and the supervisor writing their counts in one fresh directory, the fake model, and a
    Prometheus server scraping /metrics every second."""
    broker_reset()
    refund = refund_answers(ORDER, "Aurora headphones", "300.00")

    def by_message(prompt: str) -> Any:
        """The refund's answer for the message naming the order, the shipping answer for the others."""
        return lambda body: refund[prompt] if ORDER in json.dumps(body) else SHIPPING_ANSWERS[prompt]

    fake.answers = {**SHIPPING_ANSWERS, **{prompt: by_message(prompt) for prompt in refund}}
    counts = tmp_path / "counts"
    counts.mkdir()
    env = {
        **WORKER_ENV,
        **llm_env(fake, LLM_BREAKER_FAILURES="2", LLM_BREAKER_COOLDOWN_SECONDS="300"),
        "PROMETHEUS_MULTIPROC_DIR": str(counts),
        "METRICS_TOKEN": TOKEN,
    }
    web = web_server(database_url, env=env).start()
    worker = WorkerProcess(database_url, name="metrics", env=env).start()
    supervisor = SupervisorProcess(database_url, env=env).start()
    (tmp_path / "token").write_text(TOKEN)
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "switchboard",
                "metrics_path": "/metrics",
                "authorization": {"credentials_file": str(tmp_path / "token")},
                "static_configs": [{"targets": [web.url.removeprefix("http://")]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    try:
        yield {"web": web, "fake": fake, "prometheus": f"http://127.0.0.1:{port}"}
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=20)
        supervisor.stop()
        worker.stop()
        web.stop()
        broker_reset()


def promql(base: str, query: str) -> dict[str, float]:
    """An instant query's samples, by their labels (as JSON), or {} (Prometheus not up yet, or nothing)."""
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
    except OSError:
        return {}
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in body["data"]["result"]}


def eventually(base: str, query: str, expected: float, timeout: float = 30.0) -> None:
    """Prometheus answers `query` (summed) with `expected` within `timeout` seconds."""
    seen: dict[str, float] = {}

    def matches() -> bool:
        nonlocal seen
        seen = promql(base, f"sum({query})")
        return bool(seen) and abs(sum(seen.values()) - expected) < 1e-9

    try:
        wait_for(matches, timeout=timeout, interval=0.5)
    except AssertionError:
        raise AssertionError(f"{query}: expected {expected}, Prometheus has {seen}") from None


#: What Prometheus must see of the test's workload (each query summed).
WORKLOAD_SEEN = {
    "switchboard_runs_started_total": 4,
    'switchboard_runs_finished_total{status="completed"}': 2,
    "switchboard_reply_seconds_count": 2,
    'switchboard_runs_escalated_total{reason="refund_over_limit"}': 1,
    'switchboard_review_queue_depth{reason="refund_over_limit"}': 1,
    'switchboard_dead_letters_open{reason="invalid_envelope"}': 1,
    'switchboard_dead_letters_total{reason="invalid_envelope"}': 1,
    'switchboard_circuit_breaker_open{breaker="openai:fake-model"}': 1,
    'switchboard_runs_active{status="awaiting_review"}': 1,
    "switchboard_workers_alive": 1,
    'switchboard_step_attempts_total{agent="triage",outcome="retried"}': 2,
    'switchboard_llm_calls_total{model="fake-model",agent="triage",outcome="error"}': 2,
}


def test_prometheus_scrapes_the_workload_it_was_given(monitored: dict[str, Any], make_customer: Any) -> None:
    web, fake, prometheus = monitored["web"], monitored["fake"], monitored["prometheus"]
    customer, token = make_customer()
    order_add(customer, ORDER, "Aurora headphones", "300.00")
    client = ApiClient(web.url + "/api/v1", token)
    eventually(prometheus, 'up{job="switchboard"}', 1)

    # Two questions answered, one refund over the limit held for review.
    runs = []
    for content in ("How long does shipping take?", "How long does shipping take?", f"Please refund {ORDER}"):
        conversation = client.post("/conversations/", {}).json["id"]
        posted = client.post(f"/conversations/{conversation}/messages/", {"content": content})
        assert posted.status == 202, posted.body
        runs.append(posted.json["run"]["id"])
    statuses = [run_wait(run_id, timeout=60).status for run_id in runs]
    assert statuses == ["completed", "completed", "awaiting_review"], statuses
    # A message no agent can read: a dead letter.
    app.send_task("agents.triage", args=[{"not": "an envelope"}])
    wait_for(lambda: DeadLetter.objects.filter(reason="invalid_envelope").exists())
    # The model fails twice in a row: its breaker opens, the run waits.
    fake.fail_always("*", "500")
    conversation = client.post("/conversations/", {}).json["id"]
    waiting = client.post(f"/conversations/{conversation}/messages/", {"content": "Is express shipping faster?"})

    for query, expected in WORKLOAD_SEEN.items():
        eventually(prometheus, query, expected)
    completed = promql(prometheus, 'sum(switchboard_llm_calls_total{model="fake-model",outcome="ok"})')
    assert sum(completed.values()) >= 10  # every LLM step of the three runs
    tokens = promql(prometheus, 'sum(switchboard_llm_tokens_total{model="fake-model"})')
    assert sum(tokens.values()) > 0
    steps = promql(prometheus, 'sum by (agent) (switchboard_step_duration_seconds_count{agent=~"triage|deliver"})')
    assert len(steps) == 2  # both agents timed
    assert ReviewItem.objects.filter(status="open").count() == 1
    run_cancel(run_id=waiting.json["run"]["id"])  # it waits for the breaker's cool-down: not for the teardown too


def test_metrics_are_protected(monitored: dict[str, Any]) -> None:
    url = monitored["web"].url + "/metrics"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()},
    ):
        request = urllib.request.Request(url, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 401
        assert refused.value.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE switchboard_review_queue_depth gauge" in body
    assert "# TYPE switchboard_workers_alive gauge" in body
