"""One JSON error shape for the whole API, and the handler that produces it.

    {"error": {"code": "not_found", "message": "Conversation not found.", "fields": {...}}, "trace_id": "..."}

`fields` appears only for validation errors. Switchboard's own errors
(`project.errors`) and DRF's are both mapped here.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from project.errors import SwitchboardError


def error_body(request: Any, code: str, message: str, fields: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error, "trace_id": getattr(request, "trace_id", None)}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    if isinstance(exc, SwitchboardError):
        return Response(error_body(request, exc.code, exc.message), status=exc.http_status)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body(request, "request_too_large", "The request body is larger than the limit."), status=413
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handler answers (JSON for the API)
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict) and set(detail) == {"non_field_errors"}:
            detail = detail["non_field_errors"]
        if isinstance(detail, dict):
            first = next(iter(detail.items()))
            message = f"{first[0]}: {_first_text(first[1])}"
            response.data = error_body(request, "invalid", message, fields=detail)
        else:
            response.data = error_body(request, "invalid", _first_text(detail))
        return response
    code = getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else code
    response.data = error_body(request, code, _first_text(getattr(exc, "detail", str(exc))))
    return response


def _first_text(detail: Any) -> str:
    if isinstance(detail, list | tuple) and detail:
        return _first_text(detail[0])
    if isinstance(detail, dict) and detail:
        return _first_text(next(iter(detail.values())))
    return str(detail)


def error_response(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    """The error shape as JSON for the API (and API clients); a short plain page for the chat page and admin."""
    if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
        return JsonResponse(error_body(request, code, message), status=status)
    return HttpResponse(f"{status}: {message}", status=status, content_type="text/plain; charset=utf-8")


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404 handler: the JSON error shape for the API, never an HTML page."""
    return error_response(request, 404, "not_found", "No such endpoint or object.")


def json_server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 handler, with the trace id to quote to support."""
    return error_response(
        request, 500, "server_error", "Something went wrong on our side; quote the trace id to support."
    )


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return error_response(request, 413, "request_too_large", "The request body is larger than the limit.")
    return error_response(request, 400, "bad_request", "The request could not be understood.")


def json_permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 403, "permission_denied", "You may not do this.")
