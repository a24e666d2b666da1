"""OpenTelemetry, on when OTEL_EXPORTER_OTLP_ENDPOINT is set: spans for HTTP requests,
Celery tasks and LLM calls, exported over OTLP/HTTP, in one trace per request.

The web process instruments Django at settings time; each worker process
instruments Celery when it starts (after a prefork fork: export threads do not
survive one). When OTel is on, the trace id Switchboard uses is the span's, so
logs, runs and spans agree.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from django.conf import settings

_state: dict[str, Any] = {"pid": None, "tracer": None}


def otel_enabled() -> bool:
    return _state["pid"] == os.getpid()


def otel_init(*, endpoint: str, service_name: str, django: bool = False, celery: bool = False) -> None:
    """Set up a tracer provider for this process (once per process)."""
    if otel_enabled():
        return
    # The SDK and its instrumentations are imported only when OTel is on: they cost every process start otherwise.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    trace.set_tracer_provider(provider)
    _state.update(pid=os.getpid(), tracer=trace.get_tracer("switchboard"))
    if django:
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        DjangoInstrumentor().instrument()
    if celery:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()


def otel_web_init() -> None:
    """Called by asgi.py / wsgi.py before Django loads its middleware."""
    if settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        # Celery too: publishing a task carries the request's trace context to the worker.
        otel_init(
            endpoint=settings.OTEL_EXPORTER_OTLP_ENDPOINT,
            service_name=settings.OTEL_SERVICE_NAME,
            django=True,
            celery=True,
        )


def otel_worker_init(*, prefork_parent: bool) -> None:
    """Called when a worker (or each prefork child) starts: export threads do not survive a fork."""
    if settings.OTEL_EXPORTER_OTLP_ENDPOINT and not prefork_parent:
        otel_init(endpoint=settings.OTEL_EXPORTER_OTLP_ENDPOINT, service_name=settings.OTEL_SERVICE_NAME, celery=True)


def current_trace_id() -> str | None:
    if not otel_enabled():
        return None
    from opentelemetry import trace  # loaded already: OTel is on (see otel_init)

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[None]:
    """A span around a block when OTel is on; nothing otherwise."""
    if not otel_enabled():
        with nullcontext():
            yield
        return
    with _state["tracer"].start_as_current_span(name, attributes={k: str(v) for k, v in attributes.items()}):
        yield
