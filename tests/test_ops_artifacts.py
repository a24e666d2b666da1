"""The operator's artifacts in deploy/ and docker-compose.yml: the alert rules pass `promtool check rules` and their
unit tests (`promtool test rules`), the Prometheus config passes `promtool check config`, the Grafana dashboard
parses, has its panels and its queries parse, and every query names only metrics Switchboard exports. No workers, no
database: promtool (Debian's prometheus package, `make test` installs it) and files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestration.metrics_state import GAUGES
from project.metrics import event_metrics

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
DASHBOARD = GRAFANA_DIR / "switchboard.json"
METRIC_NAME = re.compile(r"\bswitchboard_[a-z_]+")
# The panels the issue asks for (titles in deploy/grafana/switchboard.json).
PANELS = (
    "Conversations per minute",
    "Reply latency p50 / p95",
    "Review queue depth by reason",
    "Review queue: oldest item age",
    "Review decisions per hour, by kind",
    "LLM spend per hour, by model and agent",
    "LLM tokens per minute, by model and agent",
    "Circuit breakers open",
    "Dead letters open, by reason",
    "Dead letters per hour, by reason",
    "Step latency p95 by agent",
    "Step retries and failures per minute, by agent",
    "Workers alive",
)
APP_SERVICES = ("migrate", "web", "worker", "worker-llm", "beat", "supervisor", "flower")


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    tool = os.environ.get("PROMTOOL") or shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(tool).exists(), f"{tool} is missing: `make test` installs Debian's prometheus package."
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def exported_names() -> set[str]:
    """Every series name Switchboard exposes: the event metrics as prometheus_client names their samples (counters
    `_total`; histograms `_bucket`, `_sum`, `_count`) and the scrape-time gauges."""
    names = set(GAUGES)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    for metric in event_metrics():
        for family in metric.describe():
            names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too; rows left out."""
    panels = []
    for panel in dashboard()["panels"]:
        panels.extend(panel.get("panels", []))
        if panel["type"] != "row":
            panels.append(panel)
    return panels


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in dashboard_panels() for target in panel["targets"]]


def test_alert_rules_pass_promtool_check() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_alert_rules_pass_their_unit_tests() -> None:
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts == {
        "SwitchboardReviewQueueOverdue",
        "SwitchboardDeadLettersOpen",
        "SwitchboardCircuitBreakerOpen",
        "SwitchboardRunFailureRateHigh",
        "SwitchboardWorkersDown",
        "SwitchboardMetricsAbsent",
        "SwitchboardLLMCostOverBudget",
    }
    firing: set[str] = set()
    quiet: set[str] = set()
    breakers_firing: set[str] = set()
    for test in yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
            breakers_firing.update(alert["exp_labels"].get("dependency", "") for alert in case["exp_alerts"])
    assert firing == alerts, f"never seen firing: {alerts - firing}"
    assert quiet == alerts, f"never seen quiet: {alerts - quiet}"
    # Each kind of breaker has its own rule (its own cool-down): each is seen firing.
    assert {"llm", "a2a", "mcp", "commerce"} <= breakers_firing


def test_every_alert_says_how_bad_and_what_to_do() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["alert"]
        # Runbook-style: where to look, what to run.
        assert "README" in annotations["description"], rule["alert"]
        assert "for" in rule or "absent(" in rule["expr"], f"{rule['alert']} would page on one scrape"


def test_alert_thresholds_match_the_settings() -> None:
    """The numbers in alerts.yml that mirror settings hold their defaults (change both together)."""
    from django.conf import settings

    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert f"> {settings.REVIEW_OVERDUE_SECONDS:.0f}" in exprs["SwitchboardReviewQueueOverdue"]
    cooldowns = {
        "llm": settings.LLM_BREAKER_COOLDOWN_SECONDS,
        "a2a": settings.A2A_BREAKER_COOLDOWN_SECONDS,
        "mcp": settings.MCP_BREAKER_COOLDOWN_SECONDS,
        "commerce": settings.COMMERCE_BREAKER_COOLDOWN_SECONDS,
    }
    for rule in alert_rules():
        if rule["alert"] == "SwitchboardCircuitBreakerOpen":
            waits = int(rule["for"].removesuffix("m")) * 60
            assert waits == 4 * cooldowns[rule["labels"]["dependency"]], rule["labels"]
    # Dead after WORKER_DEAD_SECONDS; the alert waits a few of those.
    assert settings.WORKER_DEAD_SECONDS < 30
    assert "> 30" in exprs["SwitchboardWorkersDown"]


