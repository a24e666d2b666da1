"""`make bench`: Switchboard side by side with raw Celery and a bare DRF endpoint, in one run.

Every figure is a median over repetitions, every comparison a ratio against a
baseline this script starts itself on the same broker, database and machine:

1. per-hop overhead: a chain of no-op agents through Switchboard's task wrapper
   vs a raw Celery chain of no-op tasks (prefork, concurrency 2, both);
2. pipeline throughput: conversations through the full pipeline (offline LLM),
   all enqueued at once, vs raw Celery chains of as many hops;
4. I/O concurrency (bench/io_bench.py): conversations posted through the REST
   API at once by 64 client threads, the `openai` provider against a local fake
   server answering after 1 s and at once; makespans, their ratio, peak LLM calls
   in flight, one conversation's latency, peak RSS of all workers;
5. API: POST message and GET conversation under wrk vs a bare DRF endpoint that
   validates a body and writes one row, served the same way;
3. a durable peer: the pipeline's seven steps as a LangGraph graph checkpointed
   by `PostgresSaver` with durability "sync" on the same PostgreSQL server, ms
   per step serially and steps/s with 8 threads, beside figures 1 and 2
   (`bench/peer.py`; skipped without .run/langgraph-venv or PostgreSQL);
6. reply latency: POST to stored reply, sequential conversations (`bench/latency.py`);
7. cost per conversation: CPU-ms over every process, statements and Redis commands
   beside raw Celery's seven hops (`bench/cost.py`, its own table).

Django and the project's modules are imported inside the functions that need them: `main` first chooses the
bench's own database and Redis (`bench.stack.bench_environment`), then sets Django up.

Usage: python -m bench.run [--quick] [--json PATH]. It uses DATABASE_URL's server
with a database of its own (switchboard_bench, or BENCH_DATABASE_NAME; SQLite otherwise) and REDIS_URL's
server with database 5 (an embedded redis-server otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# `python bench/run.py` works as well as `python -m bench.run`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.io_bench import bench_io
from bench.peer import bench_langgraph
from bench.report import report
from bench.stack import (
    LLM_POOL,
    LLM_THREADS,
    ROOT,
    WEB_WORKERS,
    RssSampler,
    bench_environment,
    broker_purge,
    celery_worker,
    http_json,
    make_customer,
    start_run,
    switchboard_workers,
    wait_until,
    web_server,
    wrk,
)

FULL = {
    "hops": 10,
    "hop_reps": 30,
    "conversations": 1000,
    "io_conversations": 1000,
    "api_seconds": 10,
    "api_connections": 32,
    "lg_runs": 100,
    "lg_thread_runs": 400,
    "lg_thread_reps": 3,
    "latency_conversations": 100,
}
QUICK = {"hops": 3, "hop_reps": 3, "conversations": 10, "io_conversations": 8, "api_seconds": 2, "api_connections": 4}
QUICK |= {"lg_runs": 3, "lg_thread_runs": 16, "lg_thread_reps": 1, "latency_conversations": 3}
SECTIONS = ("per_hop", "langgraph", "throughput", "io", "api", "latency", "cost")
PIPELINE_HOPS = 7  # triage, planner, retrieval, account, responder, validator, deliver


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
    return {
        "hops": hops,
        "repetitions": reps,
        "raw_ms_per_hop": raw_ms,
        "switchboard_ms_per_hop": ours_ms,
        "ratio": ours_ms / raw_ms,
    }


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
        wait_until(
            lambda: Run.objects.filter(id__in=ids).exclude(status__in=["queued", "running"]).count() == len(ids),
            900,
            0.1,
        )
        ours_seconds = time.perf_counter() - started
        rss.stop()
    completed = Run.objects.filter(id__in=ids, status="completed").count()
    raw_tps = conversations * PIPELINE_HOPS / raw_seconds
    ours_tps = conversations * PIPELINE_HOPS / ours_seconds
    return {
        "conversations": conversations,
        "hops": PIPELINE_HOPS,
        "completed": completed,
        "raw_seconds": raw_seconds,
        "switchboard_seconds": ours_seconds,
        "raw_tasks_per_s": raw_tps,
        "switchboard_tasks_per_s": ours_tps,
        "switchboard_conversations_per_s": conversations / ours_seconds,
        "ratio": ours_tps / raw_tps,
        "worker_peak_rss_mb": rss.peak_mb,
    }


# --- 3. I/O concurrency: bench/io_bench.py -------------------------------------------------------


# --- 4. API ------------------------------------------------------------------------------------


def bench_api(env: dict[str, str], seconds: int, connections: int) -> dict[str, Any]:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk (make bench installs it).")
    _, token = make_customer("bench-api@example.com")
    with web_server(env) as web:
        conversation = http_json("POST", f"{web.url}/api/v1/conversations/", token)["id"]
        for _ in range(3):
            http_json(
                "POST",
                f"{web.url}/api/v1/conversations/{conversation}/messages/",
                token,
                {"content": "How long does shipping take?"},
            )
        reader = http_json("POST", f"{web.url}/api/v1/conversations/", token)["id"]
        for _ in range(4):
            http_json("POST", f"{web.url}/api/v1/conversations/{reader}/messages/", token, {"content": "Hello"})
        result = {
            "connections": connections,
            "seconds": seconds,
            "web_workers": WEB_WORKERS,
            "bare_post": wrk(f"{web.url}/bench/bare/", "POST", "", seconds, connections),
            "post_message": wrk(
                f"{web.url}/api/v1/conversations/{conversation}/messages/", "POST", token, seconds, connections
            ),
            "get_conversation": wrk(f"{web.url}/api/v1/conversations/{reader}/", "GET", token, seconds, connections),
        }
    broker_purge()  # the posted messages' runs: no worker ran them
    result["ratio_post"] = result["post_message"]["requests_per_s"] / result["bare_post"]["requests_per_s"]
    result["ratio_get"] = result["get_conversation"]["requests_per_s"] / result["bare_post"]["requests_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness works (make test)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "latest.json"))
    parser.add_argument("--only", help=f"comma-separated: {','.join(SECTIONS)}")
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
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    if only - set(SECTIONS):
        parser.error(f"unknown sections {sorted(only - set(SECTIONS))}; choose from {','.join(SECTIONS)}")
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "celery": celery.__version__,
            "platform": platform.platform(),
        },
        "settings": {
            **sizes,
            "database": env["DATABASE_URL"].split("://")[0],
            "llm_pool": LLM_POOL,
            "llm_threads": LLM_THREADS,
            "web_workers": WEB_WORKERS,
            "default_worker": "prefork x2",
            "raw_worker": "prefork x2",
            "acks_late": True,
            "prefetch_multiplier": 1,
        },
    }
    try:
        if "per_hop" in only:
            results["per_hop"] = bench_per_hop(env, sizes["hops"], sizes["hop_reps"])
        if "langgraph" in only:
            lg = (sizes["lg_runs"], sizes["lg_thread_runs"], sizes["lg_thread_reps"])
            results["langgraph"] = bench_langgraph(env["DATABASE_URL"], *lg)
        if "throughput" in only:
            results["throughput"] = bench_throughput(env, sizes["conversations"])
        if "io" in only:
            results["io"] = bench_io(env, sizes["io_conversations"])
        if "api" in only:
            results["api"] = bench_api(env, sizes["api_seconds"], sizes["api_connections"])
        if "latency" in only:  # target 6: bench/latency.py
            from bench.latency import bench_reply_latency

            results["latency"] = bench_reply_latency(env, sizes["latency_conversations"])
        if "cost" in only:  # target 7: bench/cost.py (prints its table)
            from bench import cost

            results["cost"] = cost.bench_cost(env, cost.QUICK if args.quick else cost.FULL)
            print(cost.cost_table(results["cost"]))
    finally:
        broker_purge()
        if owned_redis:
            owned_redis.stop()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    if only != set(SECTIONS):
        print(json.dumps(results, indent=2), end="\n\n")
    print(report(results))
    print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
