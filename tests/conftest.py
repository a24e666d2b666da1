"""Shared fixtures: the test database URL, a real Celery worker, customers, the live API, the fake shop API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.core.management.base import CommandError
from django.core.management.sql import emit_post_migrate_signal
from django.db import DatabaseError, connection, connections, transaction
from django.test import TransactionTestCase, override_settings
from django.utils import timezone

from api.services import api_token_get_or_create
from conversations.models import Message, Order
from conversations.services import conversation_create, customer_create, message_create, order_create_demo
from harness.fake_commerce import TOKEN as SHOP_TOKEN
from harness.fake_commerce import FakeCommerce
from harness.fake_openai import SHIPPING_ANSWERS, FakeOpenAI
from harness.processes import SupervisorProcess, WorkerProcess, web_server
from orchestration.models import Run
from orchestration.runs import run_start
from project.celery import app
from tests.agents_for_tests import PATHS as TEST_AGENT_PATHS
from tests.http import ApiClient
from tests.replay_candidates import PATHS as TEST_PROMPT_PATHS

ROOT_DIR = Path(__file__).resolve().parent.parent
(ROOT_DIR / ".run").mkdir(exist_ok=True)

# The fault agents and the replay tests' prompt versions, here and in every worker the tests start.
django_settings.EXTRA_AGENTS = TEST_AGENT_PATHS
django_settings.PROMPT_CANDIDATES = TEST_PROMPT_PATHS
WORKER_ENV = {
    "SWITCHBOARD_EXTRA_AGENTS": ",".join(TEST_AGENT_PATHS),
    "SWITCHBOARD_PROMPT_CANDIDATES": ",".join(TEST_PROMPT_PATHS),
    # A price for the offline model, so that cost accounting and cost budgets are exercised.
    "LLM_PRICES_JSON": '{"offline-deterministic": [1.0, 2.0]}',
    "AGENT_RETRY_BACKOFF_SECONDS": "0.2",
    # Retries are sent by the supervisor when due: a quicker tick for quicker tests.
    "SUPERVISOR_TICK_SECONDS": "0.25",
}


_flush = TransactionTestCase._fixture_teardown


def _flush_quick(self: TransactionTestCase) -> None:
    """Empty every table as Django's flush does, with DELETE instead of TRUNCATE on PostgreSQL: TRUNCATE makes new files
    for every table and index (0.2 s for our 27 tables, after each of hundreds of tests), DELETE of the few rows a test
    wrote takes a millisecond. Django's foreign keys are deferrable, so the order does not matter in one transaction.
    Then post_migrate, as flush sends it (content types and permissions come back)."""
    for db_name in self._databases_names(include_mirrors=False):  # type: ignore[attr-defined]
        connection_ = connections[db_name]
        if connection_.vendor != "postgresql":
            _flush(self)
            continue
        # The demo help centre stays (no test changes it outside a rolled-back transaction): reloading it after every
        # test would cost 50 ms each.
        tables = [
            table
            for table in connection_.introspection.django_table_names(only_existing=True, include_views=False)
            if not table.startswith("knowledge_")
        ]
        with transaction.atomic(using=db_name), connection_.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            cursor.execute("; ".join(f"DELETE FROM {connection_.ops.quote_name(table)}" for table in tables))
        emit_post_migrate_signal(verbosity=0, interactive=False, db=db_name)


def _flush_retried(self: TransactionTestCase) -> None:
    """The flush after a transactional test can meet a worker's heartbeat or a supervisor's tick in a transaction that
    locks rows in another order; PostgreSQL then ends one of them as a deadlock, sometimes the flush, and the next test
    would find this one's rows. Flush again: the others retry too."""
    for attempt in range(1, 6):
        try:
            _flush_quick(self)
            return
        except (CommandError, DatabaseError):
            if attempt == 5:
                raise
            time.sleep(0.2 * attempt)


TransactionTestCase._fixture_teardown = _flush_retried  # type: ignore[method-assign]

RUN_SETTLED = ("completed", "failed", "timed_out", "cancelled", "awaiting_review")


