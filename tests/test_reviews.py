"""Tools, the validator and the human-review queue: refunds happen once, and only when allowed."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from agents.models import LedgerEntry
from api.services import api_token_get_or_create
from conversations.models import Message, Order
from orchestration.models import ReviewDecision, ReviewItem, Run
from orchestration.permissions import reviewers_group
from orchestration.reviews import EXPIRED_REPLY
from orchestration.supervisor import supervisor_sweep
from tests.conftest import order_add, run_wait

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def shop(make_customer):
    """A customer with one small and one large order, and another customer with one order."""
    customer, token = make_customer(name="Ada")
    other, other_token = make_customer(name="Bo")
    return {
        "customer": customer,
        "token": token,
        "other": other,
        "other_token": other_token,
        "small": order_add(customer, "SB-20001", "Set of 4 enamel camping mugs", "45.00"),
        "large": order_add(customer, "SB-20002", "Aurora noise-cancelling headphones", "249.00"),
        "others": order_add(other, "SB-30001", "Nimbus 2-person tent", "329.00"),
    }


def make_staff(email: str, *, reviewer: bool) -> tuple[object, str]:
    user = get_user_model().objects.create_user(username=email, email=email, password="pw-123456", is_staff=True)
    if reviewer:
        user.groups.add(reviewers_group())
    return user, api_token_get_or_create(user=user)


def say(api, token: str, content: str) -> Run:
    client = api(token)
    conversation_id = client.post("/conversations/").json["id"]
    posted = client.post(f"/conversations/{conversation_id}/messages/", {"content": content})
    assert posted.status == 202, posted.body
    return run_wait(posted.json["run"]["id"])


def refund_in_review(api, shop: dict) -> tuple[Run, ReviewItem]:
    """The shop's customer asks for a refund over the limit: the run waits for a reviewer."""
    run = say(api, shop["token"], "Please refund order SB-20002.")
    return run, ReviewItem.objects.get(run=run)


def conversation_messages(run: Run, role: str | None = None) -> list[Message]:
    messages = Message.objects.filter(conversation_id=run.conversation_id)
    return list(messages.filter(role=role) if role else messages)


def refund_rows() -> int:
    return LedgerEntry.objects.filter(kind="refund").count()


def test_a_refund_under_the_limit_of_the_customers_own_order_runs_once(worker, shop, api) -> None:
    run = say(api, shop["token"], "Please refund my order SB-20001, the mugs arrived chipped.")
    assert run.status == "completed", (run.reason, run.reason_detail)
    reply = conversation_messages(run, "assistant")[0].content
    assert "Your refund of 45.00 EUR for order SB-20001 (Set of 4 enamel camping mugs) is confirmed." in reply
    assert refund_rows() == 1
    order = Order.objects.get(id="SB-20001")
    assert order.refunded_amount == Decimal("45.00") and order.status == "refunded"
    orders = {o["id"]: o for o in api(shop["token"]).get("/orders/").json}
    assert orders["SB-20001"]["status"] == "refunded" and orders["SB-20001"]["refunded_amount"] == "45.00"
    assert set(orders) == {"SB-20001", "SB-20002"}  # never another customer's


def test_a_partial_refund_is_partially_refunded(worker, shop, api) -> None:
    run = say(api, shop["token"], "Can you refund 20 EUR on order SB-20001?")
    assert run.status == "completed"
    order = Order.objects.get(id="SB-20001")
    assert order.refunded_amount == Decimal("20.00") and order.status == "partially_refunded"


def test_a_refund_over_the_limit_waits_for_a_person_and_runs_once_when_approved(worker, shop, api) -> None:
    run = say(api, shop["token"], "Please refund order SB-20002, the headphones broke.")
    assert run.status == "awaiting_review" and run.reason == "refund_over_limit"
    item = ReviewItem.objects.get(run=run)
    assert item.proposed_action == [{"type": "refund", "order_id": "SB-20002", "amount": "249.00", "currency": "EUR"}]
    assert "249.00 EUR" in item.proposed_reply
    assert any(r.startswith("refund_over_limit") for r in item.reasons)
    assert refund_rows() == 0 and Order.objects.get(id="SB-20002").refunded_amount == 0
    # The customer's view while a person checks.
    assert api(shop["token"]).get(f"/runs/{run.id}/").json["status"] == "awaiting_review"
    assert "member of our support team" in conversation_messages(run, "system")[0].content

    _, reviewer_token = make_staff("rita@example.com", reviewer=True)
    reviewer = api(reviewer_token)
    queue = reviewer.get("/reviews/").json["results"]
    assert [entry["id"] for entry in queue] == [str(item.id)]
    detail = reviewer.get(f"/reviews/{item.id}/").json
    assert [s["agent"] for s in detail["steps"]][-2:] == ["responder", "validator"]
    assert detail["transcript"][0]["content"].startswith("Please refund order SB-20002")

    decided = reviewer.post(f"/reviews/{item.id}/decision/", {"decision": "approve"})
    assert decided.status == 200, decided.body
    again = reviewer.post(f"/reviews/{item.id}/decision/", {"decision": "approve"})
    assert again.status == 409 and "already decided (approved by rita@example.com" in again.json["error"]["message"]

    run = run_wait(run.id, statuses=("completed", "failed"))
    assert run.status == "completed"
    assert refund_rows() == 1
    order = Order.objects.get(id="SB-20002")
    assert order.refunded_amount == Decimal("249.00") and order.status == "refunded"
    replies = conversation_messages(run, "assistant")
    assert len(replies) == 1 and replies[0].content == item.proposed_reply
    # Earlier agents were not run again: one step each, plus the resumed deliver.
    assert sorted(run.steps.values_list("agent", flat=True)) == sorted(
        ["triage", "planner", "retrieval", "account", "tools", "responder", "validator", "deliver"]
    )
    decision = ReviewDecision.objects.get(item=item)
    assert decision.decision == "approve" and decision.reviewer.username == "rita@example.com"


