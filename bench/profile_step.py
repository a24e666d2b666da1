"""Where a step's bookkeeping goes: time and SQL statements per step, measured in-process.

Usage (after `make bench` created the bench database; same environment variables):
    DATABASE_URL=... REDIS_URL=... .venv/bin/python -m bench.profile_step [-n 50]
It records no-op steps the three ways the task wrapper does — one statement for a
read-only `atomic` agent (orchestration/fast_steps.py), one transaction for an
`atomic` agent that writes (the locked path, also the fast path's fallback), lease
then record for the others (two transactions, or one statement each:
orchestration/fast_leased_steps.py) — without Celery, and prints the median time and the
statements of one step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=50)
    args = parser.parse_args()
    # Django and the project are imported once the bench's database and Redis are chosen (bench_environment).
    from bench.stack import bench_environment, make_customer

    env, owned_redis = bench_environment()
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from agents.envelope import Envelope
    from agents.registry import agent_get
    from conversations.services import conversation_create, message_create
    from orchestration import fast_leased_steps, fast_steps, steps
    from orchestration.attempts import Done, Proceed
    from orchestration.runner import envelope_after
    from orchestration.runs import run_start

    customer, _ = make_customer("bench-profile@example.com")
    agent = agent_get("noop")

    def new_run():
        with mock.patch("orchestration.runs.run_dispatch"), transaction.atomic():
            conversation = conversation_create(customer=customer)
            message, _ = message_create(conversation_id=conversation.id, role="customer", content="x")
            return run_start(
                conversation=conversation,
                message=message,
                trace_id="profile",
                slip=["noop"] * 3,
                budget={"max_agent_visits": 5},
            )

    def handle(envelope: Envelope):
        result = agent.handle(envelope)
        after, control = envelope_after(envelope, agent.name, result)
        return result, after, control

    def atomic(envelope: Envelope) -> None:
        steps.step_run_atomic(envelope=envelope, agent=agent, task_id="p", worker="w", execute=lambda: handle(envelope))

    def fast(envelope: Envelope) -> None:
        start = fast_steps.step_run_fast(
            envelope=envelope, agent=agent, task_id="p", worker="w", execute=lambda: handle(envelope)
        )
        assert isinstance(start, Done), start

    def leased(envelope: Envelope) -> None:
        start = steps.step_begin(envelope=envelope, agent=agent, task_id="p", worker="w")
        assert isinstance(start, Proceed)
        result, after, control = handle(envelope)
        steps.step_succeed(attempt=start.attempt, result=result, envelope=after, control=control)

    def leased_fast(envelope: Envelope) -> None:
        start = fast_leased_steps.step_begin_fast(envelope=envelope, agent=agent, task_id="p", worker="w")
        assert isinstance(start, Proceed), start
        result, after, control = handle(envelope)
        fast_leased_steps.step_succeed_fast(attempt=start.attempt, result=result, envelope=after, control=control)

    modes = (
        ("fast (one statement)", fast),
        ("atomic (one transaction)", atomic),
        ("leased (claim, then record)", leased),
        ("leased fast (one statement each)", leased_fast),
    )
    for name, record in modes:
        runs = [new_run() for _ in range(args.n)]
        times, statements = [], 0
        for run in runs:
            envelope = Envelope.from_dict(run.start_envelope)
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                record(envelope)
                times.append(time.perf_counter() - started)
            statements = len(queries.captured_queries)
        print(f"{name}: {statistics.median(times) * 1000:.2f} ms per step, {statements} SQL statements")
        for query in queries.captured_queries:
            print(f"    {' '.join(query['sql'].split())[:100]}")
    if owned_redis:
        owned_redis.stop()


if __name__ == "__main__":
    main()
