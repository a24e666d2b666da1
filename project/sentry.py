"""Sentry: errors from web and workers, tagged with trace id and run id, without PII.

Customer messages travel in task arguments and request bodies; they are scrubbed
before anything is sent, as are API keys and tokens (`project.tracing.secrets_mask`).
Error logs are breadcrumbs, not events: one failure is one event (Celery's).
"""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

from project.tracing import known_secrets, secrets_mask, trace_fields

SCRUBBED = "[scrubbed]"
#: Keys whose values are customer content or secrets, wherever they appear in an event.
SENSITIVE_KEYS = frozenset(
    {
        *("content", "message_content", "payload", "draft", "reply", "history", "args", "kwargs", "data"),
        *("authorization", "api_key", "openai_api_key", "password", "token", "cookies"),
    }
)


def sentry_init(*, dsn: str, environment: str, traces_sample_rate: float) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[
            DjangoIntegration(),
            CeleryIntegration(monitor_beat_tasks=False),
            LoggingIntegration(level=logging.INFO, event_level=None),
        ],
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        traces_sample_rate=traces_sample_rate,
        before_send=event_scrub,
        before_breadcrumb=breadcrumb_scrub,
    )


def event_scrub(event: Event, hint: Hint) -> Event:
    """Remove customer content and secrets from an event before it leaves the process."""
    tags = event.setdefault("tags", {})
    for name, value in trace_fields().items():
        if name in ("trace_id", "run_id"):
            tags.setdefault(name, value)
    return _scrub(event)


def breadcrumb_scrub(crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb:
    return _scrub(crumb)


def _scrub(value: Any, key: str = "") -> Any:
    if key.lower() in SENSITIVE_KEYS and value not in (None, "", [], {}):
        return SCRUBBED
    if isinstance(value, dict):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return secrets_mask(value, known_secrets())
    return value
