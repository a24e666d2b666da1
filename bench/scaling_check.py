"""The capacity model, checked: the pipeline-throughput workload with the workers split across two network namespaces.

Two namespaces (harness/network.py: a veth pair each, 10.231.<n>.0/24) each run half of the production worker
layout — `default` on prefork x1 and `llm` on a thread pool — pinned to one core each with `taskset`: the same total
cores as `make bench` (2). PostgreSQL and a private redis-server listen on 127.0.0.1 in the root namespace; a TCP
forwarder in this process listens on each veth's host address and connects to them, so every database and broker
byte the workers exchange crosses a network interface (all of it on this machine).

The workload is bench/run.py's throughput one: N conversations written and their first tasks published at once
(here before the workers start), then the workers drain them. Throughput is measured in steady state, between 10%
and 90% of the conversations completed. The prediction is `bench.scaling.predicted_throughput` of the cost run's
per-conversation CPU (workers, their PostgreSQL backends, PostgreSQL's background processes, Redis) over the
machine's two cores, and again over the cores left once the other processes on this shared machine (other users,
this process and its forwarder) have taken theirs during the window, measured.

Root only (ip netns). Namespaces, links and processes are removed in `finally`.
Usage: python -m bench.scaling_check [-n 1000] [--cost bench/results/cost.json] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from bench.cost import BENCH_SETTINGS
from bench.cpu import CpuWindow, PostgresSampler
from bench.scaling import predicted_throughput
from bench.stack import LLM_THREADS, ROOT, bench_environment, make_customer
from harness.network import NetNamespace, TcpForwarder, netns_index_free
from harness.processes import WorkerProcess, free_port, redis_server

TOLERANCE = 0.15


def namespaced_worker(env: dict[str, str], ns: NetNamespace, core: int, *, queues: str, pool: str, n: int) -> Any:
    worker = WorkerProcess(
        env["DATABASE_URL"], queues=queues, concurrency=n, pool=pool, env=env, name=f"ns{core}-{queues}"
    )
    worker.args = [*ns.exec_prefix, "taskset", "-c", str(core), *worker.args]
    return worker


def enqueue(conversations: int) -> list[Any]:
    from django.db import transaction

    from conversations.models import Message
    from conversations.services import conversation_create, message_create
    from orchestration.runs import run_start

    customer, _ = make_customer("bench-scaling@example.com")
    with transaction.atomic():
        runs = []
        for index in range(conversations):
            conversation = conversation_create(customer=customer)
            message, _ = message_create(
                conversation_id=conversation.id, role=Message.Role.CUSTOMER, content="How long does shipping take?"
            )
            runs.append(run_start(conversation=conversation, message=message, trace_id=f"ns{index}"))
    return [run.id for run in runs]


def drain(run_ids: list[Any], window: CpuWindow, timeout: float = 900) -> dict[str, Any]:
    """Wait for every run to end; throughput and CPU between 10% and 90% of them completed."""
    from orchestration.models import Run

    total, low, high = len(run_ids), int(len(run_ids) * 0.1), int(len(run_ids) * 0.9)
    deadline = time.monotonic() + timeout
    marks: dict[str, tuple[float, int]] = {}
    measured: dict[str, Any] = {}
    while True:
        done = Run.objects.filter(id__in=run_ids).exclude(status__in=["queued", "running"]).count()
        now = time.perf_counter()
        if "low" not in marks and done >= low:
            marks["low"] = (now, done)
            window.start()
        if "low" in marks and "high" not in marks and done >= high:
            marks["high"] = (now, done)
            measured = window.stop()
        if done >= total:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done}/{total} runs ended in {timeout}s")
        time.sleep(0.05)
    (t_low, n_low), (t_high, n_high) = marks["low"], marks["high"]
    completed = Run.objects.filter(id__in=run_ids, status="completed").count()
    return {"completed": completed, "window_conversations": n_high - n_low, "window_s": t_high - t_low, **measured}


def check(env: dict[str, str], conversations: int, cost: dict[str, Any], redis: Any) -> dict[str, Any]:
    cores = os.cpu_count() or 2
    ours = cost["switchboard"]["cpu_ms"]
    # The throughput workload has no web server: workers, their backends, PostgreSQL's background, Redis.
    cpu_ms = ours["workers"] + ours["postgres (workers)"] + ours["postgres (background)"] + ours["redis"]
    namespaces: list[NetNamespace] = []
    forwarder = TcpForwarder()
    me = psutil.Process()
    try:
        pg = urlsplit(env["DATABASE_URL"])
        pg_port = free_port()
        index = netns_index_free()
        for _ in range(2):
            namespaces.append(NetNamespace(index).create())
            index = netns_index_free(index + 1)
        run_ids = enqueue(conversations)
        with ExitStack() as stack:
            workers = []
            for core, ns in enumerate(namespaces):
                forwarder.forward(ns.host_address, pg_port, pg.hostname or "127.0.0.1", pg.port or 5432)
                forwarder.forward(ns.host_address, redis.port, "127.0.0.1", redis.port)
                netloc = f"{pg.netloc.rsplit('@', 1)[0]}@{ns.host_address}:{pg_port}"
                query = "sslmode=disable&application_name=sb-worker"
                ns_env = {
                    **env,
                    "DATABASE_URL": urlunsplit((pg.scheme, netloc, pg.path, query, "")),
                    "REDIS_URL": f"redis://{ns.host_address}:{redis.port}/0",
                    "BENCH_REDIS_URL": f"redis://{ns.host_address}:{redis.port}/0",
                }
                workers.append(namespaced_worker(ns_env, ns, core, queues="default", pool="prefork", n=1))
                workers.append(namespaced_worker(ns_env, ns, core, queues="llm", pool="threads", n=LLM_THREADS // 2))
            for worker in workers:
                stack.callback(worker.stop)
                worker.start(wait=False)
            database = pg.path.lstrip("/")
            admin_url = urlunsplit(pg._replace(path="/postgres"))
            trees = {"workers": [w.process.pid for w in workers], "redis": [redis.process.pid], "bench": [me.pid]}
            window = CpuWindow(trees, PostgresSampler(admin_url, database))
            drained = drain(run_ids, window)
    finally:
        forwarder.stop()
        for ns in namespaces:
            ns.destroy()
    return summarise(drained, cpu_ms, cores, conversations)


def summarise(drained: dict[str, Any], cpu_ms: float, cores: int, conversations: int) -> dict[str, Any]:
    seconds, done = drained["window_s"], drained["window_conversations"]
    measured = done / seconds
    cpu = drained["cpu_s"]
    ours = cpu["workers"] + cpu["redis"] + cpu["postgres (workers)"] + cpu["postgres (background)"]
    others = max(0.0, drained["machine_busy_s"] - ours)  # other users of the machine, this process, its forwarder
    available = cores - others / seconds
    predicted = predicted_throughput(cpu_ms, cores)
    predicted_available = predicted_throughput(cpu_ms, available)
    return {
        "conversations": conversations,
        "completed": drained["completed"],
        "cores": cores,
        "cost_cpu_ms": cpu_ms,
        "measured_per_s": measured,
        "measured_cpu_ms": ours * 1000 / done,
        "machine_busy_cores": drained["machine_busy_s"] / seconds,
        "other_cores": others / seconds,
        "predicted_per_s": predicted,
        "predicted_per_s_available": predicted_available,
        "error": measured / predicted - 1,
        "error_available": measured / predicted_available - 1,
        "within_15pct": abs(measured / predicted - 1) <= TOLERANCE,
        "within_15pct_available": abs(measured / predicted_available - 1) <= TOLERANCE,
        "cpu_s": cpu,
        "bench_process_cores": cpu["bench"] / seconds,
        "window_s": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--cost", default=str(ROOT / "bench" / "results" / "cost.json"))
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "scaling_check.json"))
    args = parser.parse_args()
    cost = json.loads(Path(args.cost).read_text())["cost"]
    env, owned_redis = bench_environment()
    redis = redis_server().start()  # the driver publishes to the same private Redis the workers read
    url = f"redis://127.0.0.1:{redis.port}/0"
    env = {**env, **BENCH_SETTINGS, "REDIS_URL": url, "BENCH_REDIS_URL": url}
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    try:
        result = check(env, args.n, cost, redis)
    finally:
        redis.stop()
        if owned_redis:
            owned_redis.stop()
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "cpu_s"}, indent=2))


if __name__ == "__main__":
    main()
