"""OpenAPI: the error shape on every operation, and X-Trace-Id on every response.

`error_responses_hook` (a drf-spectacular post-processing hook) documents the
statuses any operation can answer besides its own: 400 for bodies, 401/403,
404 for paths with ids, 405, 413/415 for bodies, 429 and 500 — all with the one
error shape (`project.responses.error_body`).
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "machine-readable, e.g. not_found, invalid, throttled"},
                "message": {"type": "string", "description": "a sentence saying what is wrong"},
                "fields": {"type": "object", "additionalProperties": True, "description": "per-field errors"},
            },
            "required": ["code", "message"],
        },
        "trace_id": {"type": "string", "nullable": True, "description": "quote it to support"},
    },
    "required": ["error", "trace_id"],
}
TRACE_HEADER = {
    "X-Trace-Id": {
        "description": "The request's trace id (from traceparent or X-Request-ID, else generated).",
        "schema": {"type": "string"},
    }
}
ERRORS = {
    "400": "The request is invalid (see error.fields).",
    "401": "No or bad credentials.",
    "403": "Authenticated, but not allowed (not a customer, not a reviewer, or CSRF failed).",
    "404": "No such object, or not yours.",
    "405": "Method not allowed.",
    "409": "Conflicts with the current state.",
    "413": "The request body is too large.",
    "415": "Unsupported media type (send application/json).",
    "429": "Too many requests: wait Retry-After seconds.",
    "500": "A failure on our side; quote the trace id.",
}


EVENTS_OPERATION = {
    "operationId": "runs_events",
    "summary": "Live progress of a run as Server-Sent Events",
    "description": (
        "`text/event-stream` with events `run` (`{status}`; a stopped run's also has `reason`, the public "
        "reason `{code, message}` of `GET /api/v1/runs/{run_id}/`), `step` (`{agent, hop, status}`: an agent "
        "started, finished — with `duration_ms` — failed or is retrying), `review` (`{id, reason}`: a person is "
        "checking; `{id, status}`: decided, or cancelled with its run), `message` "
        "(`{id, role, content, created_at}`: a reply or notice) and `end` (`{status, run}`: the run is over — "
        "completed, failed, timed_out or cancelled; the stream closes). Events carry only what the customer may "
        "see: no "
        "internal reasons, errors, models, prompts, tokens or costs. Data is JSON; every event has an id, and "
        "a reconnecting client "
        "sending `Last-Event-ID` gets only newer events. A connection lasts at most SSE_MAX_SECONDS (120 s); "
        "EventSource reconnects by itself. Without SSE, poll `GET /api/v1/runs/{run_id}/` (every second or "
        "so) until the status is completed, failed, timed_out or cancelled, then read the messages."
    ),
    "tags": ["runs"],
    "parameters": [
        {"in": "path", "name": "run_id", "required": True, "schema": {"type": "string", "format": "uuid"}},
        {"in": "header", "name": "Last-Event-ID", "required": False, "schema": {"type": "string"}},
    ],
    "security": [{"tokenAuth": []}, {"cookieAuth": []}],
    "responses": {
        "200": {"description": "an event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    },
}


def error_responses_hook(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    # The SSE endpoint is an async Django view (no DRF view to introspect): documented here.
    result.setdefault("paths", {})["/api/v1/runs/{run_id}/events/"] = {"get": EVENTS_OPERATION}
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            wanted = ["401", "403", "405", "429", "500"]
            if "{" in path:
                wanted.append("404")
            if method in ("post", "put", "patch"):
                wanted += ["400", "409", "413", "415"]
            if path.endswith("/health/"):
                wanted = ["405", "429", "500"]
            for status in wanted:
                response = responses.setdefault(status, {"description": ERRORS[status]})
                response.setdefault("content", {"application/json": {"schema": error_ref}})
                if status == "429":
                    response.setdefault("headers", {})["Retry-After"] = {
                        "description": "seconds to wait",
                        "schema": {"type": "integer"},
                    }
            for response in responses.values():
                response.setdefault("headers", {}).update(TRACE_HEADER)
    return result
