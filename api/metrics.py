"""GET /metrics: Prometheus' text format — every process's counters and histograms (multiprocess mode) and the state
gauges read at the scrape. Protected: a bearer token or basic auth from settings (project/settings_metrics.py)."""

from __future__ import annotations

import base64
import binascii
import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from orchestration.metrics_state import StateCollector

LOOPBACK = ("127.0.0.1", "::1")


def metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """Why this request may not read the metrics (401 or 403, saying what is needed), or None."""
    token, basic = settings.METRICS_TOKEN, settings.METRICS_BASIC_AUTH
    header = request.headers.get("Authorization", "")
    if not token and not basic:
        if not settings.IS_PRODUCTION and request.META.get("REMOTE_ADDR") in LOOPBACK:
            return None
        return HttpResponse("Metrics are off: set METRICS_TOKEN or METRICS_BASIC_AUTH.\n", status=403)
    scheme, _, credentials = header.partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(credentials.encode(), token.encode()):
        return None
    if basic and scheme.lower() == "basic":
        try:
            given = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            given = b""
        if hmac.compare_digest(given, basic.encode()):
            return None
    refused = HttpResponse("Credentials needed to read the metrics.\n", status=401)
    refused["WWW-Authenticate"] = 'Basic realm="metrics"' if basic else 'Bearer realm="metrics"'
    return refused


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(StateCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
