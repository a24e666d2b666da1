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
