"""Helpers of the commerce tests (the `shop` fixture is tests/conftest.py's): a worker's settings for the fake shop,
a customer with an order there, and executing a run's refund."""

from __future__ import annotations

from typing import Any

from agents.tools.refunds import refunds_execute
from conversations.refunds import RefundAuthority
from conversations.services import conversation_create
from harness.fake_commerce import TOKEN, FakeCommerce


def commerce_env(shop: FakeCommerce, **extra: str) -> dict[str, str]:
    """A worker's settings for the fake shop."""
    return {
        "COMMERCE_BACKEND": "http",
        "COMMERCE_API_URL": shop.url,
        "COMMERCE_API_TOKEN_ENV": "COMMERCE_API_TOKEN",
        "COMMERCE_API_TOKEN": TOKEN,
        "COMMERCE_API_TIMEOUT_SECONDS": "2",
        **extra,
    }


def execute(conversation_id: str, run_id: str, amount: str = "20.00") -> Any:
    """Deliver's refunds of a run with one automatic refund on SB-50001."""
    return refunds_execute(
        actions=[{"type": "refund", "order_id": "SB-50001", "amount": amount}],
        run_id=run_id,
        conversation_id=conversation_id,
        authority=RefundAuthority.AUTOMATIC,
    )


def customer_with_order(make_customer: Any, shop: FakeCommerce, total: str = "90.00") -> tuple[Any, str]:
    """A customer with order SB-50001 at the shop, and a conversation of theirs."""
    customer, _ = make_customer()
    shop.add_order(str(customer.id), "SB-50001", total)
    return customer, str(conversation_create(customer=customer).id)
