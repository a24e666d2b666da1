"""Helpers for the money tests: customers' orders in any currency and status, staff users, runs from the API,
and the ledger's sums."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Sum

from agents.models import LedgerEntry
from api.services import api_token_get_or_create
from conversations.models import Message, Order
from orchestration.models import Run
from orchestration.permissions import reviewers_group
from tests.conftest import order_add, run_wait


def order_in(customer: Any, order_id: str, total: str, *, currency: str = "EUR", status: str = "delivered") -> Order:
    """A customer's order of `total` in `currency`, in `status`."""
    order = order_add(customer, order_id, "Aurora noise-cancelling headphones", total, status=status)
    if currency != "EUR":
        order.currency = currency
        order.save(update_fields=["currency"])
    return order


def make_staff(email: str, *, reviewer: bool) -> tuple[Any, str]:
    """A staff user (in the reviewers group or not) and its API token."""
    user = get_user_model().objects.create_user(username=email, email=email, password="pw-123456", is_staff=True)
    if reviewer:
        user.groups.add(reviewers_group())
    return user, api_token_get_or_create(user=user)


def say(api: Any, token: str, content: str, *, conversation_id: str | None = None) -> Run:
    """Post a customer message through the API and wait for its run to settle."""
    client = api(token)
    conversation_id = conversation_id or client.post("/conversations/").json["id"]
    posted = client.post(f"/conversations/{conversation_id}/messages/", {"content": content})
    assert posted.status == 202, posted.body
    return run_wait(posted.json["run"]["id"])


def refunded_on(order_id: str) -> Decimal:
    """What the ledger says was refunded on an order (all its refund rows)."""
    rows = LedgerEntry.objects.filter(kind="refund", request__order_id=order_id)
    return sum((Decimal(str(row.result["amount"])) for row in rows), Decimal("0"))


def refund_rows(order_id: str | None = None) -> int:
    rows = LedgerEntry.objects.filter(kind="refund")
    return (rows.filter(request__order_id=order_id) if order_id else rows).count()


def order_refunded_amount(order_id: str) -> Decimal:
    return Order.objects.get(id=order_id).refunded_amount


def messages(run: Run, role: str | None = None) -> list[Message]:
    found = Message.objects.filter(conversation_id=run.conversation_id)
    return list(found.filter(role=role) if role else found)


def refunded_total(order_ids: list[str]) -> Decimal:
    return Order.objects.filter(id__in=order_ids).aggregate(total=Sum("refunded_amount"))["total"] or Decimal("0")
