"""The shop on the record: every read a step makes is recorded (`project.recording`), and a replay is answered the
orders as they were then — not as they are now, after the run refunded them. A replay never refunds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from conversations.commerce import Commerce, RefundOutcome, ShopOrder
from project import recording
from project.errors import PermanentError
from project.recording import Kind


def order_json(order: ShopOrder) -> dict[str, Any]:
    return recording.jsonable(asdict(order))


def order_from_json(data: dict[str, Any]) -> ShopOrder:
    placed, delivered = data.get("placed_at"), data.get("delivered_at")
    return ShopOrder(
        id=data["id"],
        customer_id=data["customer_id"],
        description=data["description"],
        total=Decimal(data["total"]),
        currency=data["currency"],
        status=data["status"],
        refunded_amount=Decimal(data["refunded_amount"]),
        status_before_refund=data.get("status_before_refund", ""),
        placed_at=datetime.fromisoformat(placed) if placed else None,
        delivered_at=datetime.fromisoformat(delivered) if delivered else None,
    )


class TapedCommerce:
    """A shop whose reads are recorded on the current step, and answered from the record in a replay."""

    def __init__(self, inner: Commerce) -> None:
        self.inner = inner
        self.transactional = inner.transactional

    def orders_get(self, *, customer_id: str, order_ids: Iterable[str]) -> dict[str, ShopOrder]:
        ids = sorted({str(order_id) for order_id in order_ids})
        request = {"customer_id": str(customer_id), "order_ids": ids}
        recorded = recording.answer(Kind.COMMERCE, "orders_get", request)
        if recorded is not recording.MISSING:
            return {order_id: order_from_json(data) for order_id, data in recorded.items()}
        orders = self.inner.orders_get(customer_id=customer_id, order_ids=ids)
        response = {order_id: order_json(order) for order_id, order in orders.items()}
        recording.record(Kind.COMMERCE, "orders_get", request=request, response=response)
        return orders

    def order_list(self, *, customer_id: str) -> list[ShopOrder]:
        request = {"customer_id": str(customer_id)}
        recorded = recording.answer(Kind.COMMERCE, "order_list", request)
        if recorded is not recording.MISSING:
            return [order_from_json(data) for data in recorded]
        orders = self.inner.order_list(customer_id=customer_id)
        recording.record(Kind.COMMERCE, "order_list", request=request, response=[order_json(o) for o in orders])
        return orders

    def refund(self, *, key: str, customer_id: str, order_id: str, amount: Decimal, currency: str) -> RefundOutcome:
        if recording.replaying() is not None:
            raise PermanentError("a replay never refunds.")
        outcome = self.inner.refund(
            key=key, customer_id=customer_id, order_id=order_id, amount=amount, currency=currency
        )
        request = {"key": key, "order_id": order_id, "amount": amount, "currency": currency}
        recording.record(Kind.COMMERCE, "refund", request=request, response=outcome.as_result())
        return outcome
