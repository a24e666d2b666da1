"""What agents need from a shop, behind one interface: orders of a customer, and refunds executed once per key.

Two implementations, chosen by COMMERCE_BACKEND (`conversations.shop.commerce_backend`): `DatabaseCommerce`, the
built-in demo tables, and `conversations.commerce_http.HttpCommerce`, a shop's own REST API (docs/commerce-api.md).
The refund policy (`conversations.refunds`) and the agents read orders only through it, so the policy is the same
whatever the backend.

A backend is `transactional` when its refund is written in the caller's database transaction (the demo: the refund
and its ledger row commit together, exactly once by construction). A remote backend is not: the ledger records the
refund as requested before the call and its outcome after, and re-sends the same key after a crash
(`agents.tools.refunds`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from conversations.models import Order
from conversations.orders import amount_format, order_id_valid
from conversations.services import order_refund
from project.errors import PermanentError, Postponed, TransientError


@dataclass(frozen=True)
class ShopOrder:
    """An order as the shop reports it (already checked: a valid id, amounts in cents, a known status)."""

    id: str
    customer_id: str
    description: str
    total: Decimal
    currency: str
    status: str
    """One of `Order.Status`."""
    refunded_amount: Decimal
    status_before_refund: str = ""
    """The status before the first refund (blank: never refunded, or unknown)."""
    placed_at: datetime | None = None
    delivered_at: datetime | None = None
    """When it was delivered (None: not delivered, or the shop did not say)."""

    @property
    def refundable(self) -> Decimal:
        """What may still be refunded: the total less what was refunded already."""
        return self.total - self.refunded_amount

    @classmethod
    def of(cls, order: Order) -> ShopOrder:
        return cls(
            id=order.id,
            customer_id=str(order.customer_id),
            description=order.description,
            total=order.total,
            currency=order.currency,
            status=order.status,
            refunded_amount=order.refunded_amount,
            status_before_refund=order.status_before_refund,
            placed_at=order.placed_at,
            delivered_at=order.delivered_at,
        )


@dataclass(frozen=True)
class RefundOutcome:
    """A refund the shop executed (now, or earlier under the same key)."""

    order_id: str
    amount: Decimal
    currency: str
    order_status: str
    """The order's status after the refund, as the shop reports it ('' when it did not say)."""
    reference: str = ""
    """The shop's id of the refund ('' for the built-in database)."""

    def as_result(self) -> dict[str, Any]:
        """What the ledger records as the refund's result (and deliver reports as an executed action)."""
        result = {
            "order_id": self.order_id,
            "amount": amount_format(self.amount),
            "currency": self.currency,
            "order_status": self.order_status,
        }
        return result | ({"reference": self.reference} if self.reference else {})


class RefundRefused(PermanentError):
    """The shop refused the refund for good (a 4xx): nothing was refunded; retrying cannot change it."""

    code = "refund_refused"


class CommerceUnavailable(TransientError):
    """The shop did not answer usefully (a 5xx, a timeout, no connection): for a refund, its outcome is unknown until
    the same key is sent again."""

    code = "commerce_unavailable"


class CommerceCircuitOpen(Postponed):
    """The shop's API failed repeatedly; calls to it are paused (nothing is sent): the step waits for the circuit
    breaker's cool-down, using up no retry."""

    code = "commerce_circuit_open"


class Commerce(Protocol):
    """A shop, as agents use it. Every read is scoped to the customer: another customer's order is not found."""

    transactional: bool
    """Whether `refund` writes in the caller's database transaction (see the module's docstring)."""

    def orders_get(self, *, customer_id: str, order_ids: Iterable[str]) -> dict[str, ShopOrder]:
        """The customer's orders among `order_ids` (those found), by id. Ids not shaped like one are not asked."""
        ...

    def order_list(self, *, customer_id: str) -> list[ShopOrder]:
        """The customer's orders, newest first."""
        ...

    def refund(self, *, key: str, customer_id: str, order_id: str, amount: Decimal, currency: str) -> RefundOutcome:
        """Refund `amount` on the customer's order, once per `key` (the same key again returns the first outcome).
        Raises RefundRefused (never executed), CommerceUnavailable (outcome unknown: send the same key again) or
        PermanentError."""
        ...


class DatabaseCommerce:
    """The built-in demo shop: the `Order` table. A refund is `conversations.services.order_refund`, under the locks
    the caller holds (`refund_orders_lock`), in the caller's transaction."""

    transactional = True

    def orders_get(self, *, customer_id: str, order_ids: Iterable[str]) -> dict[str, ShopOrder]:
        ids = sorted({order_id for order_id in order_ids if order_id_valid(order_id)})
        return {
            order.id: ShopOrder.of(order)
            for order in Order.objects.filter(id__in=ids)
            if str(order.customer_id) == str(customer_id)
        }

    def order_list(self, *, customer_id: str) -> list[ShopOrder]:
        return [ShopOrder.of(order) for order in Order.objects.filter(customer_id=customer_id).order_by("-placed_at")]

    def refund(self, *, key: str, customer_id: str, order_id: str, amount: Decimal, currency: str) -> RefundOutcome:
        # The key is the ledger's: the row and this write commit together, so a second call never reaches here.
        order = order_refund(order_id=order_id, customer_id=customer_id, amount=amount, currency=currency or None)
        return RefundOutcome(order_id=order.id, amount=amount, currency=order.currency, order_status=order.status)
