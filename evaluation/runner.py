"""Running golden cases through the real pipeline: a throwaway customer per case with the fixture's orders (fresh
order ids on every run, so reruns never collide), each message posted with `conversation_message_post` as the API
posts it, and each run waited for by polling the database (bounded) — Celery workers do the work, exactly as in
production; nothing here waits on a Celery result. What the runs did is read back from the database as an
`Observation` for the checks (`evaluation.checks`).

Several cases are in flight at once (`concurrency`); one loop polls all of their runs' statuses in one query.
Runs a case leaves waiting for a person are cancelled once observed, so the review queue keeps none of them.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.utils import timezone

from conversations.models import Customer, Message, Order
from conversations.orders import ORDER_ID, ORDER_IDS_IN_TEXT
from conversations.services import customer_create, order_create_unique
from evaluation.cases import GoldenCase, OrderFixture
from orchestration.cancel import run_cancel
from orchestration.models import ReviewItem, Run
from orchestration.runs import conversation_message_post, run_latest_envelope

#: A run in one of these has stopped for now: it ended, or waits for a person (whom an evaluation never asks).
RUN_SETTLED = (*Run.TERMINAL, Run.Status.AWAITING_REVIEW)


@dataclass
class Observation:
    """What the runs of one case did, read from the database (order ids mapped back to the case's)."""

    case_id: str
    """The case."""
    settled: bool
    """Every turn's run stopped within the timeout."""
    statuses: list[str]
    """Each turn's run's status when observed."""
    reason: str
    """The last run's reason code ('' when it completed)."""
    intent: str | None
    """Triage's intent for the last message."""
    sources: list[str]
    """The titles the last draft cites."""
    proposed: list[dict[str, Any]]
    """The refunds the last run proposed (order ids as the case writes them)."""
    refunded: dict[str, Decimal]
    """What the case's runs refunded, by order (the customer's and the other customer's; refunds the fixture
    starts with are not counted)."""
    visible: list[str]
    """Every message of the conversation the customer sees (not their own)."""
    draft: str
    """The last run's reply: sent, or waiting for a person."""
    tokens: int
    """Tokens of all the case's runs."""
    cost_usd: Decimal
    """Cost of all the case's runs."""
    latencies_ms: list[int]
    """Each run's time from the message to its stop (reply sent, or review opened)."""


@dataclass
class _InFlight:
    """A case being run: its fixture, its conversation, the turn it is at."""

    case: GoldenCase
    """The case."""
    customer: Customer
    """Its throwaway customer."""
    order_map: dict[str, str]
    """The fixture's order ids (as the case writes them) -> the ids made for this run."""
    deadline: float
    """When the current turn's run must have stopped (time.monotonic)."""
    conversation_id: Any = None
    """The conversation, once the first message started it."""
    run_ids: list[Any] = field(default_factory=list)
    """Each posted turn's run."""


def cases_run(cases: list[GoldenCase], *, tag: str, timeout: float, concurrency: int) -> list[Observation]:
    """Run every case (at most `concurrency` at once) and observe it; `tag` makes this run's customers unique;
    `timeout` bounds each turn's wait, in seconds. Observations come in the cases' order."""
    waiting = deque(cases)
    active: list[_InFlight] = []
    done: dict[str, Observation] = {}
    while waiting or active:
        while waiting and len(active) < concurrency:
            active.append(_case_start(waiting.popleft(), tag=tag, timeout=timeout))
        statuses = dict(Run.objects.filter(id__in=[c.run_ids[-1] for c in active]).values_list("id", "status"))
        for current in list(active):
            settled = statuses.get(current.run_ids[-1]) in RUN_SETTLED
            if settled and len(current.run_ids) < len(current.case.messages):
                _turn_post(current, timeout=timeout)
            elif settled or time.monotonic() > current.deadline:
                done[current.case.id] = case_observe(current, settled=settled)
                active.remove(current)
        if active:
            time.sleep(0.05)
    return [done[case.id] for case in cases]


def _case_start(case: GoldenCase, *, tag: str, timeout: float) -> _InFlight:
    customer = customer_create(email=f"eval-{tag}-{case.id}@eval.invalid"[-150:], name=f"Eval {case.id}")
    order_map = orders_create(customer=customer, orders=case.orders)
    if case.other_orders:
        other = customer_create(email=f"eval-{tag}-{case.id}-other@eval.invalid"[-150:], name="Eval other customer")
        order_map |= orders_create(customer=other, orders=case.other_orders)
    current = _InFlight(case=case, customer=customer, order_map=order_map, deadline=0.0)
    _turn_post(current, timeout=timeout)
    return current


def _turn_post(current: _InFlight, *, timeout: float) -> None:
    """Post the case's next message (its order ids mapped) and start waiting for its run."""
    content = ids_replace(current.case.messages[len(current.run_ids)], current.order_map)
    _, run, _ = conversation_message_post(
        customer=current.customer,
        conversation_id=current.conversation_id,
        content=content,
        trace_id=f"eval{uuid.uuid4().hex}",
    )
    current.conversation_id = run.conversation_id
    current.run_ids.append(run.id)
    current.deadline = time.monotonic() + timeout


def orders_create(*, customer: Customer, orders: list[OrderFixture]) -> dict[str, str]:
    """Create the fixture's orders for `customer` under fresh ids of the same shape; returns case id -> new id."""
    mapped = {}
    now = timezone.now()
    for fixture in orders:
        order = order_create_unique(
            draw_id=partial(_id_drawn, fixture.id),
            customer=customer,
            description=fixture.description,
            total=fixture.total,
            currency=fixture.currency,
            status=fixture.status,
            refunded_amount=fixture.refunded,
            status_before_refund=Order.Status.DELIVERED if fixture.refunded else "",
            placed_at=now - timedelta(days=fixture.placed_days_ago),
        )
        mapped[fixture.id] = order.id
    return mapped


def _id_drawn(shape: str) -> str:
    """An id of `shape` (a fixture's order id) with each digit drawn anew, in the shop's shape."""
    order_id = "".join(random.choice("0123456789") if char.isdigit() else char for char in shape)
    if not ORDER_ID.match(order_id):
        raise ValueError(f"order id {shape}: its digits cannot be replaced within the shop's shape.")
    return order_id


def ids_replace(text: str, mapping: dict[str, str]) -> str:
    """`text` with the order ids of `mapping` replaced (whole ids, in any case the shop reads them in)."""
    return ORDER_IDS_IN_TEXT.sub(lambda found: mapping.get(found.group(0).upper(), found.group(0)), text)


def case_observe(current: _InFlight, *, settled: bool) -> Observation:
    """Read what the case's runs did; then cancel the ones waiting for a person (nobody will decide them)."""
    back = {new: old for old, new in current.order_map.items()}
    before = {order.id: order.refunded for order in (*current.case.orders, *current.case.other_orders)}
    runs = {run.id: run for run in Run.objects.filter(id__in=current.run_ids)}
    ordered = [runs[run_id] for run_id in current.run_ids]
    last = ordered[-1]
    payload = run_latest_envelope(last).payload
    item = ReviewItem.objects.filter(run=last).order_by("-created_at").first()
    proposed = list(item.proposed_action or []) if item is not None else list(payload.get("proposed_actions") or [])
    orders = Order.objects.filter(id__in=list(current.order_map.values()))
    visible = Message.objects.filter(conversation_id=current.conversation_id).exclude(role=Message.Role.CUSTOMER)
    observation = Observation(
        case_id=current.case.id,
        settled=settled,
        statuses=[run.status for run in ordered],
        reason=last.reason,
        intent=payload.get("intent"),
        sources=list(payload.get("draft_sources") or []),
        proposed=[
            {**action, "order_id": back.get(action.get("order_id"), action.get("order_id"))} for action in proposed
        ],
        refunded={back[order.id]: order.refunded_amount - before[back[order.id]] for order in orders},
        visible=[ids_replace(text, back) for text in visible.values_list("content", flat=True)],
        draft=ids_replace(str(payload.get("draft") or (item.proposed_reply if item else "")), back),
        tokens=sum(run.tokens_used for run in ordered),
        cost_usd=sum((run.cost_usd for run in ordered), Decimal("0")),
        latencies_ms=[_latency_ms(run) for run in ordered],
    )
    for run in ordered:
        if run.status == Run.Status.AWAITING_REVIEW:
            run_cancel(run_id=run.id)
    return observation


def _latency_ms(run: Run) -> int:
    """From the run's start to its stop: the reply sent (finished), or the last step's end (waiting for a person,
    or still going at the timeout)."""
    end = (
        run.finished_at
        or run.steps.exclude(finished_at=None).order_by("-finished_at").values_list("finished_at", flat=True).first()
    )
    return int(((end or timezone.now()) - run.created_at).total_seconds() * 1000)
