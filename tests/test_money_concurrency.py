"""Refunds at the same time: two deliveries on one order (or on two orders of one customer) are decided one after
the other under the customer's row lock, so together they never exceed a limit."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections, transaction

from agents.models import LedgerEntry
from agents.tools.refunds import RefundsRefused, refunds_execute
from conversations.refunds import RefundAuthority
from conversations.services import conversation_create, refund_orders_lock
from tests.conftest import wait_for
from tests.money import order_in, order_refunded_amount, refunded_on, say


def blocked_on_locks() -> int:
    """Database sessions of this test database waiting for a row lock."""
    with connection.cursor() as cursor:
        # Inside a transaction the statistics views answer from one snapshot unless it is cleared.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def deliveries_at_once(customer: Any, refunds: list[tuple[str, str]]) -> list[Any]:
    """Each (order id, amount) refunded by its own run's delivery, in its own thread and transaction, all let go
    at the same moment: while this test holds the customer's lock, every delivery must wait for it."""
    conversation_id = str(conversation_create(customer=customer).id)
    outcomes: list[Any] = []

    def deliver(index: int, order_id: str, amount: str) -> None:
        try:
            action = {"type": "refund", "order_id": order_id, "amount": amount, "currency": "EUR"}
            outcomes.append(
                refunds_execute(
                    actions=[action],
                    run_id=f"run-{index}",
                    conversation_id=conversation_id,
                    authority=RefundAuthority.AUTOMATIC,
                )
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, args=(i, *refund)) for i, refund in enumerate(refunds)]
    with transaction.atomic():
        refund_orders_lock(customer_id=str(customer.id), order_ids=[])
        for thread in threads:
            thread.start()
        wait_for(lambda: blocked_on_locks() >= len(threads), timeout=20)
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_two_deliveries_on_one_order_at_once_stay_within_the_order_limit(make_customer) -> None:
    customer, _ = make_customer()
    order_in(customer, "SB-45001", "249.00")
    outcomes = deliveries_at_once(customer, [("SB-45001", "60.00"), ("SB-45001", "60.00")])
    assert sorted(type(o).__name__ for o in outcomes) == ["RefundsExecuted", "RefundsRefused"]
    (refused,) = [o for o in outcomes if isinstance(o, RefundsRefused)]
    assert [p.code.value for p in refused.problems] == ["refund_over_limit"]
    assert "with 60.00 already refunded automatically" in refused.problems[0].text
    assert order_refunded_amount("SB-45001") == refunded_on("SB-45001") == Decimal("60.00")
    entry = LedgerEntry.objects.get(kind="refund")
    assert (entry.order_id, entry.customer_id, entry.amount, entry.approved_by) == (
        "SB-45001",
        str(customer.id),
        Decimal("60.00"),
        "automatic",
    )


@pytest.mark.django_db(transaction=True)
def test_two_deliveries_on_two_orders_of_one_customer_stay_within_the_customer_limit(make_customer, settings) -> None:
    settings.REFUND_AUTO_CUSTOMER_LIMIT = Decimal("150.00")
    customer, _ = make_customer()
    order_in(customer, "SB-45002", "249.00")
    order_in(customer, "SB-45003", "249.00")
    outcomes = deliveries_at_once(customer, [("SB-45002", "80.00"), ("SB-45003", "80.00")])
    assert sorted(type(o).__name__ for o in outcomes) == ["RefundsExecuted", "RefundsRefused"]
    (refused,) = [o for o in outcomes if isinstance(o, RefundsRefused)]
    assert [p.code.value for p in refused.problems] == ["refund_over_customer_limit"]
    assert order_refunded_amount("SB-45002") + order_refunded_amount("SB-45003") == Decimal("80.00")


@pytest.mark.e2e
def test_parallel_runs_on_one_order_refund_at_most_the_limit_automatically(worker, make_customer, api) -> None:
    customer, token = make_customer()
    order_in(customer, "SB-45004", "249.00")
    runs: list[Any] = []

    def ask() -> None:
        try:
            runs.append(say(api, token, "Please refund 40 EUR on order SB-45004."))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(run.status for run in runs) == ["awaiting_review", "completed", "completed"]
    assert order_refunded_amount("SB-45004") == refunded_on("SB-45004") == Decimal("80.00")
    assert LedgerEntry.objects.filter(kind="refund", order_id="SB-45004").count() == 2
