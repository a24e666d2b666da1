"""Reviewer decisions that could not be executed are refused when they are made (400 with the reason, in the API
and in the admin), never accepted and failed later; large refunds need a second, different reviewer — counted
on the sum of what reviewers approved on an order, not one decision at a time."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents.models import LedgerEntry
from orchestration.models import DeadLetter, ReviewDecision, ReviewItem, Run
from orchestration.reviews import review_decide
from orchestration.selectors import reviewer_refunds_on_the_way
from tests.conftest import run_wait
from tests.money import make_staff, messages, order_in, order_refunded_amount, refund_rows, say
from tests.review_data import run_in_review, staff_reviewer

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def shop(make_customer):
    customer, token = make_customer(name="Ada")
    other, _ = make_customer(name="Bo")
    order_in(customer, "SB-42001", "249.00")
    order_in(customer, "SB-42002", "249.00", currency="USD")
    order_in(other, "SB-42009", "329.00")
    return {"customer": customer, "token": token}


def in_review(api, shop, content: str):
    run = say(api, shop["token"], content)
    assert run.status == "awaiting_review", (run.reason, run.reason_detail)
    return run, ReviewItem.objects.get(run=run)


def assert_refused(response, text: str, item: ReviewItem) -> None:
    assert response.status == 400, response.body
    assert text in response.json["error"]["message"], response.json
    item.refresh_from_db()
    assert item.status == "open" and not ReviewDecision.objects.filter(item=item).exists()


def test_two_edited_actions_whose_sum_exceeds_the_remainder_are_refused_at_decision_time(worker, shop, api) -> None:
    run, item = in_review(api, shop, "Please refund order SB-42001.")
    _, token = make_staff("rita@example.com", reviewer=True)
    response = api(token).post(
        f"/reviews/{item.id}/decision/",
        {
            "decision": "edit",
            "reply": "We refunded 300.00 EUR.",
            "action": [{"order_id": "SB-42001", "amount": "200.00"}, {"order_id": "SB-42001", "amount": "100.00"}],
        },
    )
    assert_refused(response, "exceed the refundable 249.00", item)
    assert refund_rows() == 0 and not DeadLetter.objects.filter(run=run).exists()


def test_an_edit_without_a_currency_on_a_usd_order_is_in_usd(worker, shop, api) -> None:
    run, item = in_review(api, shop, "Please refund order SB-42002.")
    _, token = make_staff("rita@example.com", reviewer=True)
    response = api(token).post(
        f"/reviews/{item.id}/decision/",
        {"decision": "edit", "reply": "We refunded 120.00 USD.", "action": {"order_id": "SB-42002", "amount": "120"}},
    )
    assert response.status == 200, response.body
    assert ReviewDecision.objects.get(item=item).action_after == [
        {"type": "refund", "order_id": "SB-42002", "amount": "120.00", "currency": "USD"}
    ]
    run = run_wait(run.id, statuses=("completed", "failed"))
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert order_refunded_amount("SB-42002") == Decimal("120.00")
    assert LedgerEntry.objects.get(kind="refund").result["currency"] == "USD"


def test_approving_a_proposal_the_validator_marked_not_allowed_is_refused(worker, shop, api) -> None:
    run, item = in_review(api, shop, "Refund order SB-42009 please.")
    assert run.reason == "refund_not_allowed"
    _, token = make_staff("rita@example.com", reviewer=True)
    response = api(token).post(f"/reviews/{item.id}/decision/", {"decision": "approve"})
    assert_refused(response, "not on this customer's account", item)
    assert refund_rows() == 0 and not DeadLetter.objects.filter(run=run).exists()
    assert [m.content for m in messages(run, "system")] == [messages(run, "system")[0].content]  # nothing new


def test_the_admin_refuses_a_decision_that_cannot_be_executed_with_400(worker, shop, api, client) -> None:
    run, item = in_review(api, shop, "Refund order SB-42009 please.")
    reviewer, _ = make_staff("rita@example.com", reviewer=True)
    client.force_login(reviewer)
    response = client.post(f"/admin/orchestration/reviewitem/{item.id}/decide/", {"decision": "approve"})
    assert response.status_code == 400
    assert "not on this customer&#x27;s account" in response.content.decode()
    item.refresh_from_db()
    assert item.status == "open" and refund_rows() == 0
    assert not DeadLetter.objects.filter(run=run).exists()


def test_a_large_refund_needs_a_second_different_reviewer(worker, shop, api, settings) -> None:
    settings.REFUND_SECOND_APPROVAL_ABOVE = Decimal("200.00")
    run, item = in_review(api, shop, "Please refund order SB-42001.")
    notices = [m.content for m in messages(run)]
    (first_user, first), (_, second) = (make_staff(f"{n}@example.com", reviewer=True) for n in ("rita", "sam"))

    response = api(first).post(f"/reviews/{item.id}/decision/", {"decision": "approve"})
    assert response.status == 200, response.body
    item.refresh_from_db()
    assert item.status == "open" and response.json["pending_decision"] == item.pending_decision_id
    pending = ReviewDecision.objects.get(item=item)
    assert pending.needs_second_approval and pending.reviewer == first_user
    # The first approval alone executes nothing, and the customer is told nothing new.
    run.refresh_from_db()
    assert run.status == "awaiting_review" and refund_rows() == 0
    assert [m.content for m in messages(run)] == notices

    again = api(first).post(f"/reviews/{item.id}/decision/", {"decision": "approve"})
    assert again.status == 403 and "second, different reviewer" in again.json["error"]["message"]

    confirmed = api(second).post(f"/reviews/{item.id}/decision/", {"decision": "approve"})
    assert confirmed.status == 200, confirmed.body
    run = run_wait(run.id, statuses=("completed", "failed"))
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert order_refunded_amount("SB-42001") == Decimal("249.00")
    entry = LedgerEntry.objects.get(kind="refund")
    assert (entry.approved_by, entry.approver) == ("reviewer", "rita@example.com + sam@example.com")
    first_decision, second_decision = ReviewDecision.objects.filter(item=item).order_by("id")
    assert second_decision.confirms == first_decision and second_decision.reviewer.username == "sam@example.com"
    assert ReviewItem.objects.get(id=item.id).status == "approved"
    assert len(messages(run, "assistant")) == 1


def test_a_refund_at_or_below_the_second_threshold_needs_one_reviewer(worker, shop, api, settings) -> None:
    settings.REFUND_SECOND_APPROVAL_ABOVE = Decimal("200.00")
    run, item = in_review(api, shop, "Please refund order SB-42001.")
    _, token = make_staff("rita@example.com", reviewer=True)
    response = api(token).post(
        f"/reviews/{item.id}/decision/",
        {"decision": "edit", "reply": "We refunded 200.00 EUR.", "action": {"order_id": "SB-42001", "amount": "200"}},
    )
    assert response.status == 200 and response.json["pending_decision"] is None
    run = run_wait(run.id, statuses=("completed", "failed"))
    assert run.status == "completed" and order_refunded_amount("SB-42001") == Decimal("200.00")
    assert LedgerEntry.objects.get(kind="refund").approver == "rita@example.com"


def test_a_second_reviewer_may_reject_a_first_approval(worker, shop, api, settings) -> None:
    settings.REFUND_SECOND_APPROVAL_ABOVE = Decimal("200.00")
    run, item = in_review(api, shop, "Please refund order SB-42001.")
    _, first = make_staff("rita@example.com", reviewer=True)
    _, second = make_staff("sam@example.com", reviewer=True)
    assert api(first).post(f"/reviews/{item.id}/decision/", {"decision": "approve"}).status == 200
    assert api(second).post(f"/reviews/{item.id}/decision/", {"decision": "reject"}).status == 200
    run = run_wait(run.id, statuses=("completed", "failed"))
    assert run.status == "completed" and refund_rows() == 0
    item.refresh_from_db()
    assert item.status == "rejected" and item.pending_decision is None


def edit_refund(api, token: str, item: ReviewItem, amount: str):
    return api(token).post(
        f"/reviews/{item.id}/decision/",
        {
            "decision": "edit",
            "reply": f"We refunded {amount} EUR.",
            "action": {"order_id": "SB-42003", "amount": amount},
        },
    )


def test_300_then_250_on_one_order_by_the_same_reviewer_needs_a_second_reviewer(worker, shop, api) -> None:
    order_in(shop["customer"], "SB-42003", "900.00")  # REFUND_SECOND_APPROVAL_ABOVE is 500
    (_, rita), (_, sam) = (make_staff(f"{name}@example.com", reviewer=True) for name in ("rita", "sam"))

    run, item = in_review(api, shop, "Please refund order SB-42003.")
    first = edit_refund(api, rita, item, "300.00")
    assert first.status == 200 and first.json["pending_decision"] is None, first.body  # 300: one reviewer
    assert run_wait(run.id, statuses=("completed", "failed")).status == "completed"
    assert order_refunded_amount("SB-42003") == Decimal("300.00")

    run, item = in_review(api, shop, "Please refund order SB-42003 again.")
    second = edit_refund(api, rita, item, "250.00")  # 250 alone is below 500; with the 300 before, above
    assert second.status == 200 and second.json["pending_decision"] is not None, second.body
    run.refresh_from_db()
    assert run.status == "awaiting_review" and order_refunded_amount("SB-42003") == Decimal("300.00")
    again = api(rita).post(f"/reviews/{item.id}/decision/", {"decision": "approve"})
    assert again.status == 403 and "second, different reviewer" in again.json["error"]["message"]

    assert api(sam).post(f"/reviews/{item.id}/decision/", {"decision": "approve"}).status == 200
    assert run_wait(run.id, statuses=("completed", "failed")).status == "completed"
    assert order_refunded_amount("SB-42003") == Decimal("550.00")
    assert list(LedgerEntry.objects.filter(kind="refund").order_by("id").values_list("amount", "approver")) == [
        (Decimal("300.00"), "rita@example.com"),
        (Decimal("250.00"), "rita@example.com + sam@example.com"),
    ]


def test_an_automatic_refund_does_not_count_toward_the_second_approval(worker, shop, api, settings) -> None:
    settings.REFUND_SECOND_APPROVAL_ABOVE = Decimal("200.00")
    order_in(shop["customer"], "SB-42003", "900.00")
    automatic = say(api, shop["token"], "Please refund 90.00 EUR of order SB-42003.")
    assert automatic.status == "completed", (automatic.reason, automatic.reason_detail)
    _, rita = make_staff("rita@example.com", reviewer=True)
    _, item = in_review(api, shop, "Please refund order SB-42003.")
    response = edit_refund(api, rita, item, "200.00")  # 90 by agents + 200: only reviewers' refunds count
    assert response.status == 200 and response.json["pending_decision"] is None, response.body


@pytest.mark.django_db
def test_a_decided_refund_not_yet_delivered_counts_toward_the_second_approval() -> None:
    """Two items on one order decided one after the other, before the first run reached deliver (here: never, its
    dispatch waits for a commit that does not come): the second decision counts the first."""
    run, first_item, _ = run_in_review(steps=1, messages=1)
    customer = run.conversation.customer
    order_in(customer, "SB-42003", "900.00")
    _, second_item, _ = run_in_review(steps=1, messages=1, customer=customer)
    rita = staff_reviewer()
    action = {"order_id": "SB-42003", "amount": "300.00"}
    decided = review_decide(item_id=first_item.id, reviewer=rita, decision="edit", reply="Refunded.", action=action)
    assert decided.pending_decision_id is None and Run.objects.get(id=run.id).status in Run.ACTIVE
    assert refund_rows() == 0 and reviewer_refunds_on_the_way(order_ids=["SB-42003"]) == {"SB-42003": Decimal("300")}
    action = {"order_id": "SB-42003", "amount": "250.00"}
    decided = review_decide(item_id=second_item.id, reviewer=rita, decision="edit", reply="Refunded.", action=action)
    assert decided.pending_decision_id is not None  # 300 on its way + 250 > 500
