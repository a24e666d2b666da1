"""/metrics without Prometheus: who may read it, what it shows, and what a damaged count file or a worker-only host
does (manage.py metrics_serve)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db.models.functions import Now
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client import CollectorRegistry

from harness.processes import free_port
from orchestration.metrics_state import GAUGES, StateCollector
from orchestration.models import ReviewItem, WorkerBeat
from project.metrics import HostCollector
from tests.conftest import ROOT_DIR, wait_for
from tests.review_data import run_in_review

pytestmark = pytest.mark.django_db


def get(client: Client, **headers: str) -> Any:
    return client.get("/metrics", headers=headers)


@override_settings(METRICS_TOKEN="t0ken-for-tests", METRICS_BASIC_AUTH="prom:s3cret")
def test_a_token_or_basic_auth_reads_the_metrics_and_nothing_else_does() -> None:
    client = Client()
    assert get(client, Authorization="Bearer t0ken-for-tests").status_code == 200
    basic = base64.b64encode(b"prom:s3cret").decode()
    assert get(client, Authorization=f"Basic {basic}").status_code == 200
    for header in ("", "Bearer t0ken-for-test", f"Basic {base64.b64encode(b'prom:wrong').decode()}", "Basic %%%"):
        refused = get(client, Authorization=header)
        assert refused.status_code == 401 and refused["WWW-Authenticate"] == 'Basic realm="metrics"'


@override_settings(METRICS_TOKEN="", METRICS_BASIC_AUTH="")
def test_without_credentials_only_a_direct_local_client_in_debug_reads_them() -> None:
    client = Client()  # REMOTE_ADDR 127.0.0.1
    with override_settings(DEBUG=True):
        assert get(client).status_code == 200
        assert get(client, X_Forwarded_For="203.0.113.9").status_code == 403  # through a proxy on this host
        assert Client(REMOTE_ADDR="10.0.0.7").get("/metrics").status_code == 403
    with override_settings(DEBUG=False):
        refused = get(client)
        assert refused.status_code == 403 and b"set METRICS_TOKEN" in refused.content


def test_the_state_gauges_are_the_ones_named() -> None:
    names = {family.name for family in StateCollector().collect()}
    assert names == set(GAUGES)


def test_the_state_gauges_read_the_review_queue_and_the_heartbeats() -> None:
    _, late, _ = run_in_review(steps=0, messages=1)
    ReviewItem.objects.filter(id=late.id).update(created_at=timezone.now() - timedelta(hours=1), overdue=True)
    run_in_review(steps=0, messages=1)
    now = timezone.now()
    for name, beat_at in (("alive", Now()), ("dead", now - timedelta(hours=1))):  # stamped by the database's clock
        WorkerBeat.objects.create(name=name, node=name, started_at=now, beat_at=beat_at, host_beat_at=now)
    registry = CollectorRegistry()
    registry.register(StateCollector())
    value = registry.get_sample_value
    assert value("switchboard_review_queue_depth", {"reason": "refund_over_limit"}) == 2
    assert value("switchboard_review_queue_overdue") == 1
    assert 3600 <= value("switchboard_review_queue_oldest_age_seconds") < 3660  # type: ignore[operator]
    assert value("switchboard_workers_alive") == 1
    assert 0 <= value("switchboard_worker_heartbeat_age_seconds") < 60  # type: ignore[operator]


def test_a_damaged_count_file_is_left_out_not_the_scrape(tmp_path: Path) -> None:
    script = (
        "import django; django.setup()\n"
        "from project import metrics\n"
        "metrics.RUNS_STARTED.inc(3)\n"
        "metrics.REVIEW_DECISIONS.labels(kind='approve').inc()\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "project.settings"}
    subprocess.run([sys.executable, "-c", script], cwd=ROOT_DIR, env=env, check=True, timeout=60)
    (tmp_path / "counter_broken-1.db").write_bytes(b"\x00\x01garbage")
    with override_settings(PROMETHEUS_MULTIPROC_DIR=str(tmp_path)):
        registry = CollectorRegistry()
        registry.register(HostCollector())
        assert registry.get_sample_value("switchboard_runs_started_total") == 3
        assert registry.get_sample_value("switchboard_review_decisions_total", {"kind": "approve"}) == 1


def test_metrics_serve_gives_a_worker_only_hosts_counts(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "METRICS_TOKEN": "host-token-for-tests",
    }
    count = "import django; django.setup()\nfrom project import metrics\nmetrics.RUNS_STARTED.inc(2)\n"
    subprocess.run([sys.executable, "-c", count], cwd=ROOT_DIR, env=env, check=True, timeout=60)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "metrics_serve", "--port", str(port), "--bind", "127.0.0.1"],
        cwd=ROOT_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def scrape(token: str) -> str | int:
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.read().decode()
            except urllib.error.HTTPError as error:
                return error.code
            except OSError:
                return ""  # not listening yet

        assert "switchboard_runs_started_total 2.0" in wait_for(lambda: scrape("host-token-for-tests"), timeout=60)
        assert scrape("wrong") == 401
    finally:
        server.terminate()
        server.wait(timeout=20)
