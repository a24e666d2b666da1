"""Cost per conversation (issue "Performance, round two", target 7): CPU, database statements, Redis commands.

Switchboard: conversations posted through the REST API (the real web server, offline LLM) to completion. Raw Celery:
chains of seven no-op hops (bench/raw_app.py), enqueued from this process. Both in the same run, on the same
machine, measured as deltas over a window that opens after a warm-up:

- CPU-ms of every process involved, by kind: the web server and the workers with their children (psutil trees;
  for raw Celery, this process's thread CPU while it enqueues stands where the web server stands), the
  PostgreSQL backends of the bench's clients (by `application_name`), PostgreSQL's background processes (shared
  with every other user of the server: noisy), and the bench's own redis-server;
- database statements, counted on the wire by a proxy between the processes and PostgreSQL (bench/pgwire.py: no
  project code changes, BEGIN and COMMIT included; pg_stat_statements would need a restart of the shared server);
- Redis commands: INFO commandstats of a private redis-server started for this bench (the shared one is used by
  others), minus this process's own INFO and polling commands.

Usage: python -m bench.cost [--quick] [-n N] [--reps R] [--json PATH], or python -m bench.run --only cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cpu import PG_BACKGROUND, CpuWindow, PostgresSampler
from bench.pgwire import ProxyProcess
from bench.stack import ROOT, celery_worker, http_json, make_customer, switchboard_workers, wait_until, web_server
from harness.processes import redis_server

FULL = {"conversations": 300, "repetitions": 3, "warmup": 5}
QUICK = {"conversations": 10, "repetitions": 1, "warmup": 2}
HOPS = 7
POSTERS = 16  # client threads posting conversations
STALL_SECONDS = 90.0
#: On this shared, overloaded machine a thread-pool worker's try sometimes waited more than the default 5 s for one
#: of its pool's connections and failed (the supervisor would resume the run; the bench runs none): wait longer.
BENCH_SETTINGS = {"DB_POOL_TIMEOUT_SECONDS": "30"}
ROWS = ("front", "workers", "postgres (web)", "postgres (workers)", PG_BACKGROUND, "redis")


def via_proxy(database_url: str, port: int, application_name: str) -> str:
    parts = urlsplit(database_url)
    netloc = f"{parts.netloc.rsplit('@', 1)[0]}@127.0.0.1:{port}" if "@" in parts.netloc else f"127.0.0.1:{port}"
    query = urlencode({"sslmode": "disable", "application_name": application_name})
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class RedisCounter:
    """Commands the redis-server processed (INFO commandstats), less the ones this process sent to read them."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.own = 0  # commands this process sent

    def get(self, key: str) -> int:
        self.own += 1
        return int(self.client.get(key) or 0)

    def stats(self) -> dict[str, int]:
        self.own += 1
        stats = self.client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def measure(
    counter: RedisCounter, proxy: ProxyProcess | None, window: CpuWindow, work: Any, conversations: int
) -> dict[str, Any]:
    own_before = counter.own
    before = counter.stats()
    own_info = counter.own - own_before
    statements_before = proxy.snapshot() if proxy else {}
    window.start()
    front_cpu = work()
    measured = window.stop()
    own_gets = counter.own - own_before - own_info
    after = counter.stats()
    by_command = {name: after[name] - before.get(name, 0) for name in after if name != "info"}
    by_command = {name: count for name, count in by_command.items() if count}
    if own_gets:
        by_command["get"] = by_command.get("get", 0) - own_gets
    cpu = measured["cpu_s"]
    if front_cpu is not None:
        cpu["front"] = front_cpu
    per_conversation = {kind: seconds * 1000 / conversations for kind, seconds in cpu.items()}
    statements: dict[str, float] = {}
    if proxy:
        after_statements = proxy.snapshot()
        for kind, counts in after_statements.items():
            old = statements_before.get(kind, {})
            ran = sum(counts.get(t, 0) - old.get(t, 0) for t in ("query", "execute"))
            statements[kind] = ran / conversations
    return {
        "cpu_ms": {kind: per_conversation.get(kind, 0.0) for kind in ROWS},
        "cpu_ms_total": sum(per_conversation.get(kind, 0.0) for kind in ROWS),
        "statements": {**statements, "total": sum(statements.values())},
        "redis_commands": sum(by_command.values()) / conversations,
        "redis_by_command": {name: count / conversations for name, count in sorted(by_command.items())},
        "wall_s": measured["wall_s"],
        "conversations_per_s": conversations / measured["wall_s"],
        "machine_busy_cores": measured["machine_busy_s"] / measured["wall_s"],
    }


