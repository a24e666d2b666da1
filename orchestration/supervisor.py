"""The supervisor: finds work that nobody is doing any more and resumes it, from the database, within seconds.

`supervisor_tick` runs every SUPERVISOR_TICK_SECONDS in `manage.py supervise` (the Procfile's `supervisor`) and, as a
fallback, in the beat-driven sweep. Each tick, in order:

1. dead workers: a worker whose heartbeat row (`WorkerBeat`, orchestration.liveness) is older than
   WORKER_DEAD_SECONDS, or a pool process that left a live worker's row: its running tries are lost
   (`recovery.step_lost`) and the runs whose messages it held, or whose last step it finished, are re-dispatched;
2. expired leases: a try still running past its lease (the agent's time limit) is abandoned and its run re-dispatched;
3. retries: a step waiting to retry whose retry is due is sent again (a retry is a row with a due time, not a
   message waiting in a worker's memory for its countdown);
4. deadlines: an active run past its deadline is timed out (from the database: no message has to arrive for it);
5. the broker's epoch: if the broker's Redis lost its data (a restart without persistence), every active run is
   re-dispatched;
6. stalled runs: an active run with no step under way, none waiting and no progress for SUPERVISOR_STALL_SECONDS
   (SUPERVISOR_STALL_BUSY_SECONDS while messages wait in the queues) is re-dispatched.

Every change is a short transaction under the run's row lock, taken with SKIP LOCKED where two supervisors could race,
so several supervisor processes (or beat's fallback tick beside one) handle each run once. A re-dispatch sends the
run again from its furthest recorded step; steps done return their recorded output, and a delivery of a step another
live worker holds is dropped, so nothing is done twice.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from agents.registry import agents_all
from orchestration import metering
from orchestration.models import Run, Step, StepAttempt, SupervisorMark, WorkerBeat
from orchestration.recordings import recordings_expire
from orchestration.recovery import (
    Cause,
    LostOutcome,
    attempt_lost,
    run_redispatch,
    step_lease_expired,
    step_lost,
    step_retry_send,
)
from orchestration.reviews import reviews_expire, reviews_mark_overdue
from orchestration.runs import run_time_out
from project.caching import redis_client
from project.celery import AGENT_QUEUE_NAMES, app

logger = logging.getLogger(__name__)

#: Runs handled per check per tick (the rest wait for the next tick).
TICK_BATCH = 500
#: The key the supervisor keeps in the broker's Redis: gone means Redis lost its data.
EPOCH_KEY = "switchboard:epoch"


@dataclass
class TickReport:
    """What one tick did, by run id (a run re-dispatched for several causes is listed under the first)."""

    redispatched: dict[str, list[str]] = field(default_factory=dict)
    """Cause -> runs sent again."""
    lost_tries: int = 0
    """Tries recorded as lost with their worker process."""
    dead_workers: list[str] = field(default_factory=list)
    """Worker rows found dead (and handled) this tick."""
    timed_out: list[str] = field(default_factory=list)


@dataclass
class SweepReport:
    """What one sweep did: the tick's work, and the review queue's deadlines."""

    tick: TickReport = field(default_factory=TickReport)
    reviews_overdue: int = 0
    """Review items newly marked overdue."""
    reviews_expired: list[str] = field(default_factory=list)
    """Review items whose proposed action was denied for want of a decision."""
    recordings_expired: int = 0
    """Recorded calls deleted as older than LLM_RECORD_DAYS (`orchestration.recordings`)."""


def supervisor_tick(now: datetime | None = None) -> TickReport:
    """One pass of every check (see the module's docstring)."""
    now = now or timezone.now()
    report = TickReport()
    pending: dict[str, Cause] = {}
    for run_id in workers_dead(now, report):
        pending.setdefault(run_id, Cause.WORKER_LOST)
    for run_id in leases_expired(now):
        pending.setdefault(run_id, Cause.LEASE_EXPIRED)
    for run_id in retries_due(now):
        pending.setdefault(run_id, Cause.RETRY_DUE)
    report.timed_out = deadlines_enforce(now)
    if broker_lost():
        for active_id in Run.objects.filter(status__in=Run.ACTIVE).values_list("id", flat=True)[:TICK_BATCH]:
            pending.setdefault(str(active_id), Cause.BROKER_LOST)
    for run_id, cause in pending.items():
        if run_redispatch(run_id, cause, now):
            report.redispatched.setdefault(cause.value, []).append(run_id)
    quiet_since = now - timedelta(seconds=stall_seconds())
    for run_id in runs_stalled(now, quiet_since):
        if run_id not in pending and run_redispatch(run_id, Cause.STALLED, now, quiet_since=quiet_since):
            report.redispatched.setdefault(Cause.STALLED.value, []).append(run_id)
    for cause_name, run_ids in report.redispatched.items():
        metering.recovered(cause=cause_name, runs=len(run_ids))
    return report


def supervisor_sweep(now: datetime | None = None) -> SweepReport:
    """Beat's periodic pass: a tick (in case no supervisor process runs), then review deadlines."""
    now = now or timezone.now()
    report = SweepReport(tick=supervisor_tick(now))
    report.reviews_overdue = reviews_mark_overdue(now)
    report.reviews_expired = reviews_expire(now)
    report.recordings_expired = recordings_expire(now)
    return report


# --- 1. Dead workers ------------------------------------------------------------------------------


def workers_dead(now: datetime, report: TickReport) -> set[str]:
    """Record the tries lost with dead workers and pool processes; return the runs to re-dispatch.

    Heartbeats are stamped with the database's clock and judged by it. No worker is taken for dead until supervisors
    have been ticking for WORKER_DEAD_SECONDS without a gap: after the database was away, workers could not beat
    either, and must have had the time to beat again."""
    database_now = database_clock()
    if not ticks_continuous(database_now):
        return set()
    cutoff = database_now - timedelta(seconds=settings.WORKER_DEAD_SECONDS)
    beats = list(WorkerBeat.objects.filter(gone_at__isnull=True))
    live = [beat for beat in beats if beat.beat_at >= cutoff]
    dead = [beat for beat in beats if beat.beat_at < cutoff]
    known_nodes = {beat.node for beat in beats}
    runs: set[str] = set()
    running = StepAttempt.objects.filter(status=StepAttempt.Status.RUNNING, step__status=Step.Status.RUNNING)
    for attempt in running.select_related("step").order_by("started_at")[:TICK_BATCH]:
        node, _, pid = attempt.worker.rpartition(":")
        if node not in known_nodes or _process_alive(node, pid, attempt.started_at, live):
            continue
        if attempt_lost(attempt=attempt, now=now) != LostOutcome.NOTHING:  # NOTHING: another supervisor took it
            report.lost_tries += 1
            runs.add(str(attempt.step.run_id))
    for beat in dead:
        runs |= _worker_gone(beat, now, report)
    return runs


def database_clock() -> datetime:
    """The database's clock: heartbeats are stamped with it, since hosts' clocks may disagree."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT CURRENT_TIMESTAMP")
        value = cursor.fetchone()[0]
    if isinstance(value, str):  # SQLite: UTC, as text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def ticks_continuous(database_now: datetime) -> bool:
    """Note this tick; whether supervisors have ticked without a gap (longer than a few ticks: the database, or every
    supervisor, was away) for WORKER_DEAD_SECONDS."""
    gap = timedelta(seconds=max(3 * settings.SUPERVISOR_TICK_SECONDS, 2.0))
    last = SupervisorMark.objects.filter(name="tick").values_list("value", flat=True).first()
    since = SupervisorMark.objects.filter(name="ticking_since").values_list("value", flat=True).first()
    if last is None or since is None or database_now - datetime.fromisoformat(last) > gap:
        since = database_now.isoformat()
        SupervisorMark.objects.update_or_create(name="ticking_since", defaults={"value": since})
    SupervisorMark.objects.update_or_create(name="tick", defaults={"value": database_now.isoformat()})
    return database_now - datetime.fromisoformat(since) >= timedelta(seconds=settings.WORKER_DEAD_SECONDS)


def _process_alive(node: str, pid: str, started_at: datetime, live: list[WorkerBeat]) -> bool:
    """Whether the process `pid` of worker `node` that started a try at `started_at` (its clock) is alive: a live row
    of the node's, from before the try, lists it — or the try started after the row's last beat (a pool process newer
    than the row). Rows and tries of one host are compared by that host's clock."""
    rows = [beat for beat in live if beat.node == node and started_at >= beat.started_at]
    if any(pid.isdigit() and int(pid) in beat.pids for beat in rows):
        return True
    return any(started_at >= beat.host_beat_at for beat in rows)


def _worker_gone(beat: WorkerBeat, now: datetime, report: TickReport) -> set[str]:
    """Take a dead worker's work over: the tries it was executing are lost, and the runs whose messages it held or
    whose steps it finished last are re-dispatched. The row is marked gone (handled once)."""
    with transaction.atomic():
        claimed = WorkerBeat.objects.select_for_update(skip_locked=True).filter(id=beat.id, gone_at__isnull=True)
        if not claimed.update(gone_at=now):
            return set()  # another supervisor has it
    report.dead_workers.append(beat.name)
    logger.warning("worker %s is gone (last heartbeat %s)", beat.name, beat.beat_at.isoformat())
    runs: set[str] = set()
    for held in beat.held if isinstance(beat.held, list) else []:
        run_id, key, pid = held.get("run"), held.get("step"), held.get("pid")
        if not run_id:
            continue
        runs.add(str(run_id))
        if pid and key:
            _held_try_lost(beat.node, str(run_id), str(key), int(pid), str(held.get("task") or ""), now, report)
    workers = [f"{beat.node}:{pid}" for pid in beat.pids]
    recent = beat.beat_at - timedelta(seconds=2 * settings.WORKER_BEAT_SECONDS)
    finished_last = StepAttempt.objects.filter(
        worker__in=workers,
        step__run__status__in=Run.ACTIVE,
        step__run__last_progress_at__gte=recent,
    ).values_list("step__run_id", flat=True)
    runs |= {str(run_id) for run_id in finished_last[:TICK_BATCH]}
    return runs


def _held_try_lost(node: str, run_id: str, key: str, pid: int, task_id: str, now: datetime, report: TickReport) -> None:
    """A message a dead worker was executing (it may have left no row: an atomic try dies with its transaction). The
    same try found running on a step (`attempt_lost`, a moment before) is recorded once: same task, same process."""
    agent = agents_all().get(key.split(".", 1)[-1])
    if agent is None:
        return
    outcome = step_lost(
        run_id=run_id,
        key=key,
        agent=agent,
        worker=f"{node}:{pid}",
        task_id=task_id,
        wait=False,
        message=None,
        error=f"the worker {node} is gone (no heartbeat) while process {pid} ran this step",
        now=now,
    )
    report.lost_tries += outcome != LostOutcome.NOTHING


# --- 2., 3. Leases and retries ---------------------------------------------------------------------


def leases_expired(now: datetime) -> set[str]:
    """Tries running past their lease: abandoned; their runs to re-dispatch."""
    expired = Step.objects.filter(
        status=Step.Status.RUNNING, lease_expires_at__lt=now, run__status__in=Run.ACTIVE
    ).values_list("id", "run_id")
    return {str(run_id) for step_id, run_id in expired[:TICK_BATCH] if step_lease_expired(step_id=step_id, now=now)}


def retries_due(now: datetime) -> set[str]:
    """Steps whose retry is due (or was sent RETRY_GRACE_SECONDS ago and not taken): their runs to re-dispatch."""
    overdue = list(
        Step.objects.filter(
            status=Step.Status.RETRYING, lease_expires_at__lt=now, run__status__in=Run.ACTIVE
        ).values_list("id", "run_id")[:TICK_BATCH]
    )
    return {str(run_id) for step_id, run_id in overdue if step_retry_send(step_id=step_id, now=now)}


# --- 4. Deadlines ----------------------------------------------------------------------------


def run_deadline_enforce(run_id: UUID | str, now: datetime | None = None) -> bool:
    """Time the run out if it is still active past its deadline; True if it did."""
    now = now or timezone.now()
    with transaction.atomic():
        run = (
            Run.objects.select_for_update(skip_locked=True)
            .filter(id=run_id, status__in=Run.ACTIVE, deadline_at__lte=now)
            .first()
        )
        if run is None:
            return False
        run_time_out(run, detail=f"the run did not finish by its deadline {run.deadline_at.isoformat()}.")
    return True


def deadlines_enforce(now: datetime) -> list[str]:
    overdue = Run.objects.filter(status__in=Run.ACTIVE, deadline_at__lte=now).values_list("id", flat=True)
    return [str(run_id) for run_id in list(overdue[:TICK_BATCH]) if run_deadline_enforce(run_id, now)]


# --- 5. The broker's epoch -------------------------------------------------------------------


def broker_lost() -> bool:
    """Whether a Redis that carries messages or chord state (broker, result backend) lost its data since the last
    tick: the token the supervisor keeps there is gone or new. The first sight of a Redis is not a loss."""
    urls = {url for url in (settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND) if url.startswith("redis")}
    lost = False
    for url in sorted(urls):
        try:
            client = redis_client(url)
            client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)
            raw = client.get(EPOCH_KEY)
            token = raw.decode() if isinstance(raw, bytes) else str(raw or "")
        except RedisError:
            continue  # Redis is down: nothing to decide until it is back
        name = "epoch:" + hashlib.sha256(url.encode()).hexdigest()[:16]
        mark, created = SupervisorMark.objects.get_or_create(name=name, defaults={"value": token})
        # A conditional update: of several supervisors, the one that moves the mark handles the loss.
        if (
            not created
            and mark.value != token
            and SupervisorMark.objects.filter(name=name, value=mark.value).update(value=token)
        ):
            logger.warning("the broker's Redis lost its data (a restart?): every active run is re-dispatched")
            lost = True
    return lost


