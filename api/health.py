"""Liveness and readiness: database, broker and workers."""

from __future__ import annotations

import time
from typing import Any

from django.db import DatabaseError, connection
from kombu import Connection
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

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
        with Connection(app.conf.broker_url, connect_timeout=1, transport_options={"socket_timeout": 1}) as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
            conn.default_channel.client.ping()  # type: ignore[attr-defined]  # a Redis transport channel
    except (OSError, BrokerError, RedisError) as exc:
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


def health_report() -> tuple[bool, dict[str, Any]]:
    checks = {"database": check_database(), "broker": check_broker()}
    checks["workers"] = check_workers() if checks["broker"]["ok"] else {"ok": False, "error": "broker is down"}
    healthy = all(check["ok"] for check in checks.values())
    return healthy, {"status": "ok" if healthy else "unavailable", "checks": checks}
