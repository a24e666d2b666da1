"""The reviewer's page in Django admin, with the test client: the queue's customer, amount-at-stake and age columns
(sorted in SQL), the review item's order facts and the policy's reasons in words, and the refund rows of an edit —
checked on submission by the refund policy, a refused edit shown again with the reason."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from agents.envelope import Envelope
from agents.models import LedgerEntry
from conversations.models import Message, Order
from conversations.refunds import RefundAuthority
from conversations.services import conversation_create, customer_create, message_create
from orchestration.models import ReviewDecision, ReviewItem, Run
from orchestration.review_stake import refunds_at_stake
from orchestration.runs import review_item_open, run_start
from tests.conftest import order_add
from tests.review_data import staff_reviewer

pytestmark = [pytest.mark.django_db]


def item_proposing(customer: Any, actions: list[dict[str, Any]], *, reply: str = "We refunded it.") -> ReviewItem:
    """A run of the customer's stopped for review with these refunds proposed (opened as the pipeline opens one)."""
    conversation = conversation_create(customer=customer)
    message, _ = message_create(conversation_id=conversation.id, role=Message.Role.CUSTOMER, content="Refund please")
    run = run_start(conversation=conversation, message=message, trace_id="review-page")
    Run.objects.filter(id=run.id).update(status=Run.Status.AWAITING_REVIEW)
    envelope = Envelope.from_dict(run.start_envelope)
    envelope = envelope.evolve(payload={**envelope.payload, "draft": reply, "proposed_actions": actions})
    return review_item_open(run, reason="refund_over_limit", detail="", envelope=envelope)


def refund(order_id: str, amount: str | None, currency: str = "EUR") -> dict[str, Any]:
    return {"type": "refund", "order_id": order_id, "amount": amount, "currency": currency}


@pytest.fixture
def dana() -> Any:
    customer = customer_create(email="dana@example.com", name="Dana Berg")
    order_add(customer, "SB-60002", "Aurora noise-cancelling headphones", "249.00")
    order_add(customer, "SB-60003", "Trailhead 40L hiking backpack", "89.90", status="shipped")
    return customer


@pytest.fixture
def reviewer(client) -> Any:
    user = staff_reviewer()
    client.force_login(user)
    return user


def page_text(response: Any) -> str:
    """The page as a person reads it: tags dropped, entities for quotes undone, whitespace folded."""
    text = re.sub(r"<[^>]+>", " ", response.content.decode())
    return " ".join(
        text.replace("&#x27;", "'").replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").split()
    )


def test_opening_an_item_stores_the_amount_at_stake() -> None:
    customer = customer_create(email="ola@example.com")
    order_add(customer, "SB-61001", "Mugs", "24.50")
    order_add(customer, "SB-61002", "Tent", "329.00")
    item = item_proposing(customer, [refund("SB-61001", "20.00"), refund("SB-61002", "300.00")])
    assert (item.amount_at_stake, item.stake_currency) == (Decimal("320.00"), "EUR")
    unclear = item_proposing(customer, [refund("SB-61001", None)])
    assert (unclear.amount_at_stake, refunds_at_stake(unclear.proposed_action).text()) == (
        Decimal("0"),
        "0.00 EUR + 1 unclear",
    )
    mixed = refunds_at_stake([refund("SB-61001", "1.00"), refund("SB-61002", "2.50", "USD")])
    assert (mixed.amount, mixed.currency) == (Decimal("3.50"), "EUR+USD")
    assert refunds_at_stake(None).text() == "-"


def test_the_queue_shows_customer_amount_and_age_and_sorts_by_each(client, reviewer, dana) -> None:
    zoe = customer_create(email="zoe@example.com", name="Zoe Adams")
    order_add(zoe, "SB-62001", "Tent", "329.00")
    small = item_proposing(dana, [refund("SB-60002", "120.00")])
    large = item_proposing(zoe, [refund("SB-62001", "329.00")])
    ReviewItem.objects.filter(id=small.id).update(created_at=timezone.now() - timedelta(hours=3))

    response = client.get("/admin/orchestration/reviewitem/")
    assert response.status_code == 200
    text = page_text(response)
    for shown in ("Dana Berg <dana@example.com>", "120.00 EUR", "Zoe Adams <zoe@example.com>", "329.00 EUR", "3 hours"):
        assert shown in text, shown
    headers = re.findall(r'<th scope="col" class="([^"]*)"', response.content.decode())
    for column in ("column-customer", "column-at_stake", "column-age"):
        assert any(column in h and "sortable" in h for h in headers), (column, headers)

    def order_by(column: str, descending: bool = False) -> list[str]:
        index = response.context["cl"].list_display.index(column)
        changelist = client.get(f"/admin/orchestration/reviewitem/?o={'-' if descending else ''}{index}").context["cl"]
        assert changelist.result_count == 2
        return [str(row.id) for row in changelist.result_list]

    assert order_by("at_stake") == [str(small.id), str(large.id)]
    assert order_by("at_stake", descending=True) == [str(large.id), str(small.id)]
    assert order_by("customer") == [str(small.id), str(large.id)]  # Dana before Zoe
    assert order_by("customer", descending=True) == [str(large.id), str(small.id)]
    assert order_by("age") == [str(large.id), str(small.id)]  # youngest first
    assert order_by("age", descending=True) == [str(small.id), str(large.id)]
    # In SQL: the sort key is an annotation and a column, not a Python sort.
    for column, key in (("at_stake", "amount_at_stake"), ("customer", "customer_sort"), ("age", "-created_at")):
        index = response.context["cl"].list_display.index(column)
        changelist = client.get(f"/admin/orchestration/reviewitem/?o={index}").context["cl"]
        assert changelist.queryset.query.order_by[0] == key  # the database sorts (a column or an annotation)