# --- 6. Stalled runs -------------------------------------------------------------------------


def stall_seconds() -> float:
    """How long a run may go without progress: SUPERVISOR_STALL_SECONDS while the agents' queues are empty, else
    (it may be waiting its turn) SUPERVISOR_STALL_BUSY_SECONDS."""
    idle = queues_waiting() == 0
    return settings.SUPERVISOR_STALL_SECONDS if idle else settings.SUPERVISOR_STALL_BUSY_SECONDS


def runs_stalled(now: datetime, quiet_since: datetime) -> list[str]:
    """Active runs with no step under way, none waiting to retry and no progress since `quiet_since`."""
    busy = Step.objects.filter(
        status__in=[Step.Status.RUNNING, Step.Status.RETRYING], lease_expires_at__gte=now
    ).values("run_id")
    stalled = (
        Run.objects.filter(status__in=Run.ACTIVE, last_progress_at__lt=quiet_since)
        .exclude(Q(id__in=busy))
        .values_list("id", flat=True)
    )
    return [str(run_id) for run_id in stalled[:TICK_BATCH]]


def queues_waiting() -> int | None:
    """Messages waiting in the agents' queues (None if the broker does not answer: taken as busy). A queue the broker
    does not know (nobody declared it since the broker started) has none."""
    try:
        with app.connection_for_read() as connection:
            total = 0
            for name in AGENT_QUEUE_NAMES:  # their backlog tells a run waiting its turn from a lost one
                channel: Any = connection.channel()  # one per queue: AMQP closes a channel on NOT_FOUND
                try:
                    total += channel.queue_declare(queue=name, passive=True).message_count
                except connection.channel_errors:
                    pass  # not declared: empty
                finally:
                    _close_quietly(channel, connection)
            return total
    except (BrokerError, RedisError, OSError) as exc:
        logger.debug("queue depth unknown: %s", exc)
        return None


def _close_quietly(channel: Any, connection: Any) -> None:
    try:
        channel.close()
    except (*connection.connection_errors, *connection.channel_errors):
        pass
