"""Trace id for every HTTP request (accepted from the caller or generated), the request size limit, and
the Content-Security-Policy's relaxation for the admin and the API docs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import sentry_sdk
from csp.constants import UNSAFE_INLINE
from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from project.otel import current_trace_id
from project.responses import error_response
from project.tracing import trace_context

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def trace_id_from_headers(traceparent: str | None, request_id: str | None) -> str:
    """The trace id of a request: W3C traceparent's trace-id, else X-Request-ID, else new."""
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match and match.group(1) != "0" * 32:
            return match.group(1)
    if request_id and _REQUEST_ID.match(request_id.strip()):
        return request_id.strip()
    return uuid.uuid4().hex


def request_trace_id(request: HttpRequest) -> str:
    """The trace id `TraceIdMiddleware` gave `request` (DRF's Request passes the attribute through)."""
    return request.trace_id  # type: ignore[attr-defined]  # set by TraceIdMiddleware, unknown to Django's types


class TraceIdMiddleware:
    """Sets `request.trace_id` and answers it as `X-Trace-Id` on every response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # With OpenTelemetry on, the current span's trace id (it already honours traceparent).
        trace_id = current_trace_id() or trace_id_from_headers(
            request.headers.get("traceparent"), request.headers.get("X-Request-ID")
        )
        request.trace_id = trace_id  # type: ignore[attr-defined]  # read back with request_trace_id
        sentry_sdk.set_tag("trace_id", trace_id)
        with trace_context(trace_id=trace_id, run_id=None, agent=None, step=None, attempt=None):
            response = self.get_response(request)
        response["X-Trace-Id"] = trace_id
        return response


class RequestSizeLimitMiddleware:
    """Refuse a body larger than REQUEST_MAX_BYTES with 413 before reading it (JSON under /api/)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            return error_response(
                request, 413, "request_too_large", f"The request body is {length} bytes; the limit is {limit}."
            )
        return self.get_response(request)


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware (settings.CONTENT_SECURITY_POLICY), extended where django-csp says to
    extend it: under CSP_INLINE_STYLE_PATHS (the admin, the API docs) inline <style> is allowed, which
    Django's admin templates and drf-spectacular's docs pages carry, and Redoc's search worker (blob:).
    Script stays 'self' everywhere."""

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if parts.update is None and request.path_info.startswith(settings.CSP_INLINE_STYLE_PATHS):
            parts.update = {"style-src": [UNSAFE_INLINE], "worker-src": ["blob:"]}
        return parts