def test_prometheus_config_passes_promtool_check(tmp_path: Path) -> None:
    """The config as compose mounts it, with its token file where it says (a copy: /prometheus is the container's)."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["web:8000"]}]
    assert job["authorization"]["type"] == "Bearer"
    token_path = job["authorization"]["credentials_file"]
    assert token_path == "/prometheus/metrics_token"  # where the compose service writes METRICS_TOKEN
    (tmp_path / "metrics_token").write_text("a-token")
    copied = (PROMETHEUS_DIR / "prometheus.yml").read_text().replace(token_path, str(tmp_path / "metrics_token"))
    (tmp_path / "prometheus.yml").write_text(copied)
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    checked = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout


def test_dashboard_has_the_panels() -> None:
    board = dashboard()
    assert board["uid"] == "switchboard"
    assert 36 <= board["schemaVersion"] <= 41
    (variable,) = board["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource", "prometheus")
    panels = dashboard_panels()
    titles = [panel["title"] for panel in panels]
    assert set(PANELS) <= set(titles), f"missing panels: {set(PANELS) - set(titles)}"
    assert len(titles) == len(set(titles))
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
    latency = next(panel for panel in panels if panel["title"] == "Reply latency p50 / p95")
    quantiles = [re.match(r"histogram_quantile\(([0-9.]+),", target["expr"]) for target in latency["targets"]]
    assert [float(match.group(1)) for match in quantiles if match] == [0.5, 0.95]


def test_dashboard_queries_are_promql(tmp_path: Path) -> None:
    """Every query parses: promtool checks them as recording rules (Grafana's interval variables filled in)."""
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr.replace("$__rate_interval", "1m").replace("$__range", "6h")}
        for n, expr in enumerate(dashboard_queries())
    ]
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_queries_name_only_exported_metrics() -> None:
    exported = exported_names()
    assert "switchboard_runs_finished_total" in exported and "switchboard_reply_seconds_bucket" in exported
    for source, exprs in (("alerts.yml", [rule["expr"] for rule in alert_rules()]), ("dashboard", dashboard_queries())):
        named = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
        assert named, source
        assert named <= exported, f"{source} names metrics nobody exports: {sorted(named - exported)}"
    # The dashboard shows every event metric and every gauge (what the issue lists: runs, latency, queue, spend,
    # breakers, dead letters, steps, recoveries, throttles, workers).
    shown = {name for expr in dashboard_queries() for name in METRIC_NAME.findall(expr)}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in shown}
    wanted = {family.name for metric in event_metrics() for family in metric.describe()} | set(GAUGES)
    assert wanted <= families, f"not on the dashboard: {sorted(wanted - families)}"


def test_grafana_is_provisioned() -> None:
    source = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (datasource,) = source["datasources"]
    assert (datasource["type"], datasource["url"]) == ("prometheus", "http://prometheus:9090")
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "switchboard.yml").read_text())
    (dashboards,) = provider["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mount = f"./deploy/grafana/switchboard.json:{dashboards['options']['path']}/switchboard.json:ro"
    assert mount in compose["services"]["grafana"]["volumes"]


def test_compose_monitoring_profile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
        for volume in services[name]["volumes"]:
            host = volume.split(":")[0]
            if host.startswith("./"):
                assert (ROOT / host).exists(), volume
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name
    # Prometheus sends the token the web expects.
    assert services["prometheus"]["environment"]["METRICS_TOKEN"] == services["web"]["environment"]["METRICS_TOKEN"]
    assert "/prometheus/metrics_token" in services["prometheus"]["command"][0]
    assert "web" in services["web"]["environment"]["DJANGO_ALLOWED_HOSTS"]
    # One multiprocess directory shared by every process that counts.
    for name in APP_SERVICES:
        assert services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/run/switchboard-metrics", name
        assert "metrics:/run/switchboard-metrics" in services[name]["volumes"], name
    assert compose["volumes"]["metrics"]["driver_opts"]["type"] == "tmpfs"


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "deploy").rglob("*.yml")))
def test_deploy_yaml_parses(path: str) -> None:
    assert yaml.safe_load((ROOT / path).read_text())
