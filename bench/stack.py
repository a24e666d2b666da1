"""The bench's stack: its own database and Redis database, Celery workers, the web server, wrk, memory sampling.

Used by `bench/run.py` and `bench/profile_step.py`; the managed processes come from `harness/`. Django and the
project's modules are imported inside the functions that use them: they run after `bench_environment` has chosen the
database and Redis and Django is set up; psycopg and psutil only where they are needed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from harness.processes import ServerProcess, WorkerProcess, free_port, redis_server

ROOT = Path(__file__).resolve().parent.parent
#: The `llm` worker's pool and its size, as the Procfile's `worker-llm` line reads them.
LLM_POOL = os.environ.get("LLM_WORKER_POOL", "threads")
LLM_THREADS = int(os.environ.get("LLM_WORKER_CONCURRENCY", "1000"))
#: How long an `llm` worker's task waits for one of its process's database connections (the Procfile's line).
LLM_DB_POOL_TIMEOUT = os.environ.get("LLM_WORKER_DB_POOL_TIMEOUT_SECONDS", "60")
WEB_WORKERS = int(os.environ.get("WEB_CONCURRENCY", "2"))

# --- Processes ------------------------------------------------------------------------


def bench_environment() -> tuple[dict[str, str], Any]:
    """Settings for every process of the bench: its own database and Redis database."""
    owned_redis = None
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        parts = urlsplit(redis_url)
        # BENCH_REDIS_DB / BENCH_DATABASE_NAME: another database for a bench run beside another one on the same servers
        # (two benches on one Redis database would take each other's tasks).
        redis_url = urlunsplit((parts.scheme, parts.netloc, f"/{os.environ.get('BENCH_REDIS_DB', '5')}", "", ""))
    else:
        owned_redis = redis_server().start()
        redis_url = f"redis://127.0.0.1:{owned_redis.port}/0"
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        database_url = postgres_database(database_url, os.environ.get("BENCH_DATABASE_NAME", "switchboard_bench"))
    else:
        (ROOT / ".run").mkdir(exist_ok=True)
        database_url = f"sqlite:///{ROOT / '.run' / 'bench.sqlite3'}"
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BENCH_REDIS_URL": redis_url,
        "SWITCHBOARD_BENCH": "1",
        "SWITCHBOARD_EXTRA_AGENTS": "bench.agents.Noop",
        "LOG_LEVEL": "INFO",
        "DJANGO_DEBUG": "false",  # as in production: no query log, no debug pages
        "THROTTLE_IP_RATE": "1000000/min",
        "THROTTLE_CUSTOMER_RATE": "1000000/min",
        "THROTTLE_MESSAGE_RATE": "1000000/min",
        "RUN_DEADLINE_SECONDS": "600",
        # Like the raw baseline: no task events (Flower turns them on when it runs; see docs/performance.md).
        "CELERY_TASK_EVENTS": os.environ.get("CELERY_TASK_EVENTS", "false"),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "PYTHONPATH": str(ROOT),
    }
    return env, owned_redis


def postgres_database(url: str, name: str) -> str:
    import psycopg

    parts = urlsplit(url)
    # Through the server's maintenance database: the URL's own database need not exist (a test shard's is made by
    # pytest-django under another name).
    maintenance = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


@contextmanager
def celery_worker(env: dict[str, str], *, app: str, queues: str, pool: str, concurrency: int, name: str):
    worker = WorkerProcess(env["DATABASE_URL"], queues=queues, concurrency=concurrency, pool=pool, env=env, name=name)
    worker.args[worker.args.index("project")] = app
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@contextmanager
def switchboard_workers(env: dict[str, str]):
    """The production layout (as `make run` and docker-compose): `default` on prefork x2, `llm` on LLM_POOL."""
    with ExitStack() as stack:
        default = stack.enter_context(
            celery_worker(env, app="project", queues="default", pool="prefork", concurrency=2, name="bench-default")
        )
        llm_env = {**env, "DB_POOL_TIMEOUT_SECONDS": LLM_DB_POOL_TIMEOUT}
        llm = stack.enter_context(
            celery_worker(llm_env, app="project", queues="llm", pool=LLM_POOL, concurrency=LLM_THREADS, name="llm")
        )
        yield [default, llm]


@contextmanager
def web_server(env: dict[str, str]):
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "project.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--workers",
        str(WEB_WORKERS),
    ]
    server = ServerProcess(args, port=port, env=env, name="bench-web").start()
    try:
        yield server
    finally:
        server.stop()


def broker_purge() -> None:
    from project.celery import app

    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in ("default", "llm", "raw"):
            channel.queue_purge(queue)
        channel.client.delete(channel.unacked_key, channel.unacked_index_key)


def wait_until(condition: Any, timeout: float, interval: float = 0.001) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout}s")
        time.sleep(interval)


def make_customer(email: str) -> tuple[Any, str]:
    from api.services import api_token_get_or_create
    from conversations.models import Customer
    from conversations.services import customer_create

    customer = Customer.objects.filter(user__username=email).first() or customer_create(email=email, name="Bench")
    return customer, api_token_get_or_create(user=customer.user)


def start_run(customer: Any, content: str, **kwargs: Any) -> Any:
    from django.db import transaction

    from conversations.models import Message
    from conversations.services import conversation_create, message_create
    from orchestration.runs import run_start

    with transaction.atomic():
        conversation = conversation_create(customer=customer)
        message, _ = message_create(conversation_id=conversation.id, role=Message.Role.CUSTOMER, content=content)
        return run_start(conversation=conversation, message=message, trace_id=f"bench{time.time_ns()}", **kwargs)


class RssSampler:
    """Peak resident memory of worker process trees, sampled every 100 ms."""

    def __init__(self, workers: list[Any]) -> None:
        self.pids = [w.process.pid for w in workers]
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def sample(self) -> float:
        import psutil

        total = 0
        for pid in self.pids:
            try:
                parent = psutil.Process(pid)
                total += sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
            except psutil.NoSuchProcess:
                continue
        return total / 2**20

    def start(self) -> RssSampler:
        def loop() -> None:
            while not self._stop.is_set():
                self.peak_mb = max(self.peak_mb, self.sample())
                time.sleep(0.1)

        threading.Thread(target=loop, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


def http_json(method: str, url: str, token: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


WRK_LUA = """
wrk.method = os.getenv("BENCH_METHOD")
wrk.headers["Content-Type"] = "application/json"
if os.getenv("BENCH_TOKEN") ~= "" then wrk.headers["Authorization"] = "Token " .. os.getenv("BENCH_TOKEN") end
if wrk.method == "POST" then wrk.body = '{"content": "How long does shipping take?"}' end
"""


def wrk(url: str, method: str, token: str, seconds: int, connections: int) -> dict[str, float]:
    script = ROOT / ".run" / "bench-wrk.lua"
    script.write_text(WRK_LUA)
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        env={**os.environ, "BENCH_METHOD": method, "BENCH_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout

    def latency_ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", output).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": latency_ms("50%"),
        "p99_ms": latency_ms("99%"),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
    }
