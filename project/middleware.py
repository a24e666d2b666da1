"""Trace id for every HTTP request (accepted from the caller or generated), the request size limit, the API's
errors in the one JSON shape in every mode, a 503 while the database cannot be reached; the
Content-Security-Policy's relaxation for the admin and the API docs."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import sentry_sdk
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from csp.constants import UNSAFE_INLINE
from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from project.otel import current_trace_id
from project.responses import error_response, status_error_response
from project.tracing import trace_context

logger = logging.getLogger(__name__)

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


#: Headers an error response keeps when it is put into the JSON shape.
KEPT_ERROR_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def api_error_as_json(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """`response`, or, when it is an error under /api/ that is not JSON, the JSON error for its status."""
    if (
        response.status_code < 400
        or not request.path.startswith("/api/")
        or response.get("Content-Type", "").startswith("application/json")
    ):
        return response
    replaced = status_error_response(request, response.status_code)
    for header in KEPT_ERROR_HEADERS:
        if header in response:
            replaced[header] = response[header]
    return replaced


class ApiJsonErrorsMiddleware:
    """Every error answered under /api/ is the JSON error shape, DEBUG on or off.

    The views and handlers answer JSON already, but with DEBUG on Django answers some errors itself with
    HTML pages: the technical 404 page (unknown paths), the 500 page with its traceback, settings and
    request (any unexpected error, or a 400 for a suspicious request). Such a response is replaced by the
    error for its status (`project.responses.STATUS_ERRORS`). Django has logged the error, and told Sentry,
    before this runs: developers still find the traceback in the log, never in a response. Sync and async
    (it reads no body): it makes no async view run in a thread.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return api_error_as_json(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        return api_error_as_json(request, await self.get_response(request))


#: How soon a client may try again after a 503 for an unreachable database (seconds).
DATABASE_RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware:
    """A database that cannot be reached (restarting, failing over, a pool with no connection to give within
    DB_POOL_TIMEOUT_SECONDS) is a 503 with Retry-After — the JSON error under /api/ — not a 500: nothing was
    written (each request is one transaction, or none), and the client may send the same request again (a message
    POST with its Idempotency-Key is stored once)."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable, answered 503: %s", exception)
        response = error_response(
            request, 503, "unavailable", "The service is briefly unavailable; please try again in a few seconds."
        )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response


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
