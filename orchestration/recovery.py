"""Resuming work whose worker died, from the database: lost tries, and re-dispatching a run from where it stands.

The database is the record of what is in flight; the broker is the fast path. When a try is lost with its worker
process (`step_lost`: the pool child died, or the supervisor found the worker dead) its step is put back to waiting,
so the next delivery takes it over at once, and the run is sent again from its furthest recorded step
(`run_redispatch`). A late or duplicate delivery of the old message still does nothing twice: every step is claimed
once under the run's lock (`orchestration.claims`).
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.base import Agent
from agents.registry import agents_all
from orchestration.attempts import step_key
from orchestration.deadletters import dead_letter_record
from orchestration.models import Run, Step, StepAttempt
from orchestration.pipeline import run_dispatch, run_resume_envelope
from orchestration.runner import envelope_receive
from orchestration.runs import run_fail
from project.errors import InvalidEnvelope, PermanentError

logger = logging.getLogger(__name__)


class Cause(enum.StrEnum):
    """Why the supervisor re-dispatched a run (logged, and counted in `Run.recoveries`)."""

    WORKER_LOST = "worker_lost"
    """The worker (or the pool process) holding its message died or was cut off."""
    LEASE_EXPIRED = "lease_expired"
    """A try ran past its lease (its time limit) with nobody finishing it."""
    RETRY_DUE = "retry_due"
    """A step waiting to retry is due (retries are rows, not messages waiting in a worker)."""
    BROKER_LOST = "broker_lost"
    """The broker lost its messages (Redis restarted without persistence)."""
    STALLED = "stalled"
    """No step under way, none waiting, no progress: its message was lost outside any worker."""


class LostOutcome(enum.StrEnum):
    """What `step_lost` did."""

    RETRY = "retry"
    """The step waits for its next delivery, which takes it over at once."""
    GIVEN_UP = "given_up"
    """The step lost more than STEP_MAX_LOST tries with their workers: poison, dead-lettered, the run failed."""
    NOTHING = "nothing"
    """The step is done, another try holds it, or the run stopped: nothing to do."""


def step_lost(
    *,
    run_id: str,
    key: str,
    agent: Agent,
    worker: str,
    task_id: str,
    message: Any,
    error: str,
    now: datetime | None = None,
    wait: bool = True,
) -> LostOutcome:
    """Record that the try of step `key` running in `worker` ("<node>:<pid>") died with its process.

    A leased try's attempt is abandoned; an atomic try (which left no row: its transaction died with it) gets a row
    now. The step waits for its next delivery (due at once). Past STEP_MAX_LOST losses the message is poison: the
    step is given up with a dead letter carrying the message and the losses, and the run fails.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # The supervisor does not wait on a run another transaction holds (`wait=False`): a dead host's open
        # transaction could hold it for long; the try's lease, or the next tick, takes it then.
        locked = Run.objects.select_for_update(skip_locked=not wait)
        run = locked.defer("start_envelope").filter(id=run_id).first()
        if run is None or run.status not in Run.ACTIVE:
            return LostOutcome.NOTHING
        step = Step.objects.filter(run=run, key=key).first()
        if step is None:
            step = _step_new_lost(run, key, agent, now)
        elif step.status in (Step.Status.COMPLETED, Step.Status.FAILED):
            return LostOutcome.NOTHING
        holder = step.attempts.filter(status=StepAttempt.Status.RUNNING).order_by("-number").first()
        if holder is not None and holder.worker != worker:
            return LostOutcome.NOTHING  # another process holds the step now
        if holder is None and step.status == Step.Status.RUNNING:
            return LostOutcome.NOTHING
        last = step.attempts.order_by("-number").first()
        if holder is None and last is not None and _same_try(last, task_id=task_id, worker=worker):
            return LostOutcome.NOTHING  # this loss is recorded already (by the worker, or the supervisor)
        if holder is not None:
            step.attempts.filter(id=holder.id).abandon(now, error=error)
        else:
            step.attempt += 1
            StepAttempt.objects.create(
                step=step,
                number=step.attempt,
                status=StepAttempt.Status.ABANDONED,
                task_id=task_id,
                worker=worker,
                started_at=now,
                finished_at=now,
                duration_ms=0,
                error_type="WorkerLostError",
                error=error,
            )
        step.lost += 1
        step.error = error
        if step.lost > settings.STEP_MAX_LOST:
            _step_give_up_poison(run, step, task_id=task_id, message=message, now=now)
            return LostOutcome.GIVEN_UP
        step.status = Step.Status.RETRYING
        step.lease_expires_at = now + timedelta(seconds=settings.RETRY_GRACE_SECONDS)
        step.save()
        run.last_progress_at = now
        run.save(update_fields=["last_progress_at"])
    logger.warning("step %s lost with its worker %s (loss %d)", key, worker, step.lost, extra={"run_id": run_id})
    return LostOutcome.RETRY


