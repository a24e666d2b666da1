"""Cancelling a run: its customer (or staff) stops it while it is queued, running or waiting for a person.

`run_cancel` is one transaction holding the run's row lock, like every other ending (`orchestration.runs`): the run
becomes cancelled (reason `cancelled`), its unfinished steps fail and their tries still running are abandoned (the
tasks executing them are revoked after commit, as for a timeout), and its open review item is closed (status
cancelled), so that no reviewer can approve it: a decision on it is a Conflict (`orchestration.reviews`).

Nothing the run proposed happens after the cancel is recorded. Every step claim requires an active run
(`claims.claim_decide`), a step's late result is dropped (`steps.StaleTry`), the supervisor resumes only active runs
(`orchestration.recovery`), and deliver — the only agent with effects, the reply and the refunds — is an atomic agent:
it runs inside its claim's transaction, under the same run lock, so it either committed before the cancel (the run
is completed, and the cancel refused) or finds the run cancelled and does nothing.

The customer gets one short notice (`runs.CUSTOMER_NOTICE_CANCELLED`), as every other ending leaves one, and no reply.
Cancelling a cancelled run returns it unchanged; a run that ended otherwise (completed, failed, timed out) is
NotCancelable (409).
"""

from __future__ import annotations

from uuid import UUID

from django.db import transaction
from django.utils import timezone

from conversations.models import Customer
from orchestration.models import ReviewItem, Run
from orchestration.runs import run_mark_cancelled
from orchestration.selectors import run_get
from project.errors import Conflict, NotCancelable, NotFound
from project.ids import uuid_or_none

#: What may be cancelled: a run on its way, or one waiting for a person.
CANCELABLE = (Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.AWAITING_REVIEW)
#: Tries of the transaction when a review item opened between its two locks (see `_cancel_locked`); the second always
#: holds (no other item can open while one is open and locked).
LOCK_TRIES = 3


class _ItemOpenedMeanwhile(Exception):
    """A review item of the run opened between the item locks and the run lock: roll back and lock again."""


def run_cancel(*, run_id: object, customer: Customer | None = None) -> Run:
    """Cancel a run and return it (cancelled). `customer`: only their own run is found (another customer's is
    NotFound, as on every run endpoint); None: any run (staff).

    Idempotent: a run already cancelled is returned unchanged. NotCancelable for a run that completed, failed or
    timed out.
    """
    found = run_get(customer=customer, run_id=run_id).id if customer is not None else _run_id_of_any(run_id)
    detail = "cancelled by the customer" if customer is not None else "cancelled by staff"
    for _ in range(LOCK_TRIES):
        try:
            with transaction.atomic():
                return _cancel_locked(found, detail=detail)
        except _ItemOpenedMeanwhile:
            continue
    raise Conflict("The run changed while it was being cancelled; try again.")


def _run_id_of_any(run_id: object) -> UUID:
    found = uuid_or_none(run_id)
    if found is None or not Run.objects.filter(id=found).exists():
        raise NotFound("Run not found.")
    return found


def _cancel_locked(run_id: UUID, *, detail: str) -> Run:
    """Inside the caller's transaction: lock the run's open review items, then the run — the order a review decision
    takes them in, so that a cancel and a decision never wait on each other in a circle — and cancel it."""
    open_items = ReviewItem.objects.filter(run_id=run_id, status=ReviewItem.Status.OPEN)
    held = set(open_items.select_for_update().values_list("id", flat=True))
    run = Run.objects.select_for_update().defer("start_envelope").get(id=run_id)
    if run.status == Run.Status.CANCELLED:
        return run
    if run.status not in CANCELABLE:
        raise NotCancelable(f"This run has already ended ({run.status}); only a run on its way can be cancelled.")
    items = list(open_items)
    if {item.id for item in items} - held:
        # An escalation committed between the two locks: its item is not ours to change without its lock (a decision
        # may hold it and wait for the run). Only an escalation opens one, under the run's lock, which is ours now.
        raise _ItemOpenedMeanwhile()
    run_mark_cancelled(run, detail=detail)
    now = timezone.now()
    for item in items:
        item.status = ReviewItem.Status.CANCELLED
        item.decided_at = now  # when it was closed
        item.pending_decision = None  # a first approval waiting for a second one executes nothing now
        item.save(update_fields=["status", "decided_at", "pending_decision"])
    return run
