"""The one JSON error body, and Django's error handlers that answer with it.

    {"error": {"code": "not_found", "message": "Conversation not found.", "fields": {...}}, "trace_id": "..."}

`fields` appears only for validation errors. Used by the API's exception handler (`api.errors`, which
also maps Switchboard's errors to HTTP statuses), the event stream, the middleware (which also puts
every non-JSON error under /api/, such as Django's DEBUG pages, into this shape) and Django's
handler400/403/404/500 (named in `project.urls`).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse


def error_body(request: Any, code: str, message: str, fields: Any = None) -> dict[str, Any]:
    """The error shape, with the request's trace id (None before TraceIdMiddleware ran)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error, "trace_id": getattr(request, "trace_id", None)}


def error_response(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    """The error shape as JSON for the API (and API clients); a short plain page for the chat page and admin."""
    if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
        return JsonResponse(error_body(request, code, message), status=status)
    return HttpResponse(f"{status}: {message}", status=status, content_type="text/plain; charset=utf-8")


#: The code and message of an error answered by status alone (Django's handlers, the API's non-JSON errors).
STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The request could not be understood."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You may not do this."),
    404: ("not_found", "No such endpoint or object."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("request_too_large", "The request body is larger than the limit."),
    500: ("server_error", "Something went wrong on our side; quote the trace id to support."),
}


def status_error_response(request: HttpRequest, status: int) -> HttpResponse:
    """The error for `status` (`STATUS_ERRORS`; another status is named by its HTTP phrase)."""
    phrase = next((known.phrase for known in HTTPStatus if known.value == status), "Error")
    code, message = STATUS_ERRORS.get(status) or ("error", f"{phrase}.")
    return error_response(request, status, code, message)


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404 handler: the JSON error shape for the API, never an HTML page."""
    return status_error_response(request, 404)


def json_server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 handler, with the trace id to quote to support."""
    return status_error_response(request, 500)


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 400 handler (a body over the limit is 413)."""
    return status_error_response(request, 413 if isinstance(exception, RequestDataTooBig) else 400)


def json_permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 403 handler."""
    return status_error_response(request, 403)