def _same_try(attempt: StepAttempt, *, task_id: str, worker: str) -> bool:
    """Whether `attempt` is the lost try of this task in this process (recorded already): a redelivered message keeps
    its task id, but runs in another process."""
    return (
        attempt.status == StepAttempt.Status.ABANDONED
        and attempt.worker == worker
        and (not task_id or not attempt.task_id or attempt.task_id == task_id)
    )


def _step_new_lost(run: Run, key: str, agent: Agent, now: datetime) -> Step:
    """The step of an atomic try that died before anything of it was written."""
    hop = int(key.split(".", 1)[0])
    return Step.objects.create(
        run=run,
        key=key,
        trace_id=run.trace_id,
        agent=agent.name,
        version=agent.version,
        hop=hop,
        status=Step.Status.RETRYING,
        attempt=0,
        started_at=now,
    )


def _step_give_up_poison(
    run: Run, step: Step, *, task_id: str, message: Any, now: datetime, why: str = "", reason: str = "worker_lost"
) -> None:
    """Give up a step whose tries keep dying with their workers: the step and the run fail, and the message goes to
    the dead letters with the evidence (every try, where it ran and how it ended)."""
    tries = "; ".join(
        f"try {a.number} on {a.worker or '?'}: {a.status} ({a.error or 'no error'})"
        for a in step.attempts.order_by("number")
    )
    why = why or (
        f"{step.agent} lost its worker process on {step.lost} tries (more than STEP_MAX_LOST={settings.STEP_MAX_LOST})"
    )
    error = PermanentError(f"{why}: the message is taken for poison. {tries}"[:4000])
    step.status = Step.Status.FAILED
    step.finished_at = now
    step.lease_expires_at = None
    step.error = str(error)[:4000]
    step.save()
    run_fail(run, reason="agent_failed", detail=f"{step.agent} failed: {error}")
    dead_letter_record(
        task_name=f"agents.{step.agent}",
        task_id=f"{task_id}:lost:{step.lost}" if reason == "worker_lost" else task_id,
        message=message,
        reason=reason,
        error=error,
        run_id=str(run.id),
        step_key=step.key,
        trace_id=run.trace_id,
    )


def attempt_lost(*, attempt: StepAttempt, message: Any = None, now: datetime | None = None) -> LostOutcome:
    """A leased try found running in a process that is gone (the supervisor's `workers_dead`)."""
    step = attempt.step
    agent = agents_all().get(step.agent)
    if agent is None:
        return LostOutcome.NOTHING
    return step_lost(
        run_id=str(step.run_id),
        key=step.key,
        agent=agent,
        worker=attempt.worker,
        task_id=attempt.task_id,
        message=message,
        error=f"the worker process {attempt.worker} is gone (no heartbeat)",
        now=now,
        wait=False,
    )


def run_redispatch(
    run_id: Any, cause: Cause, now: datetime | None = None, *, quiet_since: datetime | None = None
) -> bool:
    """Send an active run again from its furthest recorded step; False if it is not active, another supervisor has
    it, or (with `quiet_since`, for a stalled run) it moved since then — another supervisor or a worker got there
    first. Steps already done return their recorded output; a step under way elsewhere is left to it."""
    now = now or timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update(skip_locked=True).filter(id=run_id, status__in=Run.ACTIVE).first()
        if run is None or (quiet_since is not None and run.last_progress_at >= quiet_since):
            return False
        run.recoveries += 1
        run.last_progress_at = now
        run.save(update_fields=["recoveries", "last_progress_at"])
        envelope = run_resume_envelope(run)
        # robust: a broker that is down fails the send, not the supervisor; the run is sent again when found
        # stalled (its progress mark moved now, so after SUPERVISOR_STALL_SECONDS).
        transaction.on_commit(lambda: run_dispatch(run, envelope=envelope), robust=True)
    logger.warning(
        "run re-dispatched (%s, recovery %d)",
        cause.value,
        run.recoveries,
        extra={"run_id": str(run.id), "trace_id": run.trace_id},
    )
    return True