def post_conversations(base: str, token: str, count: int) -> list[str]:
    def one(_: int) -> str:
        conversation = http_json("POST", f"{base}/api/v1/conversations/", token)["id"]
        body = {"content": "How long does shipping take?"}
        return str(http_json("POST", f"{base}/api/v1/conversations/{conversation}/messages/", token, body)["run"]["id"])

    with ThreadPoolExecutor(POSTERS) as pool:
        return list(pool.map(one, range(count)))


def wait_runs(run_ids: list[str], stall: float = STALL_SECONDS) -> int:
    """Wait until every run has ended, or none has for `stall` seconds (a run whose try failed waits for the
    supervisor, which the bench does not run); how many completed."""
    from orchestration.models import Run

    ended, progress = -1, time.monotonic()
    while ended < len(run_ids) and time.monotonic() - progress < stall:
        now_ended = Run.objects.filter(id__in=run_ids).exclude(status__in=["queued", "running"]).count()
        if now_ended != ended:
            ended, progress = now_ended, time.monotonic()
        time.sleep(0.05)
    return Run.objects.filter(id__in=run_ids, status="completed").count()


def stored_bytes(run_ids: list[str]) -> dict[str, dict[str, float]]:
    """Rows and bytes of row data (pg_column_size of each row: no indexes, no page overhead) per conversation."""
    from django.db import connection

    from conversations.models import Conversation, Message
    from orchestration.models import Run, Step, StepAttempt

    runs = Run.objects.filter(id__in=run_ids)
    querysets = {
        "run": runs,
        "step": Step.objects.filter(run__in=runs),
        "step_attempt": StepAttempt.objects.filter(step__run__in=runs),
        "message": Message.objects.filter(conversation__runs__in=runs),
        "conversation": Conversation.objects.filter(runs__in=runs),
    }
    out = {}
    for name, queryset in querysets.items():
        table = queryset.model._meta.db_table
        sql, params = queryset.values("pk").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                f'SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) FROM "{table}" t WHERE t.id IN ({sql})', params
            )
            rows, size = cursor.fetchone()
        out[name] = {"rows": rows / len(run_ids), "bytes": size / len(run_ids)}
    return out


def switchboard_costs(env: dict[str, str], sizes: dict[str, int], redis_pid: int) -> list[dict[str, Any]]:
    database = urlsplit(env["DATABASE_URL"]).path.lstrip("/")
    admin_url = urlunsplit(urlsplit(env["DATABASE_URL"])._replace(path="/postgres"))
    target = urlsplit(env["DATABASE_URL"])
    proxy = ProxyProcess(target.hostname or "127.0.0.1", target.port or 5432, ["web", "worker"])
    web_env = {**env, "DATABASE_URL": via_proxy(env["DATABASE_URL"], proxy.ports["web"], "sb-web")}
    worker_env = {**env, "DATABASE_URL": via_proxy(env["DATABASE_URL"], proxy.ports["worker"], "sb-worker")}
    _, token = make_customer("bench-cost@example.com")
    counter = RedisCounter(env["REDIS_URL"])
    results = []
    try:
        with web_server(web_env) as web, switchboard_workers(worker_env) as workers:
            wait_runs(post_conversations(web.url, token, sizes["warmup"]))
            for _ in range(sizes["repetitions"]):
                trees = {"front": [web.process.pid], "workers": [w.process.pid for w in workers], "redis": [redis_pid]}
                window = CpuWindow(trees, PostgresSampler(admin_url, database))
                outcome: dict[str, Any] = {}

                def work(outcome: dict[str, Any] = outcome) -> None:
                    run_ids = post_conversations(web.url, token, sizes["conversations"])
                    outcome["completed"] = wait_runs(run_ids)
                    outcome["run_ids"] = run_ids

                figures = measure(counter, proxy, window, work, sizes["conversations"])
                stored = stored_bytes(outcome["run_ids"])
                results.append({**figures, "completed": outcome["completed"], "stored": stored})
    finally:
        proxy.stop()
    return results


