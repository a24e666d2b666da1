"""Outside strings and numbers reach money code only in the shapes it reads (issue 12, reviewer's items 2 to 4): a
reviewer's amount is a plain decimal in cents, an order id and a currency are checked before anything is looked up,
and the admin's action box is parsed within the API's depth limit. Every other input is a 400 with a short message
and decides nothing — never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from api.services import api_token_get_or_create
from conversations.refunds import RefundAuthority, RefundHistory, RefundProblemCode, refund_problems
from conversations.selectors import order_currency, order_lookup
from orchestration.models import ReviewDecision, ReviewItem
from project.jsonlimits import JSONRefused, json_loads_limited
from tests.money import order_in
from tests.review_data import run_in_review, staff_reviewer

pytestmark = [pytest.mark.django_db]


def decide(item: ReviewItem, action: Any) -> Any:
    """POST an edit decision with `action` to the API as a reviewer; the body is ASCII JSON, so a lone surrogate
    travels as its escape, exactly as a client would send it."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_get_or_create(user=staff_reviewer())}")
    body = json.dumps({"decision": "edit", "reply": "We refunded you.", "action": action})
    return client.post(f"/api/v1/reviews/{item.id}/decision/", data=body, content_type="application/json")


def assert_refused(response: Any, item: ReviewItem, text: str) -> None:
    assert response.status_code == 400, response.content[:500]
    message = response.json()["error"]["message"]
    assert text in message and len(message) < 400, message
    assert not ReviewDecision.objects.filter(item=item).exists()
    assert ReviewItem.objects.get(id=item.id).status == ReviewItem.Status.OPEN


@pytest.mark.parametrize(
    "amount",
    [
        "1e1000000",  # was a 500 (decimal.Overflow summing it in the policy)
        "1e999999",  # was a 400 quoting a million digits
        "1e100000000",  # was ~100 MB built in memory
        "1e3",  # was silently 1000.00
        "30_00",  # was 3000
        "-5",
        "+5",
        " 30",
        "30.",
        "30,00",
        "0x1e",
        "123456789",  # more digits than an order's total holds
        "١٢",  # digits of another script
        1e16,
        10**12,
        True,
        "0",
    ],
)
def test_a_reviewers_amount_is_a_plain_decimal_in_cents_or_a_400(amount: Any) -> None:
    _, item, _ = run_in_review(steps=1, messages=1)
    response = decide(item, {"order_id": "SB-40001", "amount": amount})
    assert_refused(response, item, "a positive amount in cents")


@pytest.mark.parametrize(
    "order_id",
    ["SB-4\u0000", "SB-40001\u0000", "SB-4\ud800", "SB-40001\n", "sb-40001", "SB-٤٠٠٠١", 40001, None, ["SB-40001"]],
)
def test_a_reviewers_order_id_is_checked_before_any_lookup(order_id: Any) -> None:
    """A NUL or a lone surrogate in the order id was a 500 (PostgreSQL DataError, UnicodeEncodeError)."""
    _, item, _ = run_in_review(steps=1, messages=1)
    response = decide(item, {"order_id": order_id, "amount": "1"})
    assert_refused(response, item, "order_id must be an order number like SB-12345")


@pytest.mark.parametrize("currency", ["EU\u0000", "EUR\ud800", "eur", "EURO", 5])
def test_a_reviewers_currency_is_checked_before_it_is_stored(currency: Any) -> None:
    _, item, _ = run_in_review(steps=1, messages=1)
    response = decide(item, {"order_id": "SB-40001", "amount": "1", "currency": currency})
    assert_refused(response, item, "currency must be a code like EUR")


@pytest.mark.parametrize("order_id", ["SB-4\u0000", "SB-40001\u0000", "SB-4\ud800", "SB-40001\n"])
def test_order_reads_never_send_a_malformed_order_id_to_the_database(order_id: str) -> None:
    """The tools agent's lookups (from a model's arguments), the currency of an order and the refund policy."""
    run, _, _ = run_in_review(steps=1, messages=1)
    order_in(run.conversation.customer, "SB-40001", "90.00")
    assert order_lookup(conversation_id=str(run.conversation_id), order_id=order_id)["found"] is False
    assert order_currency(order_id=order_id) is None
    problems = refund_problems(
        customer_id=str(run.conversation.customer_id),
        actions=[{"type": "refund", "order_id": order_id, "amount": "1.00", "currency": "EUR"}],
        history=RefundHistory(),
        authority=RefundAuthority.REVIEWER,
    )
    assert [problem.code for problem in problems] == [RefundProblemCode.NOT_ALLOWED]


def test_a_well_formed_edit_is_still_accepted() -> None:
    run, item, _ = run_in_review(steps=1, messages=1)
    order_in(run.conversation.customer, "SB-40002", "90.00")
    response = decide(item, [{"order_id": "SB-40002", "amount": 30.5}, {"order_id": "SB-40002", "amount": "20"}])
    assert response.status_code == 200, response.content[:500]
    assert ReviewDecision.objects.get(item=item).action_after == [
        {"type": "refund", "order_id": "SB-40002", "amount": "30.50", "currency": "EUR"},
        {"type": "refund", "order_id": "SB-40002", "amount": "20.00", "currency": "EUR"},
    ]


# --- The admin's action box (item 4) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("[" * 60000, "The action is not valid JSON: it nests deeper than 20 levels."),  # was RecursionError: 500
        ("[" * 21 + "]" * 21, "The action is not valid JSON: it nests deeper than 20 levels."),
        ('{"order_id": "SB-40001", "amount": ' + "9" * 5000 + "}", "The action is not valid JSON: a number in it"),
        ('{"order_id": "SB-40001", "amount": NaN}', "The action is not valid JSON: NaN is not a JSON value."),
    ],
)
def test_the_admin_action_box_is_parsed_within_the_apis_limits(client, action: str, message: str) -> None:
    _, item, _ = run_in_review(steps=1, messages=1)
    client.force_login(staff_reviewer())
    posted = {"decision": "edit", "reply": "Refunded.", "action": action}
    response = client.post(f"/admin/orchestration/reviewitem/{item.id}/decide/", posted, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1 and shown[0].startswith(message), shown
    assert not ReviewDecision.objects.filter(item=item).exists()


def test_json_loads_limited_refuses_with_a_value_error_never_another_exception() -> None:
    for text in ("[" * 100000, "1" * 5000, "NaN", "-Infinity", "{", b"\xff", "[" * 3 + "]" * 3):
        with pytest.raises(JSONRefused):
            json_loads_limited(text, max_depth=2)
    assert json_loads_limited('{"a": [1.5]}', max_depth=2) == {"a": [1.5]}
