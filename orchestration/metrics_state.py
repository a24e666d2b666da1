"""Gauges read when `/metrics` is scraped: the state of the review queue, the dead letters, the breakers, the workers
and the runs under way — from the database and Redis, where it is kept, so every scrape is right whichever process
answers it (nothing to sum across processes, nothing lost in a restart). Four small indexed queries and two Redis
round trips (the set of breaker names, then their states) per scrape."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import Now
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from orchestration.models import DeadLetter, ReviewItem, Run, WorkerBeat
from project.breaker import KEY_PREFIX, NAMES_KEY
from project.caching import redis_client

logger = logging.getLogger(__name__)

#: The gauges' names, for the dashboard's and the alerts' checks (`tests/test_ops_artifacts.py`).
GAUGES = (
    "switchboard_review_queue_depth",
    "switchboard_review_queue_oldest_age_seconds",
    "switchboard_review_queue_overdue",
    "switchboard_dead_letters_open",
    "switchboard_circuit_breaker_open",
    "switchboard_circuit_breaker_open_seconds",
    "switchboard_workers_alive",
    "switchboard_worker_heartbeat_age_seconds",
    "switchboard_runs_active",
)
#: Breakers read per scrape at most (one per model, remote agent, MCP server, shop: a handful).
BREAKERS_MAX = 200


class StateCollector(Collector):
    """The state gauges, computed at each scrape. A store that cannot be read leaves its gauges out of that scrape
    (Prometheus then has no sample, which `absent()` alerts can see) rather than failing the scrape."""

    def collect(self) -> Iterator[Metric]:
        try:
            yield from _reviews()
            yield from _dead_letters()
            yield from _workers()
            yield from _runs()
        except DatabaseError as exc:
            logger.warning("metrics: the database could not be read: %s", exc)
        try:
            yield from _breakers()
        except RedisError as exc:
            logger.warning("metrics: the breakers could not be read: %s", exc)


def _reviews() -> Iterator[Metric]:
    rows = list(
        ReviewItem.objects.filter(status=ReviewItem.Status.OPEN, run__replay_of=None)
        .values_list("reason")
        .annotate(n=Count("id"), oldest=Min("created_at"), overdue=Count("id", filter=Q(overdue=True)))
        .order_by("reason")
    )
    depth = GaugeMetricFamily(
        "switchboard_review_queue_depth", "Open review items (waiting for a person), by reason.", labels=["reason"]
    )
    for reason, count, _, _ in rows:
        depth.add_metric([reason], count)
    yield depth
    oldest = min((row[2] for row in rows), default=None)
    age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
    yield GaugeMetricFamily(
        "switchboard_review_queue_oldest_age_seconds", "Age of the oldest open review item (0 when none).", value=age
    )
    yield GaugeMetricFamily(
        "switchboard_review_queue_overdue",
        "Open review items older than REVIEW_OVERDUE_SECONDS.",
        value=sum(row[3] for row in rows),
    )


def _dead_letters() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "switchboard_dead_letters_open", "Dead letters not replayed yet, by reason.", labels=["reason"]
    )
    rows = DeadLetter.objects.filter(status=DeadLetter.Status.OPEN).values_list("reason").annotate(n=Count("id"))
    for reason, count in rows.order_by("reason"):
        family.add_metric([reason], count)
    yield family


def _workers() -> Iterator[Metric]:
    """Judged by the database's clock, which stamps the heartbeats (`orchestration.liveness`), as the supervisor
    does."""
    beats = WorkerBeat.objects.filter(gone_at=None).aggregate(
        alive=Count("id", filter=Q(beat_at__gte=Now() - timedelta(seconds=settings.WORKER_DEAD_SECONDS))),
        age=Now() - Max("beat_at"),
    )
    yield GaugeMetricFamily("switchboard_workers_alive", "Workers whose heartbeat is recent.", value=beats["alive"])
    yield GaugeMetricFamily(
        "switchboard_worker_heartbeat_age_seconds",
        "Seconds since the latest heartbeat of any worker (+Inf when none ever beat).",
        value=beats["age"].total_seconds() if beats["age"] is not None else float("inf"),
    )


def _runs() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "switchboard_runs_active", "Runs under way or waiting for a person, by status.", labels=["status"]
    )
    counts = dict(
        Run.objects.filter(status__in=[*Run.ACTIVE, Run.Status.AWAITING_REVIEW], replay_of=None)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    for status in (*Run.ACTIVE, Run.Status.AWAITING_REVIEW):
        family.add_metric([str(status)], counts.get(status, 0))
    yield family


def _breakers() -> Iterator[Metric]:
    client = redis_client(settings.REDIS_URL)
    is_open = GaugeMetricFamily(
        "switchboard_circuit_breaker_open", "1 while a breaker is open (calls paused), by breaker.", labels=["breaker"]
    )
    open_for = GaugeMetricFamily(
        "switchboard_circuit_breaker_open_seconds",
        "Seconds since an open breaker opened (0 when closed), by breaker.",
        labels=["breaker"],
    )
    now = time.time()
    members: set[bytes] = client.smembers(NAMES_KEY)  # type: ignore[assignment]  # a bytes client
    names = sorted(name.decode() for name in members)[:BREAKERS_MAX]
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(KEY_PREFIX + name)
        states = pipe.execute()
    for name, state in zip(names, states, strict=True):
        opened = state.get(b"state") == b"open"
        is_open.add_metric([name], 1.0 if opened else 0.0)
        open_for.add_metric([name], max(0.0, now - float(state.get(b"opened_at", now))) if opened else 0.0)
    yield is_open
    yield open_for
