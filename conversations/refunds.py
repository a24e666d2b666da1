"""The refund policy: which refunds may be executed, and which need a person first.

One function, `refund_problems`, used alike by the validator (before a proposed
refund is approved), by reviewers' decisions (an edited action) and by the
refund write itself (`conversations.services.order_refund`, again under the
order's row lock).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings

from conversations.models import Order
from conversations.orders import CENTS, ORDER_ID, amount_parse


class RefundProblemCode(enum.StrEnum):
    """Why a refund may not be executed as it stands (the values appear in run and validator reasons)."""

    NOT_ALLOWED = "refund_not_allowed"
    """Never: another customer's order, a bad amount, more than the order's refundable remainder,
    another currency, or not a refund at all."""
    OVER_LIMIT = "refund_over_limit"
    """Above REFUND_AUTO_LIMIT: agents may not, a person may approve it."""


@dataclass(frozen=True)
class RefundProblem:
    """One reason a refund may not be executed."""

    code: RefundProblemCode
    """Which rule it breaks."""
    text: str
    """What is wrong, as a sentence for reviewers (e.g. 'order SB-10001 is in EUR.')."""


def refund_auto_limit() -> Decimal:
    """The largest refund agents may execute without a person (REFUND_AUTO_LIMIT), in cents."""
    return Decimal(str(settings.REFUND_AUTO_LIMIT)).quantize(CENTS)


def refund_problems(*, customer_id: str, action: Mapping[str, Any], enforce_limit: bool) -> list[RefundProblem]:
    """Why a refund action may not be executed as it stands; empty when it may.

    `action` is a refund as agents propose it and reviewers edit it: `type` ('refund'),
    `order_id`, `amount` (a string, in the order's currency) and optionally `currency`.
    It must be a refund of the customer's own order, of a positive amount with at most two
    decimal places, in the order's currency and no more than its refundable remainder;
    with `enforce_limit` (agents, not people) also at most `refund_auto_limit()`.
    """
    order_id = str(action.get("order_id", ""))
    amount = amount_parse(action.get("amount"))
    if action.get("type") != "refund":
        return [RefundProblem(RefundProblemCode.NOT_ALLOWED, f"unknown action type {action.get('type')!r}.")]
    if not ORDER_ID.match(order_id):
        return [RefundProblem(RefundProblemCode.NOT_ALLOWED, f"{order_id!r} is not an order number.")]
    order = Order.objects.filter(id=order_id).first()
    if order is None or str(order.customer_id) != str(customer_id):
        return [RefundProblem(RefundProblemCode.NOT_ALLOWED, f"order {order_id} is not on this customer's account.")]
    if amount is None or amount <= 0:
        return [
            RefundProblem(
                RefundProblemCode.NOT_ALLOWED, f"refund amount {action.get('amount')!r} is not a positive amount."
            )
        ]
    problems = []
    refundable = order.refundable
    if amount > refundable:
        problems.append(
            RefundProblem(
                RefundProblemCode.NOT_ALLOWED,
                f"refund of {amount} {order.currency} exceeds the refundable {refundable}.",
            )
        )
    if action.get("currency", order.currency) != order.currency:
        problems.append(RefundProblem(RefundProblemCode.NOT_ALLOWED, f"order {order_id} is in {order.currency}."))
    limit = refund_auto_limit()
    if enforce_limit and amount > limit:
        problems.append(
            RefundProblem(
                RefundProblemCode.OVER_LIMIT,
                f"refund of {amount} {order.currency} is above the {limit} limit for agents.",
            )
        )
    return problems
