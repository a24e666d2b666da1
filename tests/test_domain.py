"""The domain's rules: the refund policy and the refund write, order ids, money, order reads,
users and demo data; and the LLM agents' shared base. Real database, offline LLM provider."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError

from agents import llm
from agents.base import Outcome
from agents.llm.agent import LLMAgent
from agents.registry import agent_get
from conversations.models import Customer, Order
from conversations.orders import ORDER_ID, amount_format, amount_parse, order_ids_in
from conversations.selectors import (
    conversation_customer_id,
    customer_facts,
    order_lookup,
)
from conversations.services import (
    DEMO_CUSTOMER_ORDERS,
    conversation_create,
    customer_create,
    order_create_demo,
    user_create,
)
from project.errors import Conflict, InvalidInput
from project.settings_commerce import order_id_pattern_check
from tests.conftest import order_add
from tests.test_envelope import make_envelope

# --- Order ids and money (no database) ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "is_order_id"),
    [("SB-12345", True), ("sb-12345", False), ("SB-1234", False), ("SB-123456", False), (" SB-12345", False)],
)
def test_order_id_pattern(value: str, is_order_id: bool) -> None:
    assert bool(ORDER_ID.match(value)) is is_order_id


def test_order_ids_in_a_text_are_sorted_upper_cased_and_each_once() -> None:
    text = "Orders sb-20002 and SB-10001, again SB-20002; not SB-123456 nor XSB-30003 nor SB-4444."
    assert order_ids_in(text) == ["SB-10001", "SB-20002"]
    assert order_ids_in("no order here") == []


@pytest.mark.parametrize(
    ("value", "amount"),
    [
        ("24.50", Decimal("24.50")),
        ("7", Decimal("7")),
        (12.5, Decimal("12.5")),
        (3, Decimal("3")),
        ("-5.00", None),  # no sign: a refund is positive, and a negative amount is nobody's intent
        ("1E+1", None),
        ("1.005", None),
        ("abc", None),
        ("", None),
        (None, None),
        ("NaN", None),
        ("Infinity", None),
    ],
)
def test_amount_parse(value: Any, amount: Decimal | None) -> None:
    assert amount_parse(value) == amount


def test_amount_format_has_two_decimal_places() -> None:
    assert amount_format(Decimal("24.5")) == "24.50"
    assert amount_format(Decimal("7")) == "7.00"
    assert amount_format(Decimal("1E+1")) == "10.00"
    assert amount_format(Decimal("123456789012345.67")) == "123456789012345.67"  # no float on the way


# --- The refund policy and the refund write: tests/test_refund_policy.py -----------------------


@pytest.fixture
def customer(db: Any) -> Customer:
    return customer_create(email="policy@example.com", name="Pat Policy")


@pytest.fixture
def order(customer: Customer) -> Order:
    """A delivered order of 249.00 EUR, 49.00 of it refunded already: 200.00 refundable."""
    order = order_add(customer, "SB-50001", "Aurora noise-cancelling headphones", "249.00")
    order.refunded_amount = Decimal("49.00")
    order.save()
    return order


# --- Order reads ----------------------------------------------------------------------


def test_order_lookup_and_account_facts_describe_an_order_alike(customer: Customer, order: Order) -> None:
    conversation_id = str(conversation_create(customer=customer).id)
    assert conversation_customer_id(conversation_id=conversation_id) == str(customer.id)
    lookup = order_lookup(conversation_id=conversation_id, order_id="SB-50001")
    assert lookup == {
        "order_id": "SB-50001",
        "found": True,
        "description": "Aurora noise-cancelling headphones",
        "total": "249.00",
        "currency": "EUR",
        "status": "delivered",
        "refunded_amount": "49.00",
        "refundable": "200.00",
    }
    [facts] = customer_facts(conversation_id=conversation_id)["orders"]
    assert list(facts) == ["id", "description", "total", "currency", "status", "refunded_amount", "placed_at"]
    assert {key: facts[key] for key in ("description", "total", "currency", "status", "refunded_amount")} == {
        key: lookup[key] for key in ("description", "total", "currency", "status", "refunded_amount")
    }


def test_order_lookup_never_shows_another_customers_order(customer: Customer, order: Order) -> None:
    other = customer_create(email="nosy@example.com")
    conversation_id = str(conversation_create(customer=other).id)
    assert order_lookup(conversation_id=conversation_id, order_id="SB-50001") == {
        "order_id": "SB-50001",
        "found": False,
        "note": "could not find this order on the customer's account",
    }


# --- Users and demo data --------------------------------------------------------------


@pytest.mark.django_db
def test_user_create_checks_the_email_for_customers_and_reviewers() -> None:
    user = user_create(email="  Rita@Example.com ", password="pw", is_staff=True)
    assert (user.username, user.email, user.is_staff) == ("rita@example.com", "rita@example.com", True)
    assert user.check_password("pw")
    with pytest.raises(InvalidInput, match=re.escape("'nobody' is not an email address.")):
        user_create(email="nobody")
    with pytest.raises(InvalidInput, match="is not an email address"):
        customer_create(email="x" * 140 + "@example.com")
    with pytest.raises(Conflict, match=re.escape("A user rita@example.com already exists.")):
        customer_create(email="rita@example.com")
    with pytest.raises(CommandError, match=re.escape("A user rita@example.com already exists.")):
        call_command("create_reviewer", "RITA@example.com")
    with pytest.raises(CommandError, match=re.escape("'nobody' is not an email address.")):
        call_command("create_reviewer", "nobody")


@pytest.mark.django_db
def test_create_reviewer_makes_a_staff_user_in_the_reviewers_group(capsys: Any) -> None:
    call_command("create_reviewer", "Rev@example.com", "--password", "pw")
    reviewer = get_user_model().objects.get(username="rev@example.com")
    assert reviewer.is_staff and reviewer.groups.filter(name="reviewers").exists()
    assert not hasattr(reviewer, "customer")
    assert len(capsys.readouterr().out.strip()) == 40  # the API token


@pytest.mark.django_db
def test_seed_demo_gives_the_demo_customer_the_orders_the_readme_documents() -> None:
    call_command("seed_demo", "--token-only")
    call_command("seed_demo", "--token-only")  # safe to run again
    orders = Order.objects.filter(customer__user__username="demo@example.com").order_by("id")
    assert [(o.id, o.description, o.total, o.currency, o.status) for o in orders] == [
        ("SB-10001", "Set of 4 enamel camping mugs", Decimal("24.50"), "EUR", "delivered"),
        ("SB-10002", "Aurora noise-cancelling headphones", Decimal("249.00"), "EUR", "delivered"),
        ("SB-10003", "Trailhead 40L hiking backpack", Decimal("89.90"), "EUR", "shipped"),
    ]
    assert len(DEMO_CUSTOMER_ORDERS) == 3


def test_demo_orders_are_the_same_for_the_same_customer(customer: Customer) -> None:
    first = [(o.id, o.description) for o in order_create_demo(customer=customer, count=2)]
    Order.objects.filter(customer=customer).delete()
    assert [(o.id, o.description) for o in order_create_demo(customer=customer, count=2)] == first


# --- LLM agents -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("triage", {"message": "Where is my order SB-50001?"}),
        ("planner", {"message": "Where is my order SB-50001?", "intent": "order_status", "order_ids": ["SB-50001"]}),
        ("responder", {"message": "How long does shipping take?", "passages": [], "order_ids": []}),
        ("tools", {"message": "Please refund SB-50001", "intent": "refund", "order_ids": ["SB-50001"]}),
        ("tools", {"message": "A person, please", "intent": "human", "order_ids": []}),
    ],
)
def test_llm_agents_return_the_usage_of_their_call(customer: Customer, order: Order, name: str, payload: dict) -> None:
    agent = agent_get(name)
    assert isinstance(agent, LLMAgent) and agent.queue == "llm"
    envelope = make_envelope(conversation_id=str(conversation_create(customer=customer).id), payload=payload)
    result = agent.handle(envelope)
    expected = llm.complete(agent.prompt, agent.prompt_variables(envelope), agent=name).usage
    assert result.usage == expected
    assert result.usage.input_tokens > 0 and result.usage.prompt_version == agent.prompt.label
    if payload.get("intent") == "human":
        assert result.outcome == Outcome.ESCALATE and result.reason == "customer_asked_for_person"


def test_the_tools_agent_proposes_a_refund_of_the_whole_remainder(customer: Customer, order: Order) -> None:
    envelope = make_envelope(
        conversation_id=str(conversation_create(customer=customer).id),
        payload={"message": "Please refund SB-50001", "intent": "refund", "order_ids": ["SB-50001"]},
    )
    result = agent_get("tools").handle(envelope)
    assert result.payload["proposed_actions"] == [
        {"type": "refund", "order_id": "SB-50001", "amount": "200.00", "currency": "EUR"}
    ]
    assert result.payload["tool_results"]["orders"]["SB-50001"]["refundable"] == "200.00"


def refund(amount: Any = "20.00", **changes: Any) -> dict[str, Any]:
    return {"type": "refund", "order_id": "SB-50001", "amount": amount, "currency": "EUR", **changes}


def test_the_validator_judges_the_refunds_together_and_names_the_gravest_problem(
    customer: Customer, order: Order
) -> None:
    message = "Please refund order SB-50001."
    envelope = make_envelope(
        conversation_id=str(conversation_create(customer=customer).id),
        payload={
            "message": message,
            "draft": message,  # grounded: it says only what the sources say
            "proposed_actions": [refund("90.00"), refund("10.01", currency="USD")],
        },
    )
    result = agent_get("validator").handle(envelope)
    assert result.outcome == Outcome.ESCALATE and result.reason == "refund_not_allowed"
    assert result.payload["verdict"]["reasons"] == [
        "refund_not_allowed: order SB-50001 is in EUR.",
        "refund_over_limit: refunds of 100.01 EUR on order SB-50001 in this run are above the 100.00 limit for agents.",
    ]
    over_limit_only = envelope.evolve(payload={**envelope.payload, "proposed_actions": [refund("150.00")]})
    assert agent_get("validator").handle(over_limit_only).reason == "refund_over_limit"
    within = envelope.evolve(payload={**envelope.payload, "proposed_actions": [refund("15.00"), refund("20.00")]})
    result = agent_get("validator").handle(within)
    assert result.outcome == Outcome.CONTINUE
    assert result.payload["approved_actions"] == [refund("15.00"), refund("20.00")]


@pytest.mark.parametrize(
    ("pattern", "uppercase", "problem"),
    [
        ("SB-[0-9]{5}", True, None),
        ("[A-Z]{2}-\\d{4,8}", True, None),
        ("ord_[a-z0-9]{8}", False, None),
        ("ord_[a-z0-9]{8}", True, "lower-case letters"),
        ("(FF)[0-9]{6}", True, "capturing groups"),
        ("^FF[0-9]{6}", True, "anchors"),
        ("FF\\b[0-9]{6}", True, "anchors"),
        ("[0-9]*", True, "empty or blank"),
        ("[0-9]+", True, "longer than 32"),
        ("[0-9]{1,40}", True, "longer than 32"),
        ("(?:[A-Z0-9]{1,4}){1,4}-X", True, "repeats itself"),
        ("(?:A|B{1,3}){1,3}", True, "repeats itself"),
        ("x(", True, "not a regular expression"),
    ],
)
def test_the_order_id_pattern_setting_is_checked_at_start_up(pattern: str, uppercase: bool, problem: str | None):
    if problem is None:
        assert order_id_pattern_check(pattern, uppercase=uppercase) == pattern
    else:
        with pytest.raises(ImproperlyConfigured, match=re.escape(problem)):
            order_id_pattern_check(pattern, uppercase=uppercase)
