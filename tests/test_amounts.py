"""Amount understanding (`conversations.amounts`) and the tools agent's refund proposals: an amount is understood
exactly or goes to a person; no amount at all is the whole remainder; nothing else is ever guessed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from agents.registry import agent_get
from conversations.amounts import (
    AmountStated,
    AmountUnclear,
    amount_in_argument,
    amount_in_message,
    refund_amount_requested,
)
from conversations.models import Customer
from conversations.services import conversation_create, customer_create
from tests.money import order_in
from tests.test_envelope import make_envelope

# (words, amount, currency) for what is understood; (words, None, why) for what is not.
MESSAGES = [
    ("refund EUR 30", "30.00", "EUR"),
    ("refund 30 EUR", "30.00", "EUR"),
    ("€30", "30.00", "EUR"),
    ("€ 30", "30.00", "EUR"),
    ("30€", "30.00", "EUR"),
    ("30 euros", "30.00", "EUR"),
    ("30EUR", "30.00", "EUR"),
    ("USD 30", "30.00", "USD"),
    ("$30", "30.00", "USD"),
    ("30 dollars", "30.00", "USD"),
    ("£12,5", "12.50", "GBP"),
    ("30.50", "30.50", None),
    ("30,50", "30.50", None),
    ("Can you refund 20 EUR on order SB-20001?", "20.00", "EUR"),
    ("30 EUR, yes 30 EUR", "30.00", "EUR"),
    ("half of it", None, "a relative amount"),
    ("20% please", None, "a relative amount"),
    ("a partial refund", None, "a relative amount"),
    ("1.000,50 EUR", None, "ambiguous separators: which one is the decimal point?"),
    ("1,000.50", None, "ambiguous separators: which one is the decimal point?"),
    ("1,000 EUR", None, "ambiguous separators: which one is the decimal point?"),
    ("30.505 EUR", None, "ambiguous separators: which one is the decimal point?"),
    ("refund 30", None, "a whole number without a currency"),
    ("my 4 mugs broke", None, "a whole number without a currency"),
    ("thirty euros", None, "a currency without an amount in figures"),
    ("30 EUR or 20 EUR", None, "several different amounts"),
    ("€30 USD", None, "two different currencies"),
]


@pytest.mark.parametrize(("words", "amount", "currency_or_why"), MESSAGES)
def test_a_customers_message(words: str, amount: str | None, currency_or_why: str | None) -> None:
    reading = amount_in_message(words)
    if amount is None:
        assert isinstance(reading, AmountUnclear) and reading.why == currency_or_why, reading
    else:
        assert isinstance(reading, AmountStated), reading
        assert (reading.amount, reading.currency) == (Decimal(amount), currency_or_why)


def test_a_message_naming_no_amount_says_nothing() -> None:
    assert amount_in_message("Please refund my order SB-20001, the mugs arrived chipped.") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (30, ("30", None)),
        (30.5, ("30.5", None)),  # a JSON number: read from its shortest text, never through binary arithmetic
        ("30", ("30.00", None)),
        ("30,50", ("30.50", None)),
        ("EUR 30", ("30.00", "EUR")),
        ("40 EUR", ("40.00", "EUR")),
        ("30 dollars", ("30.00", "USD")),
        ("$30", ("30.00", "USD")),
        ("half", "not one amount in figures"),
        ("about 30 EUR", "not one amount in figures"),
        ("", "not one amount in figures"),
        ("1.000,50", "ambiguous separators: which one is the decimal point?"),
        (0.001, "more than two decimals, or not a number"),
        (True, "not an amount"),
        ({"amount": 30}, "not an amount"),
    ],
)
def test_a_models_tool_argument(value: Any, expected: Any) -> None:
    reading = amount_in_argument(value)
    if expected is None:
        assert reading is None
    elif isinstance(expected, str):
        assert isinstance(reading, AmountUnclear) and reading.why == expected, reading
    else:
        assert isinstance(reading, AmountStated), reading
        assert (reading.amount, reading.currency) == (Decimal(expected[0]), expected[1])


def stated(amount: str, currency: str | None = None) -> AmountStated:
    return AmountStated(Decimal(amount), currency, f"{amount} {currency or ''}".strip())


@pytest.mark.parametrize(
    ("argument", "message", "result"),
    [
        (None, None, None),  # the whole remainder
        (stated("30"), None, stated("30")),  # the model's amount (e.g. from earlier messages)
        (stated("30"), stated("30", "EUR"), stated("30")),
        (stated("30", "EUR"), stated("30"), stated("30", "EUR")),
        (None, stated("30", "EUR"), "the customer asked for this amount; the model proposed everything"),
        (stated("45"), AmountUnclear("half of it", "a relative amount"), "a relative amount"),
        (stated("30", "USD"), stated("30", "EUR"), "the model's amount is not the one the customer asked for"),
        (stated("31"), stated("30", "EUR"), "the model's amount is not the one the customer asked for"),
        (AmountUnclear("lots", "not one amount in figures"), None, "not one amount in figures"),
    ],
)
def test_the_models_amount_never_overrides_the_customers_words(argument: Any, message: Any, result: Any) -> None:
    reading = refund_amount_requested(argument=argument, message=message, order_currency="EUR")
    if isinstance(result, str):
        assert isinstance(reading, AmountUnclear) and reading.why == result, reading
    else:
        assert reading == result


# --- The tools agent, as the model calls it ---------------------------------------------------


@pytest.fixture
def customer(db: Any) -> Customer:
    customer = customer_create(email="amounts@example.com", name="Ada")
    order_in(customer, "SB-51001", "90.00")
    order_in(customer, "SB-51002", "90.00", currency="USD")
    return customer


def proposed(customer: Customer, message: str, *calls: tuple[str, Any]) -> list[dict[str, Any]]:
    """The refunds the tools agent proposes when the model answers with these refund calls."""
    envelope = make_envelope(
        conversation_id=str(conversation_create(customer=customer).id),
        payload={"message": message, "intent": "refund", "order_ids": [order_id for order_id, _ in calls]},
    )
    data = {"calls": [{"tool": "refund", "arguments": {"order_id": oid, "amount": amount}} for oid, amount in calls]}
    return list(agent_get("tools").result_from(envelope, data).payload["proposed_actions"])


def test_no_amount_anywhere_is_the_whole_remainder(customer: Customer) -> None:
    assert proposed(customer, "Please refund SB-51001", ("SB-51001", None)) == [
        {"type": "refund", "order_id": "SB-51001", "amount": "90.00", "currency": "EUR"}
    ]


@pytest.mark.parametrize(
    ("order_id", "argument", "amount", "currency"),
    [
        ("SB-51001", "EUR 30", "30.00", "EUR"),
        ("SB-51001", 30, "30.00", "EUR"),
        ("SB-51001", "30,50", "30.50", "EUR"),
        ("SB-51002", "30", "30.00", "USD"),  # a bare number is the order's currency, never EUR
        ("SB-51002", "40 EUR", "40.00", "EUR"),  # another currency stays itself: the policy refuses it
        ("SB-51001", "30 dollars", "30.00", "USD"),
    ],
)
def test_a_models_amount_is_proposed_exactly(
    customer: Customer, order_id: str, argument: Any, amount: str, currency: str
) -> None:
    assert proposed(customer, f"Please refund {order_id}", (order_id, argument)) == [
        {"type": "refund", "order_id": order_id, "amount": amount, "currency": currency}
    ]


@pytest.mark.parametrize(
    ("message", "argument"),
    [
        ("Please refund half of it, SB-51001", "45.00"),  # the model did the sum: a person decides
        ("Please refund 1.000,50 EUR on SB-51001", "1000.50"),
        ("Please refund SB-51001", "half"),
        ("Please refund 30 EUR on SB-51001", None),  # never everything when the customer named an amount
        ("Please refund 30 EUR on SB-51001", "90.00"),
    ],
)
def test_an_amount_not_understood_is_proposed_without_an_amount(
    customer: Customer, message: str, argument: Any
) -> None:
    (action,) = proposed(customer, message, ("SB-51001", argument))
    assert action["amount"] is None and action["currency"] == "EUR"
    assert action["amount_note"].startswith("the amount ") and "is not understood" in action["amount_note"]
