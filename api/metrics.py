"""GET /metrics: Prometheus' text format — every process's counters and histograms (multiprocess mode) and the state
gauges read at the scrape. Protected: a bearer token or basic auth from settings (project/settings_metrics.py)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from orchestration.metrics_state import StateCollector
from project.metrics import HostCollector, credentials_valid

LOOPBACK = ("127.0.0.1", "::1")


def metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """Why this request may not read the metrics (401 or 403, saying what is needed), or None."""
    if not settings.METRICS_TOKEN and not settings.METRICS_BASIC_AUTH:
        direct = "X-Forwarded-For" not in request.headers  # no proxy in between
        if settings.DEBUG and direct and request.META.get("REMOTE_ADDR") in LOOPBACK:
            return None
        return HttpResponse("Metrics are off: set METRICS_TOKEN or METRICS_BASIC_AUTH.\n", status=403)
    if credentials_valid(request.headers.get("Authorization", "")):
        return None
    refused = HttpResponse("Credentials needed to read the metrics.\n", status=401)
    refused["WWW-Authenticate"] = 'Basic realm="metrics"' if settings.METRICS_BASIC_AUTH else 'Bearer realm="metrics"'
    return refused


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    registry = CollectorRegistry()
    registry.register(HostCollector())
    registry.register(StateCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
