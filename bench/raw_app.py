"""The baseline: a raw Celery app on the same broker and backend, with the same delivery settings
(late acks, requeue on worker loss, prefetch 1, JSON), and a no-op task."""

from __future__ import annotations

import os

import redis
from celery import Celery
from kombu import Queue

BROKER = os.environ["BENCH_REDIS_URL"]

app = Celery("raw", broker=BROKER, backend=BROKER)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="raw",
    task_queues=(Queue("raw"),),
    broker_connection_retry_on_startup=True,
)
_done = redis.Redis.from_url(BROKER)


@app.task(name="raw.noop")
def noop(value: int = 0) -> int:
    return value + 1


@app.task(name="raw.noop_last")
def noop_last(value: int = 0, counter: str = "bench:raw:done") -> int:
    """The last task of a chain: counts finished chains (for throughput)."""
    _done.incr(counter)
    return value + 1
