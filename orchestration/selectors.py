"""Reads of runs and steps."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from conversations.models import Customer
from orchestration.models import Run, Step
from project.errors import NotFound


def run_get(*, customer: Customer, run_id: object) -> Run:
    """The customer's run, or NotFound (also for another customer's run)."""
    try:
        run_uuid = uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound("Run not found.") from None
    run = Run.objects.filter(id=run_uuid, conversation__customer=customer).first()
    if run is None:
        raise NotFound("Run not found.")
    return run


def run_steps(*, run: Run) -> QuerySet[Step]:
    return run.steps.order_by("hop", "id")


def runs_for_trace(identifier: str) -> list[Run]:
    """The runs a trace id names, or the run a run id names (newest first)."""
    try:
        run = Run.objects.filter(id=uuid.UUID(identifier)).first()
    except ValueError:
        run = None
    if run is not None:
        return [run]
    return list(Run.objects.filter(trace_id=identifier).order_by("-created_at"))


def run_timeline(run: Run) -> list[dict]:
    """Every step with its attempts, in order, for `manage.py trace` and the admin run page."""
    rows = []
    for step in run.steps.order_by("hop", "started_at", "id").prefetch_related("attempts"):
        rows.append({"step": step, "attempts": list(step.attempts.all())})
    return rows
