"""A decided review item as a golden case: each decision becomes its expected outcome (in-process: the items are
written straight to the database; tests/test_eval.py saves one from the admin and runs it through the pipeline)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.utils import timezone

from evaluation.models import GoldenCase
from evaluation.services import golden_case_from_review
from orchestration.models import ReviewItem
from project.errors import Conflict, InvalidInput
from tests.conftest import order_add
from tests.review_data import run_in_review, staff_reviewer

pytestmark = [pytest.mark.django_db]


def _decided(status: str, *, reply: str, action: Any) -> ReviewItem:
    run, item, _ = run_in_review(steps=1, messages=1)
    order_add(run.conversation.customer, "SB-41001", "Aurora noise-cancelling headphones", "249.00", status="refunded")
    item.status = status
    item.final_reply = reply
    item.final_action = action
    item.decided_at = timezone.now()
    item.resume_envelope = {"payload": {"intent": "refund"}}
    item.save()
    return item


@pytest.mark.parametrize(
    ("status", "action", "expected"),
    [
        ("edited", [{"type": "refund", "order_id": "SB-41001", "amount": "120.00", "currency": "EUR"}],
         {"proposed": True, "order": "SB-41001", "amount": "120.00"}),
        ("edited", None, {"proposed": False}),
        ("rejected", None, {"executed": False}),
    ],
)  # fmt: skip
def test_the_decision_is_the_expected_outcome_and_the_reply_the_reference(status: str, action: Any, expected: dict):
    item = _decided(status, reply="We refunded 120 EUR of SB-41001.", action=action)
    row = golden_case_from_review(item_id=item.id, user=staff_reviewer())
    assert row.case_id == f"review-{str(item.id)[:8]}"
    assert row.data["messages"] == ["Refund SB-1"]
    [order] = row.data["orders"]
    assert (order["id"], order["total"], order["status"]) == ("SB-41001", "249.00", "delivered")  # before its refund
    assert row.data["expect"] == {
        "intent": "refund",
        "action": expected,
        "review": True,
        "review_reason": "refund_over_limit",
        "reference": {"reply": "We refunded 120 EUR of SB-41001."},
    }


def test_only_decided_items_once_each() -> None:
    _, item, _ = run_in_review(steps=1, messages=1)
    reviewer = staff_reviewer()
    with pytest.raises(InvalidInput, match="This review item is open: only items a reviewer approved"):
        golden_case_from_review(item_id=item.id, user=reviewer)
    item.status = ReviewItem.Status.EXPIRED
    item.save()
    with pytest.raises(InvalidInput, match="This review item is expired"):
        golden_case_from_review(item_id=item.id, user=reviewer)
    decided = _decided("approved", reply="We refund.", action=None)
    golden_case_from_review(item_id=decided.id, user=reviewer)
    with pytest.raises(Conflict):
        golden_case_from_review(item_id=decided.id, user=reviewer)
    assert GoldenCase.objects.count() == 1


def test_a_golden_case_row_added_in_admin_is_checked_against_the_schema(client) -> None:
    from django.contrib.auth import get_user_model

    admin_user = get_user_model().objects.create_superuser("root-eval", "root@example.com", "pw")
    client.force_login(admin_user)
    assert client.get("/admin/evaluation/goldencase/add/").status_code == 200
    bad = {"id": "ship", "title": "Shipping", "messages": ["How long?"], "expect": {"intnet": "shipping"}}
    response = client.post("/admin/evaluation/goldencase/add/", {"case_id": "ship", "data": json.dumps(bad)})
    assert response.status_code == 200 and "expect.intnet: unknown key" in response.content.decode()
    good = {**bad, "expect": {"intent": "shipping"}}
    response = client.post("/admin/evaluation/goldencase/add/", {"case_id": "ship", "data": json.dumps(good)})
    assert response.status_code == 302
    row = GoldenCase.objects.get()
    assert (row.case_id, row.created_by_id) == ("ship", admin_user.id)
    assert client.get("/admin/evaluation/goldencase/").status_code == 200


def test_staff_who_may_not_decide_cannot_post_the_save_action(client) -> None:
    """The action is the reviewers' only: a POST of it by staff who may view the queue runs nothing."""
    from django.contrib.auth.models import Permission

    decided = _decided("approved", reply="We refund.", action=None)
    viewer = staff_reviewer()
    viewer.groups.clear()
    viewer.user_permissions.add(Permission.objects.get(codename="view_reviewitem"))
    client.force_login(viewer)
    response = client.post(
        "/admin/orchestration/reviewitem/",
        {"action": "save_as_golden_case", "_selected_action": [str(decided.id)], "index": "0"},
        follow=True,
    )
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == ["No action selected."]
    assert not GoldenCase.objects.exists()
