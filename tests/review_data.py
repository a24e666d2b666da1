"""A run waiting for review, written straight to the database, for in-process tests (no worker: in a test
that rolls its transaction back, the run's dispatch after commit never happens)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from api.services import api_token_get_or_create
from conversations.models import Message
from conversations.services import conversation_create, customer_create, message_create
from orchestration.models import ReviewDecision, ReviewItem, Run, Step
from orchestration.permissions import reviewers_group
from orchestration.runs import run_start


def run_in_review(
    *, steps: int, messages: int, decisions: int = 0, customer: Any = None
) -> tuple[Run, ReviewItem, str]:
    """A customer's run (a new customer's unless `customer` is given) with `steps` steps, `messages` messages in
    its conversation and a review item with `decisions` decisions; and the customer's API token."""
    customer = customer or customer_create(email=f"c{Run.objects.count()}@example.com", name="Ada")
    conversation = conversation_create(customer=customer)
    first, _ = message_create(conversation_id=conversation.id, role=Message.Role.CUSTOMER, content="Refund SB-1")
    for number in range(messages - 1):
        message_create(conversation_id=conversation.id, role=Message.Role.SYSTEM, content=f"notice {number}")
    run = run_start(conversation=conversation, message=first, trace_id="review-data")
    run.status = Run.Status.AWAITING_REVIEW
    run.save(update_fields=["status"])
    now = timezone.now()
    for hop in range(steps):
        Step.objects.create(run=run, key=f"{hop}.agent{hop}", agent=f"agent{hop}", version="1", hop=hop, started_at=now)
    item = ReviewItem.objects.create(run=run, reason="refund_over_limit", proposed_reply="We refund.")
    reviewer = staff_reviewer()
    for _ in range(decisions):
        ReviewDecision.objects.create(item=item, reviewer=reviewer, decision=ReviewDecision.Kind.APPROVE)
    return run, item, api_token_get_or_create(user=customer.user)


def staff_reviewer() -> Any:
    """A staff user in the reviewers group."""
    count = get_user_model().objects.count()
    user = get_user_model().objects.create_user(username=f"r{count}@example.com", is_staff=True)
    user.groups.add(reviewers_group())
    return user