def step_lease_expired(*, step_id: int, now: datetime | None = None) -> bool:
    """A try that ran past its lease with nobody finishing it (an agent hanging past its time limit, or a worker
    that stopped answering without a heartbeat to tell): abandon it; the step waits for its next delivery.
    True if the step was still running past its lease."""
    now = now or timezone.now()
    with transaction.atomic():
        step = Step.objects.filter(id=step_id).only("run_id").first()
        if step is None:
            return False
        if Run.objects.select_for_update(skip_locked=True).filter(id=step.run_id).only("id").first() is None:
            return False  # another transaction holds the run: next tick
        step = Step.objects.get(id=step_id)
        if step.status != Step.Status.RUNNING or step.lease_expires_at is None or step.lease_expires_at >= now:
            return False
        step.attempts.abandon(now, error="lease expired: the try ran past its time limit, or its worker went silent")
        step.status = Step.Status.RETRYING
        step.lease_expires_at = now + timedelta(seconds=settings.RETRY_GRACE_SECONDS)
        step.save(update_fields=["status", "lease_expires_at"])
    return True


def step_retry_send(*, step_id: int, now: datetime | None = None) -> bool:
    """A retry is due: it is sent now (the run re-dispatched) and, should that message be lost too, again after
    RETRY_GRACE_SECONDS. True if this call claimed it (one supervisor of several)."""
    now = now or timezone.now()
    with transaction.atomic():
        due = Step.objects.select_for_update(skip_locked=True).filter(
            id=step_id, status=Step.Status.RETRYING, lease_expires_at__lt=now
        )
        if not list(due.values_list("id", flat=True)):  # not due, or held by another transaction: not now
            return False
        Step.objects.filter(id=step_id).update(lease_expires_at=now + timedelta(seconds=settings.RETRY_GRACE_SECONDS))
        return True


def message_step(task_name: str, args: Any) -> tuple[Agent, str, str] | None:
    """The agent, run id and step key of an agent task's message (its task name and arguments); None for other
    tasks or a malformed message."""
    name = task_name.removeprefix("agents.") if task_name.startswith("agents.") else ""
    agent = agents_all().get(name)
    if agent is None or not isinstance(args, list | tuple) or not args:
        return None
    try:
        envelope = envelope_receive(args[0], agent.name)
    except InvalidEnvelope:
        return None
    return agent, envelope.run_id, step_key(envelope.hop + 1, agent.name)


def message_dead_lettered(*, task_name: str, task_id: str, args: Any, detail: str) -> None:
    """A message the broker gave up on (RabbitMQ's delivery limit): into the dead letters, and if its run still
    waits for that step, the step is given up and the run fails (a person is told, as for any failure). A message
    already recorded (the broker delivers its dead letters at least once) records nothing new."""
    target = message_step(task_name, args)
    message = args[0] if isinstance(args, list | tuple) and args else args
    error = PermanentError(detail)
    if target is None:
        dead_letter_record(task_name=task_name, task_id=task_id, message=message, reason="delivery_limit", error=error)
        return
    agent, run_id, key = target
    now = timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().defer("start_envelope").filter(id=run_id).first()
        step = Step.objects.filter(run=run, key=key).first() if run is not None else None
        # The step held by another delivery (a re-dispatch) under a live lease is that delivery's: only recorded.
        held = step is not None and step.status == Step.Status.RUNNING and (step.lease_expires_at or now) > now
        if run is None or run.status not in Run.ACTIVE or held or (step is not None and step.status in Step.FINISHED):
            dead_letter_record(
                task_name=task_name,
                task_id=task_id,
                message=message,
                reason="delivery_limit",
                error=error,
                run_id=run_id if run is not None else None,
                step_key=key,
            )
            return
        step = step or _step_new_lost(run, key, agent, now)
        _step_give_up_poison(run, step, task_id=task_id, message=message, now=now, why=detail, reason="delivery_limit")
