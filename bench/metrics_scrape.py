"""What a scrape of /metrics costs: time and size, after a workload, with the production worker layout.

Runs N conversations (offline provider) through the web's API-less path (runs started in this process, as the bench
does) with the web, the `default` and `llm` workers writing their counts in one fresh multiprocess directory, then
scrapes /metrics M times through the web (uvicorn) and reports the median and p95 time, the body's size, the
samples, and the files the counts are summed from.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python -m bench.metrics_scrape -n 100 --scrapes 50
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.stack import ROOT, bench_environment, make_customer, start_run, switchboard_workers, wait_until, web_server

TOKEN = "bench-metrics-token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100, help="conversations first (100)")
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "metrics_scrape.json"))
    args = parser.parse_args()
    env, owned_redis = bench_environment()
    counts = tempfile.mkdtemp(prefix="switchboard-metrics-")
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": counts, "METRICS_TOKEN": TOKEN}
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from orchestration.models import Run

    call_command("migrate", verbosity=0)
    customer, _ = make_customer("bench-metrics@example.com")
    try:
        with switchboard_workers(env), web_server(env) as web:
            runs = [start_run(customer, "How long does shipping take?").id for _ in range(args.n)]
            active = Run.objects.filter(id__in=runs, status__in=Run.ACTIVE)
            wait_until(lambda: not active.exists(), timeout=60 + args.n, interval=0.2)
            times, size, samples = [], 0, 0
            request = urllib.request.Request(f"{web.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            for _ in range(args.scrapes):
                started = time.perf_counter()
                with urllib.request.urlopen(request, timeout=30) as response:
                    body = response.read()
                times.append((time.perf_counter() - started) * 1000)
                size = len(body)
                samples = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    finally:
        if owned_redis:
            owned_redis.stop()
    ordered = sorted(times)
    result = {
        "command": " ".join(["python -m bench.metrics_scrape", *sys.argv[1:]]),
        "conversations": args.n,
        "scrapes": args.scrapes,
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "bytes": size,
        "samples": samples,
        "files": len(list(Path(counts).glob("*.db"))),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
