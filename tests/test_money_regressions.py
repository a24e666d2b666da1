"""Regressions of issue 12's money findings, through the real pipeline (API, a real worker, PostgreSQL, the
offline provider): the automatic limit holds over the whole order, a processing order goes to a person, and an
amount that is not understood is never refunded as the whole remainder."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestration.models import ReviewItem
from tests.money import messages, order_in, order_refunded_amount, refund_rows, refunded_on, say

pytestmark = [pytest.mark.e2e]


def test_three_messages_99_99_51_on_a_249_order_refund_at_most_the_limit_automatically(
    worker, make_customer, api
) -> None:
    customer, token = make_customer()
    order_in(customer, "SB-40001", "249.00")
    runs = [say(api, token, f"Please refund {amount} EUR on order SB-40001.") for amount in ("99", "99", "51")]
    assert [run.status for run in runs] == ["completed", "awaiting_review", "awaiting_review"]
    assert [run.reason for run in runs[1:]] == ["refund_over_limit", "refund_over_limit"]
    assert order_refunded_amount("SB-40001") == refunded_on("SB-40001") == Decimal("99.00")
    assert refund_rows("SB-40001") == 1
    reasons = ReviewItem.objects.get(run=runs[1]).reasons
    assert any("already refunded automatically" in reason for reason in reasons), reasons


def test_a_processing_order_is_never_refunded_automatically(worker, make_customer, api) -> None:
    customer, token = make_customer()
    order_in(customer, "SB-40002", "45.00", status="processing")
    run = say(api, token, "Please refund my order SB-40002.")
    assert run.status == "awaiting_review" and run.reason == "refund_order_status"
    assert refund_rows("SB-40002") == 0 and order_refunded_amount("SB-40002") == 0
    assert messages(run, "assistant") == []  # no reply confirming a refund went out


@pytest.mark.parametrize(
    ("message", "total", "currency", "refunded"),
    [
        ("Please refund EUR 30 on order {order}.", "90.00", "EUR", "30.00"),
        ("Please refund 30 dollars on order {order}.", "90.00", "EUR", None),
        ("Please refund half of it, order {order}.", "90.00", "EUR", None),
        ("Please refund 1.000,50 EUR on order {order}.", "90.00", "EUR", None),
        ("Please refund 40 EUR on order {order}.", "90.00", "USD", None),
        ("Please refund €30 on order {order}.", "90.00", "EUR", "30.00"),
        ("Please refund 30€ on order {order}.", "90.00", "EUR", "30.00"),
        ("Please refund 30 euros on order {order}.", "90.00", "EUR", "30.00"),
        ("Please refund USD 30 on order {order}.", "90.00", "EUR", None),
        ("Please refund USD 30 on order {order}.", "90.00", "USD", "30.00"),
        ("Please refund $30 on order {order}.", "90.00", "EUR", None),
        ("Please refund 30.50 EUR on order {order}.", "90.00", "EUR", "30.50"),
        ("Please refund 30,50 € on order {order}.", "90.00", "EUR", "30.50"),
        ("Please refund 30.50 on order {order}.", "90.00", "EUR", None),  # no currency: 30.50 of what, or a date?
        ("Please refund 30.00 rupees on order {order}.", "90.00", "EUR", None),
        ("Please refund A$30 on order {order}.", "90.00", "AUD", None),
        ("Please refund everything except €30 on order {order}.", "90.00", "EUR", None),
        ("Please refund a tenth of order {order}.", "90.00", "EUR", None),
        ("Please refund 1,000.50 on order {order}.", "90.00", "EUR", None),
    ],
)
def test_an_amount_not_understood_is_never_refunded_as_the_whole_remainder(
    worker, make_customer, api, message: str, total: str, currency: str, refunded: str | None
) -> None:
    """Understood amounts are refunded exactly; anything else goes to a person and nothing is refunded."""
    customer, token = make_customer()
    order_in(customer, "SB-40003", total, currency=currency)
    run = say(api, token, message.format(order="SB-40003"))
    if refunded is None:
        assert run.status == "awaiting_review", (run.reason, run.reason_detail)
        assert run.reason in ("refund_amount_unclear", "refund_not_allowed"), run.reason
        assert refund_rows("SB-40003") == 0 and order_refunded_amount("SB-40003") == 0
        assert messages(run, "assistant") == []
    else:
        assert run.status == "completed", (run.reason, run.reason_detail)
        assert order_refunded_amount("SB-40003") == refunded_on("SB-40003") == Decimal(refunded)
        reply = messages(run, "assistant")[0].content
        assert f"Your refund of {refunded} {currency}" in reply