def test_the_item_shows_the_orders_facts_and_why_the_policy_stopped_it(client, reviewer, dana) -> None:
    Order.objects.filter(id="SB-60002").update(
        refunded_amount=Decimal("30.00"), status="partially_refunded", status_before_refund="delivered"
    )
    earlier = item_proposing(dana, [refund("SB-60002", "30.00")])
    LedgerEntry.objects.create(
        key="refund:earlier:0",
        kind="refund",
        run_id=str(earlier.run_id),
        order_id="SB-60002",
        customer_id=str(dana.id),
        amount=Decimal("30.00"),
        currency="EUR",
        approved_by=RefundAuthority.AUTOMATIC,
    )
    item = item_proposing(dana, [refund("SB-60002", "200.00"), refund("SB-60003", "10.00")])
    text = page_text(client.get(f"/admin/orchestration/reviewitem/{item.id}/change/"))
    placed = (timezone.now() - timedelta(days=5)).strftime("%Y-%m-%d")
    delivered = (timezone.now() - timedelta(days=3)).strftime("%Y-%m-%d")
    for shown in (
        "The orders, as the shop reports them",
        f"SB-60002 Aurora noise-cancelling headphones 200.00 EUR 249.00 EUR partially refunded {placed} {delivered}",
        "30.00 EUR automatically, 0.00 EUR approved by reviewers; the shop says 30.00 refunded.",
        "30.00 EUR · automatic · done",
        "219.00 EUR agents may still refund 70.00 on it",
        "89.90 EUR shipped",
        "not yet delivered",
        "Automatic refunds to this customer in the last 30 days: 30.00 of the 200.00 agents may refund (170.00 left",
        "Why the refund policy stopped it",
        "Above what agents may refund on one order (100.00): you may approve it. Refunds of 200.00 EUR on order "
        "SB-60002 in this run, with 30.00 already refunded automatically, are above the 100.00 limit for agents.",
        "Agents refund only delivered orders: you may approve it. Order SB-60003 is shipped",
        "Above what agents may refund to one customer in 30 days (200.00)",
        "One reviewer alone may approve up to 500.00 more on these orders",
    ):
        assert shown in text, shown
    assert "refund_over_limit" not in text.split("Why the refund policy stopped it")[1].split("Decide")[0]


def test_the_refund_rows_choose_orders_and_currencies_not_json(client, reviewer, dana) -> None:
    order_add(dana, "SB-60004", "Nimbus tent", "329.00")
    Order.objects.filter(id="SB-60004").update(currency="USD")
    item = item_proposing(dana, [refund("SB-60002", "249.00")])
    page = client.get(f"/admin/orchestration/reviewitem/{item.id}/change/").content.decode()
    assert 'name="action"' not in page  # no JSON box
    row = re.search(r'<select name="refund-0-order_id"[^>]*>(.*?)</select>', page, re.S)
    assert row and 'form="sb-decide"' in row.group(0)
    assert re.search(r'<option value="SB-60002" selected data-currency="EUR">', row.group(1))
    assert 'value="SB-60004" data-currency="USD"' in row.group(1)
    currencies = re.search(r'<select name="refund-0-currency"[^>]*>(.*?)</select>', page, re.S)
    assert currencies and re.findall(r'<option value="([^"]*)"', currencies.group(1)) == ["", "EUR", "USD"]
    assert 'name="refund-0-amount" value="249.00"' in page
    assert 'name="refund-TOTAL_FORMS" value="2"' in page  # the proposal's row and one to add a refund


def rows(*refunds: tuple[str, str, str], reply: str = "We refunded part of it.") -> dict[str, str]:
    """An edit as the page posts it: the reply, the rows (order, amount, currency) and one blank row."""
    posted = {"decision": "edit", "reply": reply, "rejection": "", "refund-INITIAL_FORMS": str(len(refunds))}
    posted["refund-TOTAL_FORMS"] = str(len(refunds) + 1)
    posted |= {"refund-MIN_NUM_FORMS": "0", "refund-MAX_NUM_FORMS": "10"}
    for index, (order_id, amount, currency) in enumerate((*refunds, ("", "", ""))):
        posted |= {f"refund-{index}-order_id": order_id, f"refund-{index}-amount": amount}
        posted[f"refund-{index}-currency"] = currency
    return posted


