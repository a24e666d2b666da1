"""Shared fixtures: the test database URL, a real Celery worker, customers, the live API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.http import ApiClient
from tests.workers import WorkerProcess

(Path(__file__).resolve().parent.parent / ".run").mkdir(exist_ok=True)

RUN_SETTLED = ("completed", "failed", "timed_out", "cancelled", "awaiting_review")


@pytest.fixture(scope="session")
def database_url(django_db_setup: Any, django_db_blocker: Any) -> str:
    """A URL for the test database pytest-django created, for worker subprocesses."""
    from django.db import connection

    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{settings.get('HOST') or '127.0.0.1'}:{settings.get('PORT') or 5432}/{settings['NAME']}"


def queues_purge() -> None:
    from project.celery import app

    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in ("default", "llm"):
            channel.queue_purge(queue)


@pytest.fixture(scope="session")
def worker(database_url: str) -> Iterator[WorkerProcess]:
    """One real Celery worker (prefork, both queues) for the whole session."""
    queues_purge()
    process = WorkerProcess(database_url, name="session").start()
    yield process
    process.stop()


@pytest.fixture
def make_customer(transactional_db: Any) -> Callable[..., tuple[Any, str]]:
    from api.services import api_token_get_or_create
    from conversations.services import customer_create, order_create_demo

    counter = iter(range(1000))

    def make(email: str | None = None, *, name: str = "Test Customer", orders: int = 0) -> tuple[Any, str]:
        customer = customer_create(email=email or f"customer{next(counter)}@example.com", name=name)
        if orders:
            order_create_demo(customer=customer, count=orders)
        return customer, api_token_get_or_create(user=customer.user)

    return make


@pytest.fixture
def api(live_server: Any) -> Callable[[str | None], ApiClient]:
    def client(token: str | None = None) -> ApiClient:
        return ApiClient(live_server.url + "/api/v1", token)

    return client


def run_wait(run_id: object, timeout: float = 30.0, statuses: tuple[str, ...] = RUN_SETTLED) -> Any:
    """Poll the database until the run reaches one of `statuses` (bounded)."""
    from orchestration.models import Run

    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.get(id=run_id)
        if run.status in statuses:
            return run
        if time.monotonic() > deadline:
            steps = list(run.steps.values_list("key", "status", "attempt", "error"))
            raise AssertionError(f"run {run_id} still {run.status} after {timeout}s; steps: {steps}")
        time.sleep(0.1)
