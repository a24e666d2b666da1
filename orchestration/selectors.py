"""Reads of runs, steps and review items."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, QuerySet, prefetch_related_objects

from agents.ledger import ledger_reviewer_refunds
from agents.models import LedgerEntry
from agents.payload import McpAction
from conversations.models import Customer, Message
from conversations.orders import amount_parse
from conversations.selectors import conversation_transcript
from orchestration.models import ReviewDecision, ReviewItem, Run, Step
from orchestration.public import public_reason_of, public_reason_view
from project.errors import NotFound
from project.ids import uuid_or_none


def run_get(*, customer: Customer, run_id: object) -> Run:
    """The customer's run, or NotFound (also for another customer's run)."""
    run_uuid = uuid_or_none(run_id)
    run = Run.objects.filter(id=run_uuid, conversation__customer=customer, replay_of=None).first() if run_uuid else None
    if run is None:
        raise NotFound("Run not found.")
    return run


def run_detail_get(*, customer: Customer, run_id: object) -> Run:
    """The customer's run with its steps in order (`run.steps.all()`, one query), or NotFound."""
    run = run_get(customer=customer, run_id=run_id)
    prefetch_related_objects([run], Prefetch("steps", queryset=Step.objects.order_by("hop", "id")))
    return run


def review_list_open() -> QuerySet[ReviewItem]:
    """Open items, overdue first, then oldest first."""
    return (
        ReviewItem.objects.filter(status=ReviewItem.Status.OPEN)
        .select_related("run")
        .order_by("-overdue", "created_at")
    )


def review_get(item_id: object) -> ReviewItem:
    """A review item (with its run, the run's conversation and who decided it) by id, or NotFound."""
    item_uuid = uuid_or_none(item_id)
    items = ReviewItem.objects.select_related("run__conversation", "decided_by").filter(run__replay_of=None)
    item = items.filter(id=item_uuid).first() if item_uuid else None
    if item is None:
        raise NotFound("Review item not found.")
    return item


def review_detail_get(item_id: object) -> ReviewItem:
    """A review item with what its detail shows (see `review_detail_load`), or NotFound."""
    return review_detail_load(review_get(item_id))


def review_detail_load(item: ReviewItem) -> ReviewItem:
    """Load what an item's detail shows, in the same few queries however many steps, messages and
    decisions there are: who decided it, the run's steps in order (`item.run.steps.all()`), the
    decisions with their reviewers (`item.decisions.all()`) and the conversation's transcript
    (`item.run.conversation.messages.all()`, oldest first). What is already loaded is kept."""
    prefetch_related_objects(
        [item],
        "decided_by",
        Prefetch("run__steps", queryset=Step.objects.order_by("hop", "id")),
        Prefetch("decisions", queryset=ReviewDecision.objects.select_related("reviewer").order_by("created_at")),
        Prefetch(
            "run__conversation__messages", queryset=conversation_transcript(conversation_id=item.run.conversation_id)
        ),
    )
    return item


def review_tool_actions(item: ReviewItem) -> list[McpAction]:
    """The acting MCP tool calls proposed on a review item's run: what approving it as proposed executes (an edit or
    a reject executes none; `orchestration.reviews.resume_envelope`)."""
    stored = item.resume_envelope or item.run.start_envelope or {}
    return list((stored.get("payload") or {}).get("proposed_tool_actions") or [])


def runs_for_trace(identifier: str) -> list[Run]:
    """The runs a trace id names, or the run a run id names (newest first)."""
    run_uuid = uuid_or_none(identifier)
    run = Run.objects.filter(id=run_uuid).first() if run_uuid else None
    if run is not None:
        return [run]
    return list(Run.objects.filter(trace_id=identifier).order_by("-created_at"))


def run_timeline(run: Run) -> list[dict]:
    """Every step with its attempts, in order, for `manage.py trace` and the admin run page."""
    rows = []
    for step in run.steps.order_by("hop", "started_at", "id").prefetch_related("attempts"):
        rows.append({"step": step, "attempts": list(step.attempts.all())})
    return rows