def test_an_edited_amount_is_decided_through_the_policy(client, reviewer, dana) -> None:
    item = item_proposing(dana, [refund("SB-60002", "249.00")])
    response = client.post(f"/admin/orchestration/reviewitem/{item.id}/decide/", rows(("SB-60002", "120", "EUR")))
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.EDITED
    assert item.final_action == [{"type": "refund", "order_id": "SB-60002", "amount": "120.00", "currency": "EUR"}]
    assert item.final_reply == "We refunded part of it."


def test_a_blank_currency_is_the_orders_and_a_removed_row_refunds_nothing(client, reviewer, dana) -> None:
    item = item_proposing(dana, [refund("SB-60002", "249.00")])
    posted = rows(("SB-60002", "249.00", "EUR"), ("SB-60003", "5", "")) | {"refund-0-DELETE": "on"}
    assert client.post(f"/admin/orchestration/reviewitem/{item.id}/decide/", posted).status_code == 302
    item.refresh_from_db()
    assert item.final_action == [{"type": "refund", "order_id": "SB-60003", "amount": "5.00", "currency": "EUR"}]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (("SB-60002", "300.00", "EUR"), "action refused: refund of 300.00 EUR exceeds the refundable 249.00."),
        (("SB-60002", "20.00", "USD"), "action refused: order SB-60002 is in EUR."),
        (("SB-60002", "ten", "EUR"), "Edit refused: Refund 1, amount: 'ten' is not an amount."),
        (("SB-60002", "0", "EUR"), "Edit refused: Refund 1, amount: A refund is more than 0."),
        (("SB-99999", "20.00", "EUR"), "Edit refused: Refund 1, order: Select a valid choice."),
        (("SB-60002", "20.00", "GBP"), "Edit refused: Refund 1, currency: Select a valid choice."),
    ],
)
def test_a_refused_edit_shows_the_form_again_with_the_reason(client, reviewer, dana, row, reason) -> None:
    order_add(dana, "SB-60004", "Nimbus tent", "329.00")
    Order.objects.filter(id="SB-60004").update(currency="USD")
    item = item_proposing(dana, [refund("SB-60002", "249.00")])
    response = client.post(f"/admin/orchestration/reviewitem/{item.id}/decide/", rows(row, reply="My own reply."))
    assert response.status_code == 400
    text = page_text(response)
    assert f"Refused, nothing was recorded: {reason}" in text, text[text.find("Decide") :][:600]
    page = response.content.decode()
    assert f'name="refund-0-amount" value="{row[1]}"' in page  # the rows as posted, not the proposal
    assert ">My own reply.</textarea>" in page
    assert not ReviewDecision.objects.filter(item=item).exists()
    assert ReviewItem.objects.get(id=item.id).status == ReviewItem.Status.OPEN


def test_an_edit_above_the_second_approval_threshold_is_a_first_approval(client, reviewer, dana, settings) -> None:
    settings.REFUND_SECOND_APPROVAL_ABOVE = Decimal("100.00")
    item = item_proposing(dana, [refund("SB-60002", "249.00")])
    page = page_text(client.get(f"/admin/orchestration/reviewitem/{item.id}/change/"))
    assert "A second reviewer is needed: these refunds (249.00) come to more than 100.00." in page
    response = client.post(
        f"/admin/orchestration/reviewitem/{item.id}/decide/", rows(("SB-60002", "150", "EUR")), follow=True
    )
    assert "First approval recorded: refunds above the second-approval threshold need another reviewer" in page_text(
        response
    )
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.OPEN and item.pending_decision is not None
    assert item.pending_decision.action_after == [
        {"type": "refund", "order_id": "SB-60002", "amount": "150.00", "currency": "EUR"}
    ]


def test_only_reviewers_see_the_form_and_decide(client, dana) -> None:
    item = item_proposing(dana, [refund("SB-60002", "249.00")])
    viewer = staff_reviewer()
    viewer.groups.clear()
    viewer.user_permissions.add(Permission.objects.get(codename="view_reviewitem"))
    client.force_login(viewer)
    seen = client.get(f"/admin/orchestration/reviewitem/{item.id}/change/")
    assert seen.status_code == 200 and "The orders, as the shop reports them" in page_text(seen)
    assert 'id="sb-decide"' not in seen.content.decode() and "refund-0-amount" not in seen.content.decode()
    assert (
        client.post(f"/admin/orchestration/reviewitem/{item.id}/decide/", rows(("SB-60002", "1", "EUR"))).status_code
        == 403
    )
    client.force_login(staff_reviewer())
    page = client.get(f"/admin/orchestration/reviewitem/{item.id}/change/").content.decode()
    assert 'name="csrfmiddlewaretoken"' in re.search(r'<form id="sb-decide".*?</form>', page, re.S).group(0)
