"""`make bench`: Switchboard side by side with raw Celery and a bare DRF endpoint, in one run.

Every figure is a median over repetitions, every comparison a ratio against a
baseline this script starts itself on the same broker, database and machine:

1. per-hop overhead: a chain of no-op agents through Switchboard's task wrapper
   vs a raw Celery chain of no-op tasks (prefork, concurrency 2, both);
2. pipeline throughput: conversations through the full pipeline (offline LLM),
   all enqueued at once, vs raw Celery chains of as many hops;
3. I/O concurrency: conversations posted through the REST API at once, the
   `openai` provider against a local fake server answering after 300 ms and at
   once; makespans, their ratio, peak LLM calls in flight, one conversation's
   latency, peak RSS of all workers;
4. API: POST message and GET conversation under wrk vs a bare DRF endpoint that
   validates a body and writes one row, served the same way.

Usage: python -m bench.run [--quick] [--json PATH]. It uses DATABASE_URL's server
with a database of its own (switchboard_bench; SQLite otherwise) and REDIS_URL's
server with database 5 (an embedded redis-server otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# `python bench/run.py` works as well as `python -m bench.run`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.fake_openai import SHIPPING_ANSWERS, FakeOpenAI
from harness.processes import ServerProcess, WorkerProcess, free_port, redis_server

ROOT = Path(__file__).resolve().parent.parent

FULL = {
    "hops": 10,
    "hop_reps": 30,
    "conversations": 1000,
    "io_conversations": 200,
    "api_seconds": 10,
    "api_connections": 32,
}
QUICK = {"hops": 3, "hop_reps": 3, "conversations": 10, "io_conversations": 8, "api_seconds": 2, "api_connections": 4}
PIPELINE_HOPS = 7  # triage, planner, retrieval, account, responder, validator, deliver
LLM_CALLS_PER_CONVERSATION = 4  # triage, planner, responder, validator
LLM_THREADS = int(os.environ.get("LLM_WORKER_CONCURRENCY", "200"))
WEB_WORKERS = int(os.environ.get("WEB_CONCURRENCY", "2"))


# --- Environment ------------------------------------------------------------------------


def bench_environment() -> tuple[dict[str, str], Any]:
    """Settings for every process of the bench: its own database and Redis database."""
    owned_redis = None
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        parts = urlsplit(redis_url)
        redis_url = urlunsplit((parts.scheme, parts.netloc, "/5", "", ""))
    else:
        owned_redis = redis_server().start()
        redis_url = f"redis://127.0.0.1:{owned_redis.port}/0"
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        database_url = postgres_database(database_url, "switchboard_bench")
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
    with psycopg.connect(url, autocommit=True) as connection:
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
    """The production layout (as `make run` and docker-compose): `default` on prefork x2, `llm` on threads."""
    with ExitStack() as stack:
        default = stack.enter_context(
            celery_worker(env, app="project", queues="default", pool="prefork", concurrency=2, name="bench-default")
        )
        llm = stack.enter_context(
            celery_worker(env, app="project", queues="llm", pool="threads", concurrency=LLM_THREADS, name="bench-llm")
        )
        yield [default, llm]


@contextmanager
def web_server(env: dict[str, str]):
    port = free_port()
    args = [
        sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning", "--workers", str(WEB_WORKERS),
    ]  # fmt: skip
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


# --- 1. Per-hop overhead ----------------------------------------------------------------------


def bench_per_hop(env: dict[str, str], hops: int, reps: int) -> dict[str, Any]:
    from celery import chain

    from bench.raw_app import noop
    from orchestration.models import Run

    raw_times = []
    with celery_worker(env, app="bench.raw_app", queues="raw", pool="prefork", concurrency=2, name="bench-raw"):
        for index in range(reps + 3):
            started = time.perf_counter()
            result = chain(noop.s(0), *[noop.s() for _ in range(hops - 1)]).apply_async()
            wait_until(result.ready, 60, 0.005)
            if index >= 3:  # warm-up
                raw_times.append(time.perf_counter() - started)
    customer, _ = make_customer("bench-hops@example.com")
    ours_times = []
    budget = {"max_agent_visits": hops + 1, "max_hops": hops + 5}
    with celery_worker(env, app="project", queues="default", pool="prefork", concurrency=2, name="bench-hops"):
        for index in range(reps + 3):
            started = time.perf_counter()
            run = start_run(customer, "noop", slip=["noop"] * hops, budget=budget)
            wait_until(lambda r=run: Run.objects.filter(id=r.id, status="completed").exists(), 60, 0.005)
            if index >= 3:
                ours_times.append(time.perf_counter() - started)
    raw_ms = statistics.median(raw_times) / hops * 1000
    ours_ms = statistics.median(ours_times) / hops * 1000
    return {"hops": hops, "repetitions": reps, "raw_ms_per_hop": raw_ms, "switchboard_ms_per_hop": ours_ms,
            "ratio": ours_ms / raw_ms}  # fmt: skip


# --- 2. Pipeline throughput --------------------------------------------------------------------


def bench_throughput(env: dict[str, str], conversations: int) -> dict[str, Any]:
    import redis
    from celery import chain
    from django.db import transaction

    from bench.raw_app import noop, noop_last
    from conversations.models import Message
    from conversations.services import conversation_create, message_create
    from orchestration.models import Run
    from orchestration.runs import run_start

    counter = redis.Redis.from_url(env["REDIS_URL"])
    counter.delete("bench:raw:done")
    with celery_worker(env, app="bench.raw_app", queues="raw", pool="prefork", concurrency=2, name="bench-raw"):
        started = time.perf_counter()
        for _ in range(conversations):
            chain(noop.s(0), *[noop.s() for _ in range(PIPELINE_HOPS - 2)], noop_last.si(0)).apply_async()
        wait_until(lambda: int(counter.get("bench:raw:done") or 0) >= conversations, 600, 0.05)
        raw_seconds = time.perf_counter() - started

    customer, _ = make_customer("bench-throughput@example.com")
    with switchboard_workers(env) as workers:
        rss = RssSampler(workers).start()
        started = time.perf_counter()
        with transaction.atomic():  # all runs written, then all dispatched on commit: enqueued at once
            runs = []
            for index in range(conversations):
                conversation = conversation_create(customer=customer)
                message, _ = message_create(
                    conversation_id=conversation.id, role=Message.Role.CUSTOMER, content="How long does shipping take?"
                )
                runs.append(run_start(conversation=conversation, message=message, trace_id=f"tp{index}"))
        ids = [run.id for run in runs]
        wait_until(lambda: Run.objects.filter(id__in=ids).exclude(status__in=["queued", "running"]).count() == len(ids),
                   900, 0.1)  # fmt: skip
        ours_seconds = time.perf_counter() - started
        rss.stop()
    completed = Run.objects.filter(id__in=ids, status="completed").count()
    raw_tps = conversations * PIPELINE_HOPS / raw_seconds
    ours_tps = conversations * PIPELINE_HOPS / ours_seconds
    return {
        "conversations": conversations, "hops": PIPELINE_HOPS, "completed": completed,
        "raw_seconds": raw_seconds, "switchboard_seconds": ours_seconds,
        "raw_tasks_per_s": raw_tps, "switchboard_tasks_per_s": ours_tps,
        "switchboard_conversations_per_s": conversations / ours_seconds, "ratio": ours_tps / raw_tps,
        "worker_peak_rss_mb": rss.peak_mb,
    }  # fmt: skip


# --- 3. I/O concurrency ----------------------------------------------------------------------


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
        url, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def post_all_at_once(base: str, token: str, count: int) -> tuple[float, list[str]]:
    """POST one message to each of `count` new conversations, all at once; (start time, run ids)."""
    conversations = [http_json("POST", f"{base}/api/v1/conversations/", token)["id"] for _ in range(count)]
    barrier = threading.Barrier(count + 1)
    run_ids: list[str] = []
    lock = threading.Lock()

    def post(conversation_id: str) -> None:
        barrier.wait()
        body = {"content": "How long does shipping take?"}
        run_id = http_json("POST", f"{base}/api/v1/conversations/{conversation_id}/messages/", token, body)["run"]["id"]
        with lock:
            run_ids.append(run_id)

    threads = [threading.Thread(target=post, args=(c,)) for c in conversations]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return started, run_ids


def replies_done(run_ids: list[str]) -> bool:
    from orchestration.models import Run

    return Run.objects.filter(id__in=run_ids).exclude(status__in=["queued", "running"]).count() == len(run_ids)


def bench_io(env: dict[str, str], conversations: int) -> dict[str, Any]:
    from orchestration.models import Run

    fake = FakeOpenAI(answers=dict(SHIPPING_ANSWERS)).start()
    llm_env = {
        **env, "LLM_PROVIDER": "openai", "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-bench-local",
        "LLM_MODEL": "fake-model", "LLM_TIMEOUT_SECONDS": "60", "LLM_BREAKER_FAILURES": "100000",
    }  # fmt: skip
    _, token = make_customer("bench-io@example.com")
    result: dict[str, Any] = {"conversations": conversations, "llm_calls": conversations * LLM_CALLS_PER_CONVERSATION,
                              "llm_threads": LLM_THREADS}  # fmt: skip
    try:
        with web_server(llm_env) as web, switchboard_workers(llm_env) as workers:
            rss = RssSampler(workers).start()
            for latency in (0.0, 0.3):
                fake.latency = latency
                fake.reset()
                started, run_ids = post_all_at_once(web.url, token, conversations)
                wait_until(lambda ids=run_ids: replies_done(ids), 900, 0.02)
                makespan = time.perf_counter() - started
                completed = Run.objects.filter(id__in=run_ids, status="completed").count()
                key = f"{int(latency * 1000)}ms"
                result[f"makespan_s_{key}"] = makespan
                result[f"completed_{key}"] = completed
                result[f"peak_llm_in_flight_{key}"] = fake.peak_in_flight
                result[f"llm_requests_{key}"] = len(fake.calls())
            singles = []
            for _ in range(3):
                started, run_ids = post_all_at_once(web.url, token, 1)
                wait_until(lambda ids=run_ids: replies_done(ids), 120, 0.005)
                singles.append(time.perf_counter() - started)
            rss.stop()
            result["single_conversation_s_300ms"] = statistics.median(singles)
            result["workers_peak_rss_mb"] = rss.peak_mb
    finally:
        fake.stop()
    result["ratio"] = result["makespan_s_300ms"] / result["makespan_s_0ms"]
    return result


# --- 4. API ------------------------------------------------------------------------------------

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
        env={**os.environ, "BENCH_METHOD": method, "BENCH_TOKEN": token}, capture_output=True, text=True,
        timeout=seconds + 60, check=True,
    ).stdout  # fmt: skip

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


def bench_api(env: dict[str, str], seconds: int, connections: int) -> dict[str, Any]:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk (make bench installs it).")
    _, token = make_customer("bench-api@example.com")
    with web_server(env) as web:
        conversation = http_json("POST", f"{web.url}/api/v1/conversations/", token)["id"]
        for _ in range(3):
            http_json("POST", f"{web.url}/api/v1/conversations/{conversation}/messages/", token,
                      {"content": "How long does shipping take?"})  # fmt: skip
        reader = http_json("POST", f"{web.url}/api/v1/conversations/", token)["id"]
        for _ in range(4):
            http_json("POST", f"{web.url}/api/v1/conversations/{reader}/messages/", token, {"content": "Hello"})
        result = {
            "connections": connections, "seconds": seconds, "web_workers": WEB_WORKERS,
            "bare_post": wrk(f"{web.url}/bench/bare/", "POST", "", seconds, connections),
            "post_message": wrk(f"{web.url}/api/v1/conversations/{conversation}/messages/", "POST", token, seconds,
                                connections),
            "get_conversation": wrk(f"{web.url}/api/v1/conversations/{reader}/", "GET", token, seconds, connections),
        }  # fmt: skip
    broker_purge()  # the posted messages' runs: no worker ran them
    result["ratio_post"] = result["post_message"]["requests_per_s"] / result["bare_post"]["requests_per_s"]
    result["ratio_get"] = result["get_conversation"]["requests_per_s"] / result["bare_post"]["requests_per_s"]
    return result


# --- Report ------------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    hop, tp, io, api = results["per_hop"], results["throughput"], results["io"], results["api"]
    rows = [
        ("1 per-hop overhead", f"{hop['switchboard_ms_per_hop']:.2f} ms/hop", f"{hop['raw_ms_per_hop']:.2f} ms/hop",
         f"{hop['ratio']:.2f}x", "<= 1.5x", hop["ratio"] <= 1.5),
        ("2 pipeline throughput",
         f"{tp['switchboard_tasks_per_s']:.0f} tasks/s ({tp['switchboard_conversations_per_s']:.1f} conv/s)",
         f"{tp['raw_tasks_per_s']:.0f} tasks/s", f"{tp['ratio']:.2f}", ">= 0.50", tp["ratio"] >= 0.5),
        ("3 makespan 300 ms vs 0 ms", f"{io['makespan_s_300ms']:.2f} s", f"{io['makespan_s_0ms']:.2f} s",
         f"{io['ratio']:.2f}x", "<= 1.5x", io["ratio"] <= 1.5),
        ("3 peak LLM calls in flight", str(io["peak_llm_in_flight_300ms"]), "-", "-", ">= 100",
         io["peak_llm_in_flight_300ms"] >= 100),
        ("3 one conversation at 300 ms", f"{io['single_conversation_s_300ms']:.2f} s", "-", "-", "-", None),
        ("3 workers' peak RSS", f"{io['workers_peak_rss_mb']:.0f} MiB", "-", "-", "< 1024 MiB",
         io["workers_peak_rss_mb"] < 1024),
        ("4 POST message", f"{api['post_message']['requests_per_s']:.0f} req/s p50 {api['post_message']['p50_ms']:.1f} "
         f"p99 {api['post_message']['p99_ms']:.1f} ms", f"{api['bare_post']['requests_per_s']:.0f} req/s p50 "
         f"{api['bare_post']['p50_ms']:.1f} p99 {api['bare_post']['p99_ms']:.1f} ms", f"{api['ratio_post']:.2f}",
         ">= 0.50, p99 < 100 ms", api["ratio_post"] >= 0.5 and api["post_message"]["p99_ms"] < 100),
        ("4 GET conversation", f"{api['get_conversation']['requests_per_s']:.0f} req/s p50 "
         f"{api['get_conversation']['p50_ms']:.1f} p99 {api['get_conversation']['p99_ms']:.1f} ms", "(bare POST)",
         f"{api['ratio_get']:.2f}", "-", None),
    ]  # fmt: skip
    lines = [
        f"Switchboard benchmark, {results['machine']['cores']} cores, {results['machine']['python']}, "
        f"Celery {results['machine']['celery']}, database {results['settings']['database']}",
        f"command: {results['command']}",
        "",
        "| figure | Switchboard | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, ours, base, ratio, target, met in rows:
        mark = "-" if met is None else ("yes" if met else "no")
        lines.append(f"| {name} | {ours} | {base} | {ratio} | {target} | {mark} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness works (make test)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "latest.json"))
    parser.add_argument("--only", help="comma-separated: per_hop,throughput,io,api")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL

    env, owned_redis = bench_environment()
    os.environ.update(env)
    import celery
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    broker_purge()
    only = set(args.only.split(",")) if args.only else {"per_hop", "throughput", "io", "api"}
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "celery": celery.__version__,
                    "platform": platform.platform()},
        "settings": {**sizes, "database": env["DATABASE_URL"].split("://")[0], "llm_threads": LLM_THREADS,
                     "web_workers": WEB_WORKERS, "default_worker": "prefork x2", "raw_worker": "prefork x2",
                     "acks_late": True, "prefetch_multiplier": 1},
    }  # fmt: skip
    try:
        if "per_hop" in only:
            results["per_hop"] = bench_per_hop(env, sizes["hops"], sizes["hop_reps"])
        if "throughput" in only:
            results["throughput"] = bench_throughput(env, sizes["conversations"])
        if "io" in only:
            results["io"] = bench_io(env, sizes["io_conversations"])
        if "api" in only:
            results["api"] = bench_api(env, sizes["api_seconds"], sizes["api_connections"])
    finally:
        broker_purge()
        if owned_redis:
            owned_redis.stop()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    if only == {"per_hop", "throughput", "io", "api"}:
        print(report(results))
    else:
        print(json.dumps(results, indent=2))
    print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
