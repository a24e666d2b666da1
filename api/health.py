"""Liveness and readiness: database, broker and workers — cheap enough for an unauthenticated endpoint.

The broker check is a Redis ping on the process's pooled connection, made on every call (the broker
being down must show at once). The database check (a pool connection) and the worker check (a Celery
ping broadcast, which waits WORKER_PING_TIMEOUT for answers) are reused for HEALTH_CACHE_SECONDS by
every thread of the process: when they are due, one caller refreshes them while the others answer
with the last result. Anonymous callers see whether each check passed; staff also see the details
(latencies, worker names, errors).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from project.caching import redis_client
from project.celery import app

WORKER_PING_TIMEOUT = 1.0


def check_database() -> dict[str, Any]:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "latency_ms": round((time.monotonic() - started) * 1000, 1)}


def check_broker() -> dict[str, Any]:
    started = time.monotonic()
    try:
        redis_client(app.conf.broker_url, 1.0).ping()
    except (OSError, RedisError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "latency_ms": round((time.monotonic() - started) * 1000, 1)}


def check_workers() -> dict[str, Any]:
    try:
        replies = app.control.ping(timeout=WORKER_PING_TIMEOUT) or []
    except (OSError, BrokerError, RedisError) as exc:
        return {"ok": False, "count": 0, "error": f"{type(exc).__name__}: {exc}"}
    names = sorted(name for reply in replies for name in reply)
    if not names:
        return {"ok": False, "count": 0, "error": f"no worker answered a ping within {WORKER_PING_TIMEOUT}s"}
    return {"ok": True, "count": len(names), "workers": names}


class Reused:
    """A check made at most once per HEALTH_CACHE_SECONDS by this process: when it is due, one caller
    makes it while the others answer with the last result (only the very first callers wait for it)."""

    def __init__(self, check: Callable[[], dict[str, Any]]) -> None:
        self.check = check
        self.result: dict[str, Any] | None = None
        self.made_at = 0.0
        self.lock = threading.Lock()

    def get(self) -> dict[str, Any]:
        result = self.result
        if result is not None and time.monotonic() - self.made_at < settings.HEALTH_CACHE_SECONDS:
            return result
        if not self.lock.acquire(blocking=result is None):
            assert result is not None  # a non-blocking acquire fails only while another caller refreshes
            return result
        try:
            if self.result is not None and self.result is not result:  # made while this caller waited
                return self.result
            self.result, self.made_at = self.check(), time.monotonic()
            return self.result
        finally:
            self.lock.release()


DATABASE = Reused(check_database)
WORKERS = Reused(check_workers)


def public(check: dict[str, Any]) -> dict[str, Any]:
    """What anyone may see of a check: whether it passed."""
    return {"ok": check["ok"]}


def health_report(*, details: bool) -> tuple[bool, dict[str, Any]]:
    """(healthy, the report); `details` (latencies, worker names, errors) for staff only."""
    broker = check_broker()
    workers = WORKERS.get() if broker["ok"] else {"ok": False, "count": 0, "error": "broker is down"}
    checks = {"database": DATABASE.get(), "broker": broker, "workers": workers}
    healthy = all(check["ok"] for check in checks.values())
    if not details:
        checks = {name: public(check) for name, check in checks.items()}
    return healthy, {"status": "ok" if healthy else "unavailable", "checks": checks}
