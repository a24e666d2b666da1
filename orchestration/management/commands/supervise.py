"""manage.py supervise [--once]: the supervisor process (the Procfile's `supervisor`).

Every SUPERVISOR_TICK_SECONDS it runs one tick (orchestration.supervisor.supervisor_tick): dead workers, expired
leases, overdue retries, run deadlines, a broker that lost its data, stalled runs. It needs the database and reads the
broker; while either is away it logs, waits and tries again. Several may run at once (each run is handled once).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, connection
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from orchestration.supervisor import supervisor_tick

logger = logging.getLogger("orchestration.supervisor")


class Command(BaseCommand):
    help = "Resume work whose worker died, enforce deadlines: one tick every SUPERVISOR_TICK_SECONDS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="run one tick and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        logger.info("supervisor started: a tick every %.1fs", settings.SUPERVISOR_TICK_SECONDS)
        while not stop.is_set():
            try:
                lock_timeout_set()
                report = supervisor_tick()
            except DatabaseError as exc:
                logger.warning("supervisor tick skipped, the database is unavailable: %s", exc)
                connection.close()
            except (BrokerError, RedisError, OSError) as exc:
                logger.warning("supervisor tick cut short, the broker is unavailable: %s", exc)
            else:
                if report.redispatched or report.timed_out or report.dead_workers:
                    logger.info(
                        "supervisor tick: %s",
                        {
                            "redispatched": {cause: len(runs) for cause, runs in report.redispatched.items()},
                            "lost_tries": report.lost_tries,
                            "dead_workers": report.dead_workers,
                            "timed_out": len(report.timed_out),
                        },
                    )
            if options["once"]:
                break
            stop.wait(settings.SUPERVISOR_TICK_SECONDS)
        logger.info("supervisor stopped")


def lock_timeout_set() -> None:
    """This process's database session waits at most 2 s for a lock (PostgreSQL): a dead host's open transaction may
    hold a run's lock until DATABASE_IDLE_IN_TRANSACTION_SECONDS; the tick fails fast and the next goes on."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