def raw_costs(env: dict[str, str], sizes: dict[str, int], redis_pid: int) -> list[dict[str, Any]]:
    from celery import Celery, chain

    client = Celery("raw-client", broker=env["REDIS_URL"], backend=env["REDIS_URL"])
    client.conf.update(task_serializer="json", result_serializer="json", task_default_queue="raw")
    counter = RedisCounter(env["REDIS_URL"])

    def send(count: int) -> None:
        for _ in range(count):
            hops = [client.signature("raw.noop", args=(0,))]
            hops += [client.signature("raw.noop") for _ in range(HOPS - 2)]
            hops.append(client.signature("raw.noop_last", args=(0,), immutable=True))
            chain(*hops).apply_async()

    def run(count: int) -> float:
        start = counter.get("bench:raw:done")
        started = time.thread_time()
        send(count)
        enqueue_cpu = time.thread_time() - started
        wait_until(lambda: counter.get("bench:raw:done") - start >= count, 600, 0.05)
        return enqueue_cpu

    results = []
    with celery_worker(env, app="bench.raw_app", queues="raw", pool="prefork", concurrency=2, name="cost-raw") as raw:
        run(sizes["warmup"])
        for _ in range(sizes["repetitions"]):
            window = CpuWindow({"workers": [raw.process.pid], "redis": [redis_pid]}, None)
            figures = measure(counter, None, window, lambda: run(sizes["conversations"]), sizes["conversations"])
            figures["statements"] = {"total": 0.0}
            results.append(figures)
    return results


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the repetitions (the per-command breakdown: of the first)."""
    first = runs[0]
    out: dict[str, Any] = {"repetitions": len(runs), "redis_by_command": first["redis_by_command"]}
    if "stored" in first:
        out["stored"] = first["stored"]
    for key in ("cpu_ms", "statements"):
        out[key] = {name: statistics.median(r[key].get(name, 0.0) for r in runs) for name in first[key]}
    for key in ("cpu_ms_total", "redis_commands", "wall_s", "conversations_per_s", "machine_busy_cores"):
        out[key] = statistics.median(r[key] for r in runs)
    if "completed" in first:
        out["completed"] = min(r["completed"] for r in runs)
    return out


def bench_cost(env: dict[str, str], sizes: dict[str, int]) -> dict[str, Any]:
    """Both sides, on a private redis-server; the figures per conversation (medians) and their ratios."""
    redis = redis_server().start()
    try:
        url = f"redis://127.0.0.1:{redis.port}/0"
        private = {**env, **BENCH_SETTINGS, "REDIS_URL": url, "BENCH_REDIS_URL": url}
        assert redis.process is not None
        raw = medians(raw_costs(private, sizes, redis.process.pid))
        ours = medians(switchboard_costs(private, sizes, redis.process.pid))
    finally:
        redis.stop()
    ratio = {"cpu_ms_total": ours["cpu_ms_total"] / raw["cpu_ms_total"]}
    ratio["redis_commands"] = ours["redis_commands"] / raw["redis_commands"]
    return {"conversations": sizes["conversations"], "hops": HOPS, "switchboard": ours, "raw": raw, "ratio": ratio}


def cost_table(cost: dict[str, Any]) -> str:
    ours, raw = cost["switchboard"], cost["raw"]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.1f}x" if b > 0 else "-"

    labels = {"front": "web server (raw: enqueueing client)", "workers": "Celery workers (with children)"}
    lines = [
        f"Cost per conversation: {cost['conversations']} conversations x {ours['repetitions']} repetitions (medians);"
        f" raw Celery: {cost['hops']}-hop chains of no-op tasks",
        "",
        "| per conversation | Switchboard | raw Celery | ratio |",
        "|---|---|---|---|",
    ]
    for kind in ROWS:
        a, b = ours["cpu_ms"][kind], raw["cpu_ms"].get(kind, 0.0)
        lines.append(f"| CPU ms: {labels.get(kind, kind)} | {a:.2f} | {b:.2f} | {ratio(a, b)} |")
    lines += [
        f"| CPU ms: total | {ours['cpu_ms_total']:.2f} | {raw['cpu_ms_total']:.2f} |"
        f" {ratio(ours['cpu_ms_total'], raw['cpu_ms_total'])} |",
        f"| database statements (web + workers) | {ours['statements']['total']:.1f}"
        f" ({ours['statements'].get('web', 0):.1f} + {ours['statements'].get('worker', 0):.1f}) | 0 | - |",
        f"| Redis commands | {ours['redis_commands']:.1f} | {raw['redis_commands']:.1f} |"
        f" {ratio(ours['redis_commands'], raw['redis_commands'])} |",
        f"| conversations/s during the window | {ours['conversations_per_s']:.1f} | {raw['conversations_per_s']:.1f} |"
        f" {ratio(ours['conversations_per_s'], raw['conversations_per_s'])} |",
        f"| machine busy (cores, every process) | {ours['machine_busy_cores']:.2f} |"
        f" {raw['machine_busy_cores']:.2f} | - |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-n", type=int, help="conversations per repetition")
    parser.add_argument("--reps", type=int, help="repetitions")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "cost.json"))
    args = parser.parse_args()
    sizes = dict(QUICK if args.quick else FULL)
    if args.n:
        sizes["conversations"] = args.n
    if args.reps:
        sizes["repetitions"] = args.reps
    from bench.stack import bench_environment

    env, owned_redis = bench_environment()
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    try:
        cost = bench_cost(env, sizes)
    finally:
        if owned_redis:
            owned_redis.stop()
    result = {"command": " ".join(["python -m bench.cost", *sys.argv[1:]]), "cores": os.cpu_count(), "cost": cost}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(cost_table(cost))
    print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
