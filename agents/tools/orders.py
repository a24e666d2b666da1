"""Order lookup and the refund policy. Every lookup is scoped to the conversation's customer."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings

from conversations.models import Conversation, Order

ORDER_ID = re.compile(r"^SB-\d{5}$")


def customer_id_of(conversation_id: str) -> str:
    return str(Conversation.objects.values_list("customer_id", flat=True).get(id=conversation_id))


def order_lookup(*, conversation_id: str, order_id: str) -> dict[str, Any]:
    """The customer's own order, or {"found": False} — never another customer's data."""
    order = Order.objects.filter(id=order_id, customer_id=customer_id_of(conversation_id)).first()
    if order is None:
        return {"order_id": order_id, "found": False, "note": "could not find this order on the customer's account"}
    return {
        "order_id": order.id,
        "found": True,
        "description": order.description,
        "total": str(order.total),
        "currency": order.currency,
        "status": order.status,
        "refunded_amount": str(order.refunded_amount),
        "refundable": str(order.total - order.refunded_amount),
    }


def parse_amount(value: Any) -> Decimal | None:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or amount.as_tuple().exponent < -2:
        return None
    return amount


def refund_problems(*, customer_id: str, action: dict[str, Any], enforce_limit: bool) -> list[tuple[str, str]]:
    """Why a refund may not be executed as it stands: (code, sentence) pairs; empty when it may.

    Codes: refund_not_allowed (wrong customer, bad amount, more than the order's
    refundable remainder), refund_over_limit (above REFUND_AUTO_LIMIT; a person may approve it).
    """
    order_id = str(action.get("order_id", ""))
    amount = parse_amount(action.get("amount"))
    if action.get("type") != "refund":
        return [("refund_not_allowed", f"unknown action type {action.get('type')!r}.")]
    if not ORDER_ID.match(order_id):
        return [("refund_not_allowed", f"{order_id!r} is not an order number.")]
    order = Order.objects.filter(id=order_id).first()
    if order is None or str(order.customer_id) != str(customer_id):
        return [("refund_not_allowed", f"order {order_id} is not on this customer's account.")]
    if amount is None or amount <= 0:
        return [("refund_not_allowed", f"refund amount {action.get('amount')!r} is not a positive amount.")]
    problems = []
    refundable = order.total - order.refunded_amount
    if amount > refundable:
        problems.append(
            ("refund_not_allowed", f"refund of {amount} {order.currency} exceeds the refundable {refundable}.")
        )
    if action.get("currency", order.currency) != order.currency:
        problems.append(("refund_not_allowed", f"order {order_id} is in {order.currency}."))
    limit = Decimal(str(settings.REFUND_AUTO_LIMIT)).quantize(Decimal("0.01"))
    if enforce_limit and amount > limit:
        problems.append(
            ("refund_over_limit", f"refund of {amount} {order.currency} is above the {limit} limit for agents.")
        )
    return problems
