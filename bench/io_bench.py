"""`make bench` figure 3, I/O concurrency: conversations posted through the REST API at once, the `openai` provider
against a local fake server (harness/fake_openai.py) answering after IO_LATENCY_SECONDS and at once.

How the posts are sent is part of the bench: the conversations are created first (not timed), then one message is
POSTed to each by `IO_POSTING_CLIENTS` client threads (urllib, one request at a time each), all released together;
the clock starts when they are released and stops when every run has ended. The POST rate bounds how fast calls can
start (Little's law: calls in flight = the rate they start x how long each lasts), so it is reported
(`posts_per_s`). Figures: makespan at each latency and their ratio, peak LLM calls in flight (the fake server's
counter), runs completed, LLM requests seen, one conversation's latency alone, peak RSS of all worker processes
(both latencies, sampled every 100 ms). The supervisor runs beside the workers, as in production (the Procfile's
`supervisor`): a try that could not be recorded (a thousand threads waiting on ten pooled database connections) is
resumed from its expired lease, as it would be in production. It sweeps the whole bench database: use
BENCH_DATABASE_NAME for a database of the run's own when other benches share the server.

The `llm` worker is the production one (bench/stack.py `switchboard_workers`): its pool and concurrency come from
LLM_WORKER_POOL and LLM_WORKER_CONCURRENCY, as in the Procfile.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from bench.stack import (
    LLM_POOL,
    LLM_THREADS,
    ROOT,
    RssSampler,
    http_json,
    make_customer,
    switchboard_workers,
    wait_until,
    web_server,
)
from harness.fake_openai import SHIPPING_ANSWERS, FakeOpenAI

#: Seconds the fake LLM takes to answer in the slow round (the fast round answers at once).
IO_LATENCY_SECONDS = 1.0
#: Client threads sending the POSTs (each one request at a time).
IO_POSTING_CLIENTS = 64
#: Tries of one POST answered 503.
POST_TRIES = 20
LLM_CALLS_PER_CONVERSATION = 4  # triage, planner, responder, validator


def post_all_at_once(
    base: str, token: str, count: int, clients: int = IO_POSTING_CLIENTS
) -> tuple[float, list[str], int]:
    """POST one message to each of `count` new conversations from `clients` threads released together;
    (time they were released, run ids, 503 answers sent again). The conversations are created beforehand, untimed.
    A 503 (the web server found no free database connection in time, under the burst) is sent again, as a client
    would, and counted."""
    with ThreadPoolExecutor(max_workers=min(clients, count)) as pool:
        conversations = list(
            pool.map(lambda _: http_json("POST", f"{base}/api/v1/conversations/", token)["id"], range(count))
        )
    release = threading.Event()
    refused: list[str] = []
    body = {"content": "How long does shipping take?"}

    def post(conversation_id: str) -> str:
        release.wait()
        url = f"{base}/api/v1/conversations/{conversation_id}/messages/"
        for _ in range(POST_TRIES - 1):
            try:
                return str(http_json("POST", url, token, body)["run"]["id"])
            except urllib.error.HTTPError as exc:
                if exc.code != 503:  # busy (no database connection within DB_POOL_TIMEOUT_SECONDS): send it again
                    raise
                refused.append(conversation_id)
                time.sleep(0.5)
        return str(http_json("POST", url, token, body)["run"]["id"])

    with ThreadPoolExecutor(max_workers=min(clients, count)) as pool:
        futures = [pool.submit(post, c) for c in conversations]
        started = time.perf_counter()
        release.set()
        run_ids = [future.result() for future in futures]
    return started, run_ids, len(refused)


def replies_done(run_ids: list[str]) -> bool:
    from orchestration.models import Run

    return Run.objects.filter(id__in=run_ids).exclude(status__in=["queued", "running"]).count() == len(run_ids)


def llm_environment(env: dict[str, str], base_url: str) -> dict[str, str]:
    return {
        **env,
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "sk-bench-local",
        "LLM_MODEL": "fake-model",
        "LLM_TIMEOUT_SECONDS": "120",
        "LLM_BREAKER_FAILURES": "100000",
    }


def bench_io(env: dict[str, str], conversations: int, latency: float = IO_LATENCY_SECONDS) -> dict[str, Any]:
    from orchestration.models import Run

    fake = FakeOpenAI(answers=dict(SHIPPING_ANSWERS)).start()
    _, token = make_customer("bench-io@example.com")
    slow = f"{int(latency * 1000)}ms"
    result: dict[str, Any] = {
        "conversations": conversations,
        "llm_calls": conversations * LLM_CALLS_PER_CONVERSATION,
        "llm_pool": LLM_POOL,
        "llm_concurrency": LLM_THREADS,
        "posting_clients": IO_POSTING_CLIENTS,
        "latency_s": latency,
        "slow": slow,
    }
    llm_env = llm_environment(env, fake.base_url)
    try:
        with (
            web_server(llm_env) as web,
            switchboard_workers(llm_env) as workers,
            bench_supervisor(llm_env),
        ):
            rss = RssSampler(workers).start()
            for seconds in (0.0, latency):
                fake.latency = seconds
                fake.reset()
                started, run_ids, refused = post_all_at_once(web.url, token, conversations)
                posted = time.perf_counter() - started
                wait_until(lambda ids=run_ids: replies_done(ids), 1800, 0.05)
                makespan = time.perf_counter() - started
                key = f"{int(seconds * 1000)}ms"
                result[f"makespan_s_{key}"] = makespan
                result[f"posts_per_s_{key}"] = conversations / posted
                result[f"posts_503_{key}"] = refused
                result[f"completed_{key}"] = Run.objects.filter(id__in=run_ids, status="completed").count()
                result[f"peak_llm_in_flight_{key}"] = fake.peak_in_flight
                result[f"llm_requests_{key}"] = len(fake.calls())
            singles = []
            for _ in range(3):
                started, run_ids, _ = post_all_at_once(web.url, token, 1)
                wait_until(lambda ids=run_ids: replies_done(ids), 120, 0.005)
                singles.append(time.perf_counter() - started)
            rss.stop()
            result[f"single_conversation_s_{slow}"] = statistics.median(singles)
            result["workers_peak_rss_mb"] = rss.peak_mb
    finally:
        fake.stop()
    result["ratio"] = result[f"makespan_s_{slow}"] / result["makespan_s_0ms"]
    return result


@contextmanager
def bench_supervisor(env: dict[str, str]) -> Iterator[None]:
    """`manage.py supervise` beside the workers, with their settings (as the Procfile runs it)."""
    command = [sys.executable, "manage.py", "supervise"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)