@pytest.fixture(autouse=True)
def throttle_counters_reset() -> None:
    """Every test starts with fresh throttle counters (they live in Redis, like in production)."""

    client = redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])
    for key in client.scan_iter("switchboard:*throttle_*"):
        client.delete(key)


@pytest.fixture(scope="module")
def stack(request: Any, database_url: str) -> Iterator[tuple[Any, WorkerProcess]]:
    """The web app under uvicorn (ASGI, as `make run` serves it) and a worker, for one module
    (extra settings from the module's STACK_ENV)."""
    broker_reset()
    env = {**WORKER_ENV, **getattr(request.module, "STACK_ENV", {})}
    web = web_server(database_url, env=env).start()
    worker = WorkerProcess(database_url, name="stack", env=env).start()
    supervisor = SupervisorProcess(database_url, env=env).start()
    yield web, worker
    supervisor.stop()
    worker.stop()
    web.stop()


@pytest.fixture(scope="session")
def database_url(django_db_setup: Any, django_db_blocker: Any) -> str:
    """A URL for the test database pytest-django created, for worker subprocesses."""

    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{settings.get('HOST') or '127.0.0.1'}:{settings.get('PORT') or 5432}/{settings['NAME']}"


def broker_reset() -> None:
    """Drop queued and unacknowledged messages left by earlier tests (killed workers)."""

    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in ("default", "llm"):
            channel.queue_purge(queue)
        channel.client.delete(channel.unacked_key, channel.unacked_index_key)


@pytest.fixture(scope="module")
def worker(database_url: str) -> Iterator[WorkerProcess]:
    """A real Celery worker (prefork, both queues) for the tests of one module, and the supervisor beside it (as in
    production: deadlines and recovery are the supervisor's)."""
    broker_reset()
    process = WorkerProcess(database_url, name="module", env=WORKER_ENV).start()
    supervisor = SupervisorProcess(database_url, env=WORKER_ENV).start()
    yield process
    supervisor.stop()
    process.stop()


