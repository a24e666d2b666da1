"""What recording a run costs in storage (`orchestration.recordings`): rows and bytes per run, by kind of call.

Runs N conversations (a shipping question, an order's status, a refund under the automatic limit, in turn) through
the production worker layout, once with the offline provider and once with the openai provider against the local
fake OpenAI-compatible server (whose requests carry the real prompts, tools and schemas, and raw answers with
usage: what a production recording holds), then reads the StepCall rows of those runs: their count, the bytes of
their columns (`pg_column_size`, i.e. as stored, compressed JSON included), and the growth of the table with its
indexes and TOAST (`pg_total_relation_size`). PostgreSQL only.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python -m bench.recording_cost -n 30
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench.stack import ROOT, bench_environment, make_customer, start_run, switchboard_workers, wait_until
from harness.fake_openai import SHIPPING_ANSWERS, FakeOpenAI

MESSAGES = ("How long does shipping take?", "Where is my order {order}?", "Please refund {order}, it arrived broken.")


def measure(env: dict[str, str], conversations: int, label: str) -> dict[str, Any]:
    from django.db import connection

    from conversations.services import order_create_demo
    from orchestration.models import Run, StepCall

    customer, _ = make_customer(f"bench-recording-{label}@example.com")
    orders = order_create_demo(customer=customer, count=3)
    small = min(orders, key=lambda order: order.total)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('orchestration_stepcall')")
        size_before = cursor.fetchone()[0]
    with switchboard_workers(env):
        runs = [
            start_run(customer, MESSAGES[index % len(MESSAGES)].format(order=small.id)).id
            for index in range(conversations)
        ]
        active = Run.objects.filter(id__in=runs, status__in=Run.ACTIVE)
        wait_until(lambda: not active.exists(), timeout=60 + conversations, interval=0.2)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('orchestration_stepcall')")
        size_after = cursor.fetchone()[0]
        cursor.execute(
            "SELECT kind, count(*), sum(pg_column_size(c.*)) FROM orchestration_stepcall c WHERE run_id = ANY(%s) "
            "GROUP BY kind ORDER BY kind",
            [list(runs)],
        )
        by_kind = {kind: {"rows": rows, "bytes": int(size)} for kind, rows, size in cursor.fetchall()}
    rows = StepCall.objects.filter(run_id__in=runs).count()
    row_bytes = sum(kind["bytes"] for kind in by_kind.values())
    return {
        "provider": label,
        "runs": len(runs),
        "completed": Run.objects.filter(id__in=runs, status=Run.Status.COMPLETED).count(),
        "rows_per_run": rows / len(runs),
        "row_bytes_per_run": row_bytes / len(runs),
        "table_growth_per_run": (size_after - size_before) / len(runs),
        "by_kind_bytes_per_run": {kind: value["bytes"] / len(runs) for kind, value in by_kind.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=30, help="conversations per provider (30)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "recording_cost.json"))
    args = parser.parse_args()
    env, owned_redis = bench_environment()
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    fake = FakeOpenAI(answers=dict(SHIPPING_ANSWERS)).start()
    openai_env = {
        **env,
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "sk-bench-not-a-real-key",
        "LLM_MODEL": "fake-model",
    }
    try:
        results = [measure(env, args.n, "offline"), measure(openai_env, args.n, "openai")]
    finally:
        fake.stop()
        if owned_redis:
            owned_redis.stop()
    report = {"command": " ".join(["python -m bench.recording_cost", *sys.argv[1:]]), "results": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"{'provider':<9} {'runs':>5} {'rows/run':>9} {'bytes/run':>10} {'on disk/run':>12}  by kind (bytes/run)")
    for r in results:
        kinds = ", ".join(f"{kind} {size:,.0f}" for kind, size in r["by_kind_bytes_per_run"].items())
        print(
            f"{r['provider']:<9} {r['runs']:>5} {r['rows_per_run']:>9.1f} {r['row_bytes_per_run']:>10,.0f} "
            f"{r['table_growth_per_run']:>12,.0f}  {kinds}"
        )
    print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