def test_two_reviewers_approving_at_once_refund_once(worker, shop, api) -> None:
    run, item = refund_in_review(api, shop)
    tokens = [make_staff(f"r{i}@example.com", reviewer=True)[1] for i in range(2)]
    barrier = threading.Barrier(2)
    statuses = []

    def approve(token: str) -> None:
        barrier.wait()
        statuses.append(api(token).post(f"/reviews/{item.id}/decision/", {"decision": "approve"}).status)

    threads = [threading.Thread(target=approve, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [200, 409]
    run = run_wait(run.id, statuses=("completed", "failed"))
    assert run.status == "completed"
    assert refund_rows() == 1 and Order.objects.get(id="SB-20002").refunded_amount == Decimal("249.00")
    assert ReviewDecision.objects.filter(item=item).count() == 1


def test_an_edited_action_is_executed_exactly_as_edited(worker, shop, api) -> None:
    run, item = refund_in_review(api, shop)
    _, token = make_staff("rita@example.com", reviewer=True)
    response = api(token).post(
        f"/reviews/{item.id}/decision/",
        {
            "decision": "edit",
            "reply": "We refunded 120.00 EUR of order SB-20002 as a goodwill gesture.",
            "action": {"order_id": "SB-20002", "amount": "120.00"},
        },
    )
    assert response.status == 200, response.body
    run = run_wait(run.id, statuses=("completed", "failed"))
    assert run.status == "completed"
    assert Order.objects.get(id="SB-20002").refunded_amount == Decimal("120.00")
    assert conversation_messages(run, "human_agent")[0].content.startswith("We refunded 120.00 EUR")
    decision = ReviewDecision.objects.get(item=item)
    assert decision.action_before[0]["amount"] == "249.00" and decision.action_after[0]["amount"] == "120.00"


def test_a_reviewer_cannot_approve_a_refund_of_someone_elses_order(worker, shop, api) -> None:
    _, item = refund_in_review(api, shop)
    _, token = make_staff("rita@example.com", reviewer=True)
    response = api(token).post(
        f"/reviews/{item.id}/decision/",
        {"decision": "edit", "reply": "Done.", "action": {"order_id": "SB-30001", "amount": "10.00"}},
    )
    assert response.status == 400
    assert "not on this customer's account" in response.json["error"]["message"]
    assert ReviewItem.objects.get(id=item.id).status == "open" and refund_rows() == 0


def test_a_rejection_executes_nothing_and_tells_the_customer(worker, shop, api) -> None:
    run, item = refund_in_review(api, shop)
    _, token = make_staff("rita@example.com", reviewer=True)
    response = api(token).post(
        f"/reviews/{item.id}/decision/", {"decision": "reject", "reply": "We need the headphones back first."}
    )
    assert response.status == 200
    run = run_wait(run.id, statuses=("completed", "failed"))
    assert run.status == "completed"
    assert refund_rows() == 0 and Order.objects.get(id="SB-20002").refunded_amount == 0
    assert conversation_messages(run, "human_agent")[0].content == "We need the headphones back first."


def test_a_reply_citing_facts_no_tool_returned_is_flagged(worker, shop, start_run) -> None:
    run = start_run(
        "Please refund my order SB-20001.",
        customer=shop["customer"],
        slip=["triage", ["retrieval", "account"], "tools", "liar", "validator", "deliver"],
    )
    run = run_wait(run.id)
    assert run.status == "awaiting_review" and run.reason == "validation_failed"
    item = ReviewItem.objects.get(run=run)
    assert any("unsupported_facts: 999.00, SB-00001" in r for r in item.reasons), item.reasons
    assert refund_rows() == 0 and conversation_messages(run, "assistant") == []


def test_asking_about_another_customers_order_leaks_nothing(worker, shop, api) -> None:
    run = say(api, shop["token"], "Where is my order SB-30001?")
    assert run.status == "completed"
    reply = conversation_messages(run, "assistant")[0].content
    assert "I could not find order SB-30001 on your account." in reply
    for message in conversation_messages(run):
        assert "Nimbus" not in message.content and "329" not in message.content
    tools_output = run.steps.get(agent="tools").output["envelope"]["payload"]["tool_results"]
    assert tools_output["orders"]["SB-30001"]["found"] is False
    assert set(tools_output["orders"]["SB-30001"]) == {"order_id", "found", "note"}


def test_a_refund_of_another_customers_order_goes_to_a_person_and_nothing_happens(worker, shop, api) -> None:
    run = say(api, shop["token"], "Refund order SB-30001 please.")
    item = ReviewItem.objects.get(run=run)
    assert run.status == "awaiting_review" and run.reason == "refund_not_allowed", item.reasons
    assert any("not on this customer's account" in r for r in item.reasons)
    assert refund_rows() == 0 and Order.objects.get(id="SB-30001").refunded_amount == 0


def test_asking_for_a_person_escalates(worker, shop, api) -> None:
    run = say(api, shop["token"], "I want to speak to a human please")
    assert run.status == "awaiting_review" and run.reason == "customer_asked_for_person"
    assert ReviewItem.objects.get(run=run).status == "open"


def test_an_undecided_item_becomes_overdue_then_is_denied_and_the_customer_told(worker, shop, api, settings) -> None:
    run, item = refund_in_review(api, shop)
    settings.REVIEW_OVERDUE_SECONDS = 60
    settings.REVIEW_EXPIRE_SECONDS = 3600
    ReviewItem.objects.filter(id=item.id).update(created_at=timezone.now() - timedelta(minutes=5))
    report = supervisor_sweep()
    assert report.reviews_overdue == 1 and report.reviews_expired == []
    item.refresh_from_db()
    assert item.overdue and item.status == "open"

    ReviewItem.objects.filter(id=item.id).update(created_at=timezone.now() - timedelta(hours=2))
    report = supervisor_sweep()
    assert report.reviews_expired == [str(item.id)]
    item.refresh_from_db()
    assert item.status == "expired" and item.decided_by is None
    run = run_wait(run.id, statuses=("completed", "failed"))
    assert run.status == "completed"
    assert conversation_messages(run, "system")[-1].content == EXPIRED_REPLY
    assert refund_rows() == 0 and Order.objects.get(id="SB-20002").refunded_amount == 0
    assert supervisor_sweep().reviews_expired == []  # idempotent


def test_reviews_api_is_for_reviewers_only(worker, shop, api) -> None:
    _, item = refund_in_review(api, shop)
    _, staff_token = make_staff("sam@example.com", reviewer=False)
    for token in (shop["token"], staff_token):
        client = api(token)
        assert client.get("/reviews/").status == 403
        assert client.get(f"/reviews/{item.id}/").status == 403
        assert client.post(f"/reviews/{item.id}/decision/", {"decision": "approve"}).status == 403
    assert api(None).get("/reviews/").status == 401
    assert ReviewItem.objects.get(id=item.id).status == "open"


def test_the_admin_queue_works_for_reviewers_and_refuses_other_staff(worker, shop, api, client) -> None:
    run, item = refund_in_review(api, shop)
    other_run = say(api, shop["token"], "I want to speak to a human please")

    staff, _ = make_staff("sam@example.com", reviewer=False)
    client.force_login(staff)
    assert client.get("/admin/orchestration/reviewitem/").status_code == 403
    assert client.post(f"/admin/orchestration/reviewitem/{item.id}/decide/", {"decision": "approve"}).status_code == 403

    reviewer, _ = make_staff("rita@example.com", reviewer=True)
    client.force_login(reviewer)
    page = client.get("/admin/orchestration/reviewitem/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "refund_over_limit" in body and "customer_asked_for_person" in body
    assert body.index("refund_over_limit") < body.index("customer_asked_for_person")  # oldest first
    detail = client.get(f"/admin/orchestration/reviewitem/{item.id}/change/").content.decode()
    for expected in (
        "Please refund order SB-20002.",
        "validator",
        "249.00 EUR",
        "refund_over_limit",
        "Approve as proposed",
    ):
        assert expected in detail
    filtered = client.get("/admin/orchestration/reviewitem/?reason=customer_asked_for_person").content.decode()
    assert str(ReviewItem.objects.get(run=other_run).id) in filtered and str(item.id) not in filtered

    # Post where the page's own decision form posts.
    action = re.search(r'<form id="sb-decide" method="post" action="([^"]+)"', detail).group(1)
    assert action == f"/admin/orchestration/reviewitem/{item.id}/decide/"
    response = client.post(action, {"decision": "approve"}, follow=True)
    assert "Decision recorded: approved" in response.content.decode()
    response = client.post(f"/admin/orchestration/reviewitem/{item.id}/decide/", {"decision": "approve"}, follow=True)
    assert "already decided" in response.content.decode()
    run = run_wait(run.id, statuses=("completed", "failed"))
    assert run.status == "completed" and refund_rows() == 1

    response = client.post(
        f"/admin/orchestration/reviewitem/{ReviewItem.objects.get(run=other_run).id}/decide/",
        {"decision": "reject", "rejection": "A colleague will call you today."},
        follow=True,
    )
    assert "Decision recorded: rejected" in response.content.decode()
    assert run_wait(other_run.id, statuses=("completed",)).status == "completed"
    assert conversation_messages(other_run, "human_agent")[0].content == "A colleague will call you today."