@pytest.fixture
def supervisor_factory(database_url: str) -> Iterator[Callable[..., SupervisorProcess]]:
    """Start supervisor processes (`manage.py supervise`) with extra settings; all are stopped after the test."""
    started: list[SupervisorProcess] = []

    def start(env: dict[str, str] | None = None) -> SupervisorProcess:
        process = SupervisorProcess(database_url, env={**WORKER_ENV, **(env or {})}).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def worker_factory(database_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers with extra settings (environment), and with the first one a supervisor (retries, deadlines and
    recovery are the supervisor's; `supervise=False` leaves it out); all are stopped after the test."""
    started: list[WorkerProcess | SupervisorProcess] = []
    broker_reset()

    def start(
        name: str = "fault", env: dict[str, str] | None = None, supervise: bool = True, **kwargs: Any
    ) -> WorkerProcess:
        if supervise and not any(isinstance(p, SupervisorProcess) for p in started):
            # Not waited for: it is up long before the worker that starts next (and a tick is idempotent).
            started.append(SupervisorProcess(database_url, env={**WORKER_ENV, **(env or {})}).start(wait=False))
        process = WorkerProcess(database_url, name=name, env={**WORKER_ENV, **(env or {})}, **kwargs).start()
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()
    broker_reset()


@pytest.fixture
def make_customer(transactional_db: Any) -> Iterator[Callable[..., tuple[Any, str]]]:

    counter = iter(range(1000))

    def make(email: str | None = None, *, name: str = "Test Customer", orders: int = 0) -> tuple[Any, str]:
        customer = customer_create(email=email or f"customer{next(counter)}@example.com", name=name)
        if orders:
            order_create_demo(customer=customer, count=orders)
        return customer, api_token_get_or_create(user=customer.user)

    yield make
    runs_settle()


def runs_settle(timeout: float = 30.0) -> None:
    """Before the test database is flushed, let workers finish the runs they are working on: a flush
    (TRUNCATE) racing a step's row locks can deadlock and leave the next test with this one's data."""

    deadline = time.monotonic() + timeout
    while Run.objects.filter(status=Run.Status.RUNNING).exists() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def api(live_server: Any) -> Callable[[str | None], ApiClient]:
    def client(token: str | None = None) -> ApiClient:
        return ApiClient(live_server.url + "/api/v1", token)

    return client


@pytest.fixture
def start_run(make_customer: Callable[..., tuple[Any, str]]) -> Callable[..., Any]:
    """Start a run the way the API does (stored message, dispatch after commit), with an
    optional routing slip and budget."""

    def start(
        content: str = "How long does shipping take?",
        *,
        slip: list | None = None,
        budget: dict | None = None,
        customer: Any = None,
        trace_id: str | None = None,
    ) -> Any:
        customer = customer or make_customer()[0]
        with transaction.atomic():
            conversation = conversation_create(customer=customer)
            message, _ = message_create(conversation_id=conversation.id, role=Message.Role.CUSTOMER, content=content)
            run = run_start(
                conversation=conversation,
                message=message,
                trace_id=trace_id or f"test{conversation.id.hex[:28]}",
                budget=budget,
                slip=slip,
            )
        return run

    return start


def order_add(customer: Any, order_id: str, description: str, total: str, status: str = "delivered") -> Any:
    """A demo order of the customer's, placed five days ago (and delivered three days ago, if delivered)."""

    placed_at = timezone.now() - timedelta(days=5)
    return Order.objects.create(
        id=order_id,
        customer=customer,
        description=description,
        total=Decimal(total),
        status=status,
        placed_at=placed_at,
        delivered_at=placed_at + timedelta(days=2) if status == "delivered" else None,
    )


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll until `condition()` is truthy and return it (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def run_wait(run_id: object, timeout: float = 30.0, statuses: tuple[str, ...] = RUN_SETTLED) -> Any:
    """Poll the database until the run reaches one of `statuses` (bounded)."""

    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.get(id=run_id)
        if run.status in statuses:
            return run
        if time.monotonic() > deadline:
            steps = list(run.steps.values_list("key", "status", "attempt", "error"))
            raise AssertionError(f"run {run_id} still {run.status} after {timeout}s; steps: {steps}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def fake_server() -> Iterator[Any]:
    """A local OpenAI-compatible server (harness/fake_openai.py) for a module's tests."""
    server = FakeOpenAI(answers=dict(SHIPPING_ANSWERS)).start()
    yield server
    server.stop()


@pytest.fixture
def fake(fake_server: Any) -> Any:
    """The fake LLM with default answers, no faults, no recorded calls, and closed breakers."""

    fake_server.reset()
    fake_server.answers = dict(SHIPPING_ANSWERS)
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    for key in client.scan_iter("switchboard:breaker:*"):
        client.delete(key)
    return fake_server


def llm_env(fake: Any, **extra: str) -> dict[str, str]:
    """Worker settings for the openai provider against the fake server."""
    return {
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "LLM_MODEL": "fake-model",
        "LLM_PRICES_JSON": '{"fake-model": [1.0, 2.0], "offline-deterministic": [1.0, 2.0]}',
        "LLM_TIMEOUT_SECONDS": "5",
        "LLM_BREAKER_FAILURES": "50",
        **extra,
    }


@pytest.fixture(scope="module")
def shop_server() -> Iterator[Any]:
    """A local shop API (harness/fake_commerce.py) for a module's tests."""
    server = FakeCommerce().start()
    yield server
    server.stop()


@pytest.fixture
def shop(shop_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The fake shop, empty and answering, as this process's COMMERCE_BACKEND=http; its breaker closed."""
    shop_server.reset()
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    for key in client.scan_iter("switchboard:breaker:commerce:*"):
        client.delete(key)
    monkeypatch.setenv("COMMERCE_API_TOKEN", SHOP_TOKEN)
    with override_settings(
        COMMERCE_BACKEND="http", COMMERCE_API_URL=shop_server.url, COMMERCE_API_TOKEN_ENV="COMMERCE_API_TOKEN"
    ):
        yield shop_server
