"""The supervisor: run deadlines, stuck runs and review deadlines.

Two triggers call the same functions: a per-run watchdog task scheduled at the
run's deadline, and a periodic sweep by Celery beat that also catches what a
lost watchdog or a lost message left behind. Every change is a conditional
update under a row lock (`skip_locked`), so running the sweep on several hosts
at once handles each run once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orchestration.models import Run, Step
from orchestration.pipeline import run_dispatch
from orchestration.reviews import reviews_expire, reviews_mark_overdue
from orchestration.runs import run_escalate, run_time_out

logger = logging.getLogger(__name__)

SWEEP_BATCH = 200


@dataclass
class SweepReport:
    """What one sweep did, by run id."""

    timed_out: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    reviews_overdue: int = 0
    """Review items newly marked overdue."""
    reviews_expired: list[str] = field(default_factory=list)
    """Review items whose proposed action was denied for want of a decision."""


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


def run_recover(run_id: UUID | str, now: datetime | None = None) -> str | None:
    """Re-dispatch a stuck run (no progress, no live step), or escalate it after too many tries.

    Returns "recovered", "escalated" or None (not stuck, or another supervisor has it).
    """
    now = now or timezone.now()
    stalled_since = now - timedelta(seconds=settings.SUPERVISOR_STALL_SECONDS)
    with transaction.atomic():
        run = (
            Run.objects.select_for_update(skip_locked=True)
            .filter(id=run_id, status__in=Run.ACTIVE, last_progress_at__lt=stalled_since)
            .first()
        )
        if run is None:
            return None
        if run.steps.filter(status=Step.Status.RUNNING, lease_expires_at__gt=now).exists():
            return None  # a step is being worked on: slow, not stuck
        if run.recoveries >= settings.SUPERVISOR_MAX_RECOVERIES:
            run_escalate(
                run,
                reason="stuck",
                detail=f"no progress since {run.last_progress_at.isoformat()} after {run.recoveries} recoveries.",
            )
            return "escalated"
        run.recoveries += 1
        run.last_progress_at = now
        run.save(update_fields=["recoveries", "last_progress_at"])
        transaction.on_commit(lambda: run_dispatch(run))
    logger.warning(
        "stuck run re-dispatched (recovery %d)", run.recoveries, extra={"run_id": str(run.id), "trace_id": run.trace_id}
    )
    return "recovered"


def supervisor_sweep(now: datetime | None = None) -> SweepReport:
    """One pass: run deadlines, stuck runs, then review deadlines."""
    now = now or timezone.now()
    report = SweepReport()
    overdue = Run.objects.filter(status__in=Run.ACTIVE, deadline_at__lte=now).values_list("id", flat=True)
    for run_id in list(overdue[:SWEEP_BATCH]):
        if run_deadline_enforce(run_id, now):
            report.timed_out.append(str(run_id))
    stalled_since = now - timedelta(seconds=settings.SUPERVISOR_STALL_SECONDS)
    stalled = Run.objects.filter(status__in=Run.ACTIVE, last_progress_at__lt=stalled_since).values_list("id", flat=True)
    for run_id in list(stalled[:SWEEP_BATCH]):
        outcome = run_recover(run_id, now)
        if outcome == "recovered":
            report.recovered.append(str(run_id))
        elif outcome == "escalated":
            report.escalated.append(str(run_id))
    report.reviews_overdue = reviews_mark_overdue(now)
    report.reviews_expired = reviews_expire(now)
    return report
