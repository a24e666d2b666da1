"""Writing golden cases: saving a decided review item as a case (the admin action), and exporting rows as YAML."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction

from agents.triage import INTENTS
from conversations.models import Message, Order
from evaluation.cases import (
    ActionExpectation,
    CaseInvalid,
    Expectations,
    GoldenCase,
    OrderFixture,
    ReferenceReply,
    case_from_dict,
    case_to_dict,
)
from evaluation.models import GoldenCase as GoldenCaseRow
from orchestration.models import ReviewItem, Run
from orchestration.permissions import reviewer_require
from orchestration.selectors import review_get
from project.errors import Conflict, InvalidInput

#: The review items that may become cases: decided by a person (approved, edited or rejected).
DECIDED = (ReviewItem.Status.APPROVED, ReviewItem.Status.EDITED, ReviewItem.Status.REJECTED)


def golden_case_from_review(*, item_id: object, user: Any) -> GoldenCaseRow:
    """Save a decided review item as a golden case row, and return it.

    The case: the conversation's customer messages up to the run's trigger, the customer's orders as the fixture
    (each with its status before any refund), the run's intent, review expected (with the item's reason), and the
    decision as the expected outcome — approve: the proposed refund must be proposed, with its amount; edit: the
    reviewer's refund (or none); reject: nothing may be executed. The reply the customer got from the decision is
    the reference. Only reviewers may save (NotAReviewer); an open, expired or cancelled item is InvalidInput; an
    item saved before is Conflict.
    """
    reviewer_require(user)
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().get(id=review_get(item_id).id)
        if item.status not in DECIDED:
            raise InvalidInput(
                f"This review item is {item.status}: only items a reviewer approved, edited or rejected can be "
                "saved as golden cases. Decide it first."
            )
        if GoldenCaseRow.objects.filter(source_review_item=item).exists():
            raise Conflict("This review item was already saved as a golden case.")
        data = case_to_dict(case_of_review(item))
        try:
            case = case_from_dict(data, where=f"review item {item.id}")  # what is saved can be run
        except CaseInvalid as exc:
            raise InvalidInput(f"This review item cannot be saved as a golden case: {exc}") from exc
        return GoldenCaseRow.objects.create(case_id=case.id, data=data, created_by=user, source_review_item=item)


def case_of_review(item: ReviewItem) -> GoldenCase:
    """The golden case a decided review item makes (see `golden_case_from_review`)."""
    run: Run = item.run
    trigger = run.trigger_message
    messages = Message.objects.filter(
        conversation_id=run.conversation_id, role=Message.Role.CUSTOMER, created_at__lte=trigger.created_at
    ).order_by("created_at", "id")
    orders = Order.objects.filter(customer_id=run.conversation.customer_id).order_by("id")
    intent = ((item.resume_envelope or run.start_envelope).get("payload") or {}).get("intent")
    decision = ReviewItem.Status(item.status)
    return GoldenCase(
        id=f"review-{str(item.id)[:8]}",
        title=f"Saved from review item {item.id} ({item.reason}, {decision.value})",
        messages=[message.content for message in messages],
        orders=[_fixture(order, run=run) for order in orders],
        expect=Expectations(
            intent=intent if intent in INTENTS else None,
            action=_expected_action(item, decision),
            review=True,
            review_reason=item.reason or None,
            reference=ReferenceReply(reply=item.final_reply) if item.final_reply.strip() else None,
        ),
    )


def _fixture(order: Order, *, run: Run) -> OrderFixture:
    refunded = order.status in (Order.Status.REFUNDED, Order.Status.PARTIALLY_REFUNDED)
    return OrderFixture(
        id=order.id,
        description=order.description,
        total=order.total,
        currency=order.currency,
        status=(order.status_before_refund or Order.Status.DELIVERED) if refunded else order.status,
        placed_days_ago=max(0, (run.created_at - order.placed_at).days),
    )


def _expected_action(item: ReviewItem, decision: ReviewItem.Status) -> ActionExpectation | None:
    """The decision as the expected outcome: what a correct system proposes (approve, edit), or that nothing is
    executed (reject)."""
    if decision == ReviewItem.Status.REJECTED:
        return ActionExpectation(executed=False)
    refunds = [a for a in (item.final_action or []) if a.get("type", "refund") == "refund"]
    if not refunds:
        return ActionExpectation(proposed=False)
    first = refunds[0]
    amount = first.get("amount")
    return ActionExpectation(
        proposed=True, order=first["order_id"], amount=None if amount is None else Decimal(str(amount))
    )


def golden_cases_export(*, directory: Path) -> list[Path]:
    """Write every golden case row to `directory`/<case id>.yaml (the files' schema, one case each), to commit under
    evals/golden/; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for row in GoldenCaseRow.objects.order_by("case_id"):
        path = directory / f"{row.case_id}.yaml"
        text = yaml.safe_dump({"cases": [row.data]}, sort_keys=False, allow_unicode=True, width=120)
        origin = f"# Exported from golden case row {row.pk} ({row.created_at:%Y-%m-%d}) by manage.py eval --export\n"
        path.write_text(origin + text, encoding="utf-8")
        written.append(path)
    return written
