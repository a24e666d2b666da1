"""The API's exception handler: every error in the one JSON shape (`project.responses.error_body`).

Switchboard's own errors (`project.errors`) get their HTTP status from one table here, `ERROR_STATUSES`;
DRF's exceptions keep DRF's statuses. A 4xx error's message is ours, written for the caller (what was wrong with the
request); a 5xx error's message may quote what a system behind us said (a shop's API error body, an LLM or MCP
server's error), so the caller gets a fixed sentence for its status and the message goes to the log, with the trace
id the response carries.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from project.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RunHalted,
    SwitchboardError,
    TransientError,
)
from project.responses import error_body

logger = logging.getLogger(__name__)

#: The HTTP status of each kind of Switchboard error, most specific class first: the first class the
#: error is an instance of decides. Subclasses answer with their base's status.
ERROR_STATUSES: tuple[tuple[type[SwitchboardError], int], ...] = (
    (PermissionDenied, 403),
    (InvalidInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (RunHalted, 409),
    (TransientError, 503),
    (SwitchboardError, 500),
)


def error_status(exc: SwitchboardError) -> int:
    """The HTTP status the API answers `exc` with."""
    return next(status for cls, status in ERROR_STATUSES if isinstance(exc, cls))


#: What the caller reads for a Switchboard error answered with a 5xx status (the error's own message is logged).
PUBLIC_SERVER_ERRORS = {
    503: "A service this request needs is unavailable right now; try again shortly.",
    500: "The request could not be completed.",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    if isinstance(exc, SwitchboardError):
        status = error_status(exc)
        message = PUBLIC_SERVER_ERRORS.get(status, exc.message)
        if status >= 500:
            logger.warning("answered %d %s: %s", status, exc.code, exc.message)
        return Response(error_body(request, exc.code, message), status=status)
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
        detail: Any = exc.detail
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