def run_events(run_id: uuid.UUID | str) -> tuple[list[tuple[tuple[int, str], str, dict]], str]:
    """What has happened in a run, as (order key, event type, data), oldest first, and its status now.

    Events: `run` (each status it reached; a stopped run's with its public reason), `step` (started, finished,
    failed, retrying), `review` (a person is checking, with the public reason; decided, or cancelled with its run),
    `message` (replies and notices in the conversation since the run began). The live-progress stream (SSE) sends
    each event once; order keys are (epoch ms, name).

    Customers read these: the data is the public view (`orchestration.public`) — no internal reasons or
    details, no errors, models, prompts, tokens or costs, and only messages the conversation shows them anyway.
    """
    run = Run.objects.get(id=run_id)
    events: list[tuple[tuple[int, str], str, dict]] = []

    def add(when: Any, name: str, kind: str, data: dict) -> None:
        events.append(((int(when.timestamp() * 1000), name), kind, data))

    add(run.created_at, "run:queued", "run", {"status": "queued"})
    if run.started_at:
        add(run.started_at, "run:running", "run", {"status": "running"})
    for step in run.steps.order_by("hop", "started_at", "id"):
        base = {"agent": step.agent, "hop": step.hop}
        add(step.started_at, f"step:{step.key}:started", "step", {**base, "status": "running"})
        if step.status in (Step.Status.COMPLETED, Step.Status.FAILED) and step.finished_at:
            data = {**base, "status": step.status, "duration_ms": step.duration_ms}
            add(step.finished_at, f"step:{step.key}:{step.status}", "step", data)
        elif step.status == Step.Status.RETRYING:
            add(step.started_at, f"step:{step.key}:retrying:{step.attempt}", "step", {**base, "status": "retrying"})
    for item in ReviewItem.objects.filter(run=run).order_by("created_at"):
        add(
            item.created_at,
            f"review:{item.id}",
            "review",
            {"id": str(item.id), "reason": public_reason_view(item.reason)},
        )
        if item.decided_at:
            # Closed undecided when its run was cancelled; decided otherwise.
            ended = "cancelled" if item.status == ReviewItem.Status.CANCELLED else "decided"
            add(item.decided_at, f"review:{item.id}:{ended}", "review", {"id": str(item.id), "status": ended})
    replies = Message.objects.filter(conversation_id=run.conversation_id, created_at__gte=run.created_at).exclude(
        role=Message.Role.CUSTOMER
    )
    for message in replies.order_by("created_at", "id"):
        data = {
            "id": str(message.id),
            "role": message.role,
            "content": message.content,
            "created_at": message.created_at.isoformat(),
        }
        add(message.created_at, f"message:{message.id}", "message", data)
    if run.status not in Run.ACTIVE:
        when = run.finished_at or run.last_progress_at
        reason = public_reason_of(status=run.status, reason=run.reason)
        add(when, f"run:{run.status}", "run", {"status": run.status, "reason": reason})
    events.sort(key=lambda event: event[0])
    return events, run.status


def reviewer_refunds_on_the_way(*, order_ids: Iterable[str]) -> dict[str, Decimal]:
    """Refunds of these orders a reviewer decided whose run has not reached deliver yet (resumed, queued or running):
    approved, not yet in the ledger. By order id (the orders with any). A run's latest decision only."""
    wanted = set(order_ids)
    decided = ReviewItem.objects.filter(
        status__in=[ReviewItem.Status.APPROVED, ReviewItem.Status.EDITED],
        run__status__in=Run.ACTIVE,
        run__replay_of=None,  # a replay's decisions are the record's, its refunds simulated
        final_action__isnull=False,
    ).order_by("run_id", "-decided_at")
    latest: dict[Any, ReviewItem] = {}
    for item in decided:
        latest.setdefault(item.run_id, item)
    totals: dict[str, Decimal] = {}
    for item in latest.values():
        for action in item.final_action or []:
            amount = amount_parse(action.get("amount"))
            if action.get("order_id") in wanted and amount is not None:
                totals[action["order_id"]] = totals.get(action["order_id"], Decimal("0")) + amount
    return totals


def reviewer_approved_by_order(*, order_ids: Iterable[str]) -> dict[str, Decimal]:
    """Everything reviewers approved on each of these orders (the orders with any): refunded on a reviewer's
    approval (`agents.ledger.ledger_reviewer_refunds`) or decided and on its way to deliver
    (`reviewer_refunds_on_the_way`). Reads only: `orchestration.reviews.reviewer_approved_before` locks first."""
    wanted = sorted(set(order_ids))
    totals = ledger_reviewer_refunds(order_ids=wanted)
    for order_id, amount in reviewer_refunds_on_the_way(order_ids=wanted).items():
        totals[order_id] = totals.get(order_id, Decimal("0")) + amount
    return totals


def run_messages(run: Run, *, reply: Message | None) -> list[Message]:
    """The messages of one run, oldest first: its customer's message, the notices it posted (keyed `run:<id>:...`) and
    `reply`, the reply it delivered (`run_reply`) — not another run's, even when two runs of a conversation overlap."""
    notices = Message.objects.filter(conversation_id=run.conversation_id, idempotency_key__startswith=f"run:{run.id}:")
    own = notices.order_by("created_at", "id")
    messages = [run.trigger_message, *own]
    if reply is not None and reply not in messages:
        messages.append(reply)
    return sorted(messages, key=lambda message: (message.created_at, str(message.id)))


def run_reply(run: Run) -> Message | None:
    """The reply a completed run delivered (deliver records it in the ledger), or None."""
    entry = LedgerEntry.objects.filter(key=f"run:{run.id}:reply").first()
    message_id = (entry.result or {}).get("message_id") if entry is not None else None
    return Message.objects.filter(id=message_id).first() if message_id else None
