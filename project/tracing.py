"""One trace id from the HTTP request through every task, on every log line.

The trace context (trace id, run id, agent, step, attempt) lives in context
variables: the web middleware sets it per request, a Celery signal per task
(from the message's `trace_id` header), and `before_task_publish` copies it into
every message a task or view sends — chains, chords, retries, replays, review
resumptions and supervisor actions alike. Logging adds it to every record and,
with LOG_FORMAT=json, writes one JSON object per line. Secrets are masked in
every record, and task arguments (envelopes carry customer messages) never
reach the logs, Flower or Sentry: messages carry a summary as `argsrepr`.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sentry_sdk
from celery import signals
from django.conf import settings

FIELDS = ("trace_id", "run_id", "agent", "step", "attempt")
_context: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"switchboard_{name}", default=None) for name in FIELDS
}


def trace_get(name: str = "trace_id") -> str | None:
    return _context[name].get()


def trace_fields() -> dict[str, str]:
    return {name: value for name in FIELDS if (value := _context[name].get()) is not None}


def trace_set(**fields: Any) -> list[tuple[contextvars.ContextVar, contextvars.Token]]:
    tokens = []
    for name, value in fields.items():
        var = _context[name]
        tokens.append((var, var.set(None if value is None else str(value))))
    return tokens


def trace_reset(tokens: list[tuple[contextvars.ContextVar, contextvars.Token]]) -> None:
    for var, token in reversed(tokens):
        var.reset(token)


@contextmanager
def trace_context(**fields: Any) -> Iterator[None]:
    """Bind trace fields (trace_id, run_id, agent, step, attempt) for a block."""
    tokens = trace_set(**fields)
    try:
        yield
    finally:
        trace_reset(tokens)


def trace_clear() -> None:
    for var in _context.values():
        var.set(None)


# --- W3C trace context for outbound requests ----------------------------------------------------

_W3C_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def trace_id_w3c(trace_id: str) -> str:
    """A trace id as a W3C trace id: as it is when it came from a traceparent (32 lower-case hex digits, not all zero),
    else a stable one derived from it (the mapping is logged, so that the two can be matched)."""
    if _W3C_TRACE_ID.match(trace_id) and trace_id.strip("0"):
        return trace_id
    derived = hashlib.sha256(trace_id.encode()).hexdigest()[:32]
    logging.getLogger(__name__).info("trace id %s is sent on as the W3C trace id %s", trace_id, derived)
    return derived


def traceparent(trace_id: str) -> str:
    """A W3C traceparent header for one outbound request (a remote agent's): the trace id, a new span id, sampled."""
    return f"00-{trace_id_w3c(trace_id)}-{secrets.token_hex(8)}-01"


# --- Logging -------------------------------------------------------------------------


class TraceContextFilter(logging.Filter):
    """Adds the trace fields to every record (as attributes, for formatters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, _context[name].get())
        return True


_SECRET_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),  # OpenAI-style API keys
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(bearer|token|basic)\s+[A-Za-z0-9._\-=+/]+"),
    re.compile(r"(?i)\b(token|bearer)\s+[0-9a-f]{40}\b"),  # DRF tokens
    re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
]


def secrets_mask(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: (m.group(1) if m.lastindex else "") + "[redacted]", text)
        else:
            text = pattern.sub("[redacted]", text)
    return text


def known_secrets() -> tuple[str, ...]:
    """The configured secrets' values: the model's key, Django's, Sentry's DSN, remote agents' tokens, the shop API's
    token and the MCP servers' secrets (both read from the environment variables their settings name)."""
    candidates = (getattr(settings, "OPENAI_API_KEY", ""), settings.SECRET_KEY, getattr(settings, "SENTRY_DSN", ""))
    remote_tokens = tuple(agent["token"] for agent in getattr(settings, "A2A_REMOTE_AGENTS", {}).values())
    named = [getattr(settings, "COMMERCE_API_TOKEN_ENV", "")]
    for server in getattr(settings, "MCP_SERVERS", {}).values():
        named += [*server.get("headers", {}).values(), *server.get("env", {}).values()]
    from_environment = tuple(os.environ.get(name, "") for name in named if name)
    return tuple(secret for secret in (*candidates, *remote_tokens, *from_environment) if secret)


class RedactSecretsFilter(logging.Filter):
    """Masks API keys, tokens and configured secrets in the final message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = secrets_mask(message, known_secrets())
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = secrets_mask(logging.Formatter().formatException(record.exc_info), known_secrets())
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace fields, duration, exception.

    Only these fields are written: extras such as Celery's `data` (which holds task
    arguments) are never dumped.
    """

    EXTRA = ("duration_ms", "status", "task_id", "task_name", "worker")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*FIELDS, *self.EXTRA):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable, with the trace id and run when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, None))
        return f"{line} [{context}]" if context else line


# --- Celery ----------------------------------------------------------------------------


def envelope_summary(args: Any) -> str:
    """What a task message shows instead of its arguments: ids and routing, no customer text."""
    first = args[0] if isinstance(args, list | tuple) and args else None
    items = first if isinstance(first, list) else [first]
    parts = []
    for item in items:
        if isinstance(item, dict) and "run_id" in item:
            parts.append(f"envelope(run={item.get('run_id')}, hop={item.get('hop')}, slip={item.get('slip')})")
        elif isinstance(item, str):
            parts.append(repr(item[:64]))
        else:
            parts.append(type(item).__name__)
    return "(" + ", ".join(parts) + ")"


def connect_celery_signals() -> None:
    signals.before_task_publish.connect(_before_publish, weak=False)
    signals.task_prerun.connect(_task_prerun, weak=False)
    signals.task_postrun.connect(_task_postrun, weak=False)


def _before_publish(sender: Any = None, headers: dict | None = None, body: Any = None, **kwargs: Any) -> None:
    if headers is None:
        return
    trace_id = trace_get() or _envelope_field(body, "trace_id")
    if trace_id and not headers.get("trace_id"):
        headers["trace_id"] = trace_id
    if isinstance(body, list | tuple) and body:
        headers["argsrepr"] = envelope_summary(body[0])
        headers["kwargsrepr"] = "{}"


def _envelope_field(body: Any, name: str) -> str | None:
    args = body[0] if isinstance(body, list | tuple) and body else None
    first = args[0] if isinstance(args, list | tuple) and args else None
    if isinstance(first, list) and first:
        first = first[0]
    return first.get(name) if isinstance(first, dict) else None


def _task_prerun(sender: Any = None, task: Any = None, args: Any = None, **kwargs: Any) -> None:
    request = getattr(task, "request", None)
    trace_id = getattr(request, "trace_id", None) or _envelope_field([args], "trace_id")
    run_id = _envelope_field([args], "run_id")
    if not run_id and isinstance(args, list | tuple) and args and isinstance(args[0], str):
        run_id = args[0]  # supervisor tasks take a run id
    trace_clear()
    trace_set(trace_id=trace_id, run_id=run_id)
    _sentry_tags(trace_id=trace_id, run_id=run_id)


def _task_postrun(**kwargs: Any) -> None:
    trace_clear()


def _sentry_tags(**tags: Any) -> None:
    for name, value in tags.items():
        if value:
            sentry_sdk.set_tag(name, value)
