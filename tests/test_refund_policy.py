"""The refund policy (`conversations.refunds.refund_problems`): one run's refunds judged together, with the
ledger's history, per order, per customer and by order status; and the refund write. Real database."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from agents.ledger import ledger_refund_history
from agents.models import LedgerEntry
from conversations.models import Customer, Order
from conversations.refunds import (
    RefundAuthority,
    RefundHistory,
    RefundProblem,
    RefundProblemCode,
    order_allows_automatic_refund,
    problem_severity,
    problems_gravest,
    refund_auto_limit,
    refund_problems,
)
from conversations.services import customer_create, order_refund
from project.errors import PermanentError
from tests.conftest import order_add

NOT_ALLOWED = RefundProblemCode.NOT_ALLOWED
OVER_LIMIT = RefundProblemCode.OVER_LIMIT
UNCLEAR = RefundProblemCode.AMOUNT_UNCLEAR
STATUS = RefundProblemCode.ORDER_STATUS
CUSTOMER_LIMIT = RefundProblemCode.OVER_CUSTOMER_LIMIT
AUTOMATIC, REVIEWER = RefundAuthority.AUTOMATIC, RefundAuthority.REVIEWER
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def customer(db: Any) -> Customer:
    return customer_create(email="policy@example.com", name="Pat Policy")


@pytest.fixture
def order(customer: Customer) -> Order:
    """A delivered order of 249.00 EUR, 49.00 of it refunded already (by a person): 200.00 refundable."""
    order = order_add(customer, "SB-50001", "Aurora noise-cancelling headphones", "249.00")
    order.refunded_amount = Decimal("49.00")
    order.save()
    return order


def refund(amount: Any = "20.00", **changes: Any) -> dict[str, Any]:
    return {"type": "refund", "order_id": "SB-50001", "amount": amount, "currency": "EUR", **changes}


def problems_of(
    customer: Customer,
    *actions: dict[str, Any],
    authority: RefundAuthority = AUTOMATIC,
    history: RefundHistory | None = None,
) -> list[RefundProblem]:
    return refund_problems(
        customer_id=str(customer.id), actions=list(actions), history=history or RefundHistory(), authority=authority
    )


# --- One refund ----------------------------------------------------------------------------


def test_a_refund_within_every_rule_has_no_problems(customer: Customer, order: Order) -> None:
    assert problems_of(customer, refund("20.00")) == []
    assert problems_of(customer, refund(100)) == []  # exactly the automatic limit
    assert problems_of(customer, {"type": "refund", "order_id": "SB-50001", "amount": "5"}) == []  # no currency


def test_an_unknown_action_type_is_not_allowed(customer: Customer, order: Order) -> None:
    assert problems_of(customer, refund(type="gift_card")) == [
        RefundProblem(NOT_ALLOWED, "unknown action type 'gift_card'.")
    ]
    assert problems_of(customer, {"order_id": "SB-50001", "amount": "5"}) == [
        RefundProblem(NOT_ALLOWED, "unknown action type None.")
    ]


def test_a_refund_needs_an_order_number_of_the_customers_own(customer: Customer, order: Order) -> None:
    assert problems_of(customer, refund(order_id="50001")) == [
        RefundProblem(NOT_ALLOWED, "'50001' is not an order number.")
    ]
    other = customer_create(email="other-policy@example.com")
    order_add(other, "SB-50002", "Nimbus 2-person tent", "329.00")
    for order_id in ("SB-50002", "SB-59999"):
        assert problems_of(customer, refund(order_id=order_id), authority=REVIEWER) == [
            RefundProblem(NOT_ALLOWED, f"order {order_id} is not on this customer's account.")
        ]
    assert problems_of(other, refund(order_id="SB-50002", amount="10.00")) == []


@pytest.mark.parametrize("amount", ["abc", "", "0", "0.00", "-5.00", -5, "1.005", "NaN", "1.000,50"])
def test_a_refund_needs_a_positive_amount_in_cents(customer: Customer, order: Order, amount: Any) -> None:
    for authority in (AUTOMATIC, REVIEWER):
        assert problems_of(customer, refund(amount), authority=authority) == [
            RefundProblem(NOT_ALLOWED, f"refund amount {amount!r} is not a positive amount.")
        ]


def test_an_amount_not_understood_is_a_persons_to_write_never_a_guess(customer: Customer, order: Order) -> None:
    note = "the amount 'half of it' is not understood (a relative amount)."
    for authority in (AUTOMATIC, REVIEWER):
        assert problems_of(customer, refund(None, amount_note=note), authority=authority) == [
            RefundProblem(UNCLEAR, note)
        ]
    assert problems_of(customer, refund(None)) == [RefundProblem(UNCLEAR, "no amount was given.")]


def test_a_refund_may_not_exceed_the_refundable_remainder_whoever_approves(customer: Customer, order: Order) -> None:
    assert problems_of(customer, refund("200.00"), authority=REVIEWER) == []
    assert problems_of(customer, refund("200.01"), authority=REVIEWER) == [
        RefundProblem(NOT_ALLOWED, "refund of 200.01 EUR exceeds the refundable 200.00.")
    ]


def test_a_refund_must_be_in_the_orders_currency(customer: Customer, order: Order) -> None:
    assert problems_of(customer, refund(currency="USD"), authority=REVIEWER) == [
        RefundProblem(NOT_ALLOWED, "order SB-50001 is in EUR.")
    ]


def test_over_the_automatic_limit_only_agents_are_stopped(customer: Customer, order: Order) -> None:
    assert refund_auto_limit() == Decimal("100.00")
    assert problems_of(customer, refund("100.01")) == [
        RefundProblem(OVER_LIMIT, "refund of 100.01 EUR is above the 100.00 limit for agents.")
    ]
    assert problems_of(customer, refund("100.01"), authority=REVIEWER) == []


def test_every_problem_of_a_refund_is_reported(customer: Customer, order: Order) -> None:
    problems = problems_of(customer, refund("250.00", currency="USD"))
    assert [problem.code for problem in problems] == [NOT_ALLOWED, NOT_ALLOWED, OVER_LIMIT, CUSTOMER_LIMIT]
    assert problems_gravest(problems) == NOT_ALLOWED


def test_severity_ranks_not_allowed_then_unclear_then_what_a_person_may_approve() -> None:
    assert problem_severity(NOT_ALLOWED) > problem_severity(UNCLEAR) > problem_severity(OVER_LIMIT)
    assert problem_severity(OVER_LIMIT) == problem_severity(STATUS) == problem_severity(CUSTOMER_LIMIT)
    assert [code.value for code in RefundProblemCode] == [
        "refund_not_allowed",
        "refund_over_limit",
        "refund_amount_unclear",
        "refund_order_status",
        "refund_over_customer_limit",
    ]


# --- A run's refunds together, and the ledger's history ---------------------------------------


def test_a_runs_refunds_of_one_order_are_judged_on_their_sum(customer: Customer, order: Order) -> None:
    assert problems_of(customer, refund("60.00"), refund("40.00")) == []
    assert problems_of(customer, refund("100.00"), refund("100.00")) == [
        RefundProblem(
            OVER_LIMIT, "refunds of 200.00 EUR on order SB-50001 in this run are above the 100.00 limit for agents."
        )
    ]
    assert problems_of(customer, refund("150.00"), refund("50.01"), authority=REVIEWER) == [
        RefundProblem(NOT_ALLOWED, "refunds of 200.01 EUR on order SB-50001 in this run exceed the refundable 200.00.")
    ]


def test_earlier_automatic_refunds_of_the_order_count_against_its_limit(customer: Customer, order: Order) -> None:
    history = RefundHistory(automatic_by_order={"SB-50001": Decimal("99.00")})
    assert problems_of(customer, refund("1.00"), history=history) == []
    assert problems_of(customer, refund("1.01"), history=history) == [
        RefundProblem(
            OVER_LIMIT,
            "refund of 1.01 EUR, with 99.00 already refunded automatically, is above the 100.00 limit for agents.",
        )
    ]
    assert problems_of(customer, refund("1.01"), history=history, authority=REVIEWER) == []


def test_refunds_sent_with_an_outcome_unknown_are_taken_off_the_refundable(customer: Customer, order: Order) -> None:
    # 200.00 refundable; 150.00 of it sent to a shop that never answered: it may have happened.
    history = RefundHistory(pending_by_order={"SB-50001": Decimal("150.00")})
    assert problems_of(customer, refund("50.00"), history=history, authority=REVIEWER) == []
    refused = [
        RefundProblem(
            NOT_ALLOWED,
            "refund of 50.01 EUR exceeds the refundable 200.00 less 150.00 sent to the shop with an outcome still "
            "unknown.",
        )
    ]
    assert problems_of(customer, refund("50.01"), history=history, authority=REVIEWER) == refused


def test_the_customers_automatic_refunds_in_the_window_have_a_limit(customer: Customer, order: Order) -> None:
    order_add(customer, "SB-50003", "Nimbus 2-person tent", "329.00")
    history = RefundHistory(automatic_for_customer=Decimal("150.00"))
    assert problems_of(customer, refund("30.00"), refund("20.00", order_id="SB-50003"), history=history) == []
    assert problems_of(customer, refund("30.00"), refund("20.01", order_id="SB-50003"), history=history) == [
        RefundProblem(
            CUSTOMER_LIMIT,
            "refunds of 50.01 in this run, with 150.00 refunded automatically to this customer in the last 30 days, "
            "are above the 200.00 limit per customer for agents.",
        )
    ]
    assert problems_of(customer, refund("60.00"), history=history, authority=REVIEWER) == []


def test_the_ledger_history_counts_automatic_refunds_only_and_the_window_in_days(
    customer: Customer, order: Order, settings: Any
) -> None:
    def row(key: str, amount: str, approved_by: str, *, order_id: str = "SB-50001", days_ago: int = 0) -> None:
        entry = LedgerEntry.objects.create(
            key=key,
            kind="refund",
            order_id=order_id,
            customer_id=str(customer.id),
            amount=Decimal(amount),
            currency="EUR",
            approved_by=approved_by,
        )
        LedgerEntry.objects.filter(id=entry.id).update(created_at=timezone.now() - timedelta(days=days_ago))

    row("a", "10.00", "automatic")
    row("b", "20.00", "automatic", days_ago=40)
    row("c", "99.00", "reviewer")
    row("d", "5.50", "automatic", order_id="SB-50004")  # another order of the customer (USD or not: face value)
    history = ledger_refund_history(customer_id=str(customer.id), order_ids=["SB-50001"])
    assert history.automatic_by_order == {"SB-50001": Decimal("30.00")}  # every automatic refund of the order
    assert history.automatic_for_customer == Decimal("15.50")  # the last 30 days, all orders
    settings.REFUND_AUTO_WINDOW_DAYS = 60
    assert ledger_refund_history(customer_id=str(customer.id), order_ids=[]).automatic_for_customer == Decimal("35.50")


# --- Order status --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "before", "allowed"),
    [
        ("processing", "", False),
        ("shipped", "", False),
        ("delivered", "", True),
        ("partially_refunded", "delivered", True),
        ("partially_refunded", "processing", False),
        ("partially_refunded", "", False),  # refunded before the status was recorded: unknown
        ("refunded", "delivered", False),
    ],
)
def test_the_status_table(customer: Customer, status: str, before: str, allowed: bool) -> None:
    order = order_add(customer, "SB-50005", "Nimbus 2-person tent", "100.00", status=status)
    order.status_before_refund = before
    assert order_allows_automatic_refund(order) is allowed


def test_an_order_not_yet_delivered_is_a_persons_to_refund(customer: Customer) -> None:
    order_add(customer, "SB-50006", "Nimbus 2-person tent", "100.00", status="processing")
    action = refund("10.00", order_id="SB-50006")
    assert problems_of(customer, action) == [
        RefundProblem(STATUS, "order SB-50006 is processing: a person checks refunds of orders not yet delivered.")
    ]
    assert problems_of(customer, action, authority=REVIEWER) == []


# --- The refund write ----------------------------------------------------------------------


def test_order_refund_adds_to_the_refunded_amount_and_keeps_the_status_before(customer: Customer, order: Order) -> None:
    refunded = order_refund(order_id="SB-50001", customer_id=str(customer.id), amount=Decimal("150.00"), currency="EUR")
    assert refunded.refunded_amount == Decimal("199.00")
    assert (refunded.status, refunded.status_before_refund) == (Order.Status.PARTIALLY_REFUNDED, "delivered")
    refunded = order_refund(order_id="SB-50001", customer_id=str(customer.id), amount=Decimal("50.00"), currency=None)
    order.refresh_from_db()
    assert order.refunded_amount == order.total == Decimal("249.00")
    assert (order.status, order.status_before_refund) == (Order.Status.REFUNDED, "delivered")


@pytest.mark.parametrize(
    ("amount", "currency", "owner"),
    [("200.01", "EUR", True), ("10.00", "USD", True), ("0.00", "EUR", True), ("1.00", "EUR", False)],
)
def test_order_refund_writes_nothing_that_must_never_happen(
    customer: Customer, order: Order, amount: str, currency: str, owner: bool
) -> None:
    customer_id = str(customer.id if owner else customer_create(email="thief@example.com").id)
    with pytest.raises(PermanentError, match=r"^refund refused: "):
        order_refund(order_id="SB-50001", customer_id=customer_id, amount=Decimal(amount), currency=currency)
    order.refresh_from_db()
    assert order.refunded_amount == Decimal("49.00")


def test_no_float_in_the_refund_paths() -> None:
    paths = [
        "conversations/amounts.py",
        "conversations/refunds.py",
        "conversations/orders.py",
        "conversations/services.py",
        "agents/tools/agent.py",
        "agents/tools/refunds.py",
        "agents/ledger.py",
        "agents/deliver.py",
        "orchestration/reviews.py",
    ]
    for path in paths:
        assert not re.search(r"\bfloat\(", (ROOT / path).read_text()), path
