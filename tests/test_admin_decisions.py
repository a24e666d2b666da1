"""The admin's decision form: invalid input is refused with a message and decides nothing."""

from __future__ import annotations

import pytest

from orchestration.models import ReviewDecision, ReviewItem
from tests.review_data import run_in_review, staff_reviewer

pytestmark = [pytest.mark.django_db]


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ({"decision": "maybe"}, "decision must be one of approve, edit, reject."),
        ({}, "decision must be one of approve, edit, reject."),
        (
            {"decision": "edit", "reply": "Refunded.", "action": '{"order_id": "SB-1",'},
            "The action is not valid JSON: Expecting property name enclosed in double quotes",
        ),
    ],
)
def test_invalid_input_is_an_error_message_and_no_decision(client, posted: dict, message: str) -> None:
    _, item, _ = run_in_review(steps=1, messages=1)
    client.force_login(staff_reviewer())
    response = client.post(f"/admin/orchestration/reviewitem/{item.id}/decide/", posted, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain == [(f"/admin/orchestration/reviewitem/{item.id}/change/", 302)]
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1 and shown[0].startswith(message), shown
    page = response.content.decode().replace("&quot;", '"')
    assert message[0].upper() + message[1:] in page  # the admin shows messages with capfirst
    assert not ReviewDecision.objects.filter(item=item).exists()
    assert ReviewItem.objects.get(id=item.id).status == ReviewItem.Status.OPEN


def test_approve_ignores_the_action_box(client) -> None:
    """Every button posts all three boxes: approve reads none of them, so a broken action box does not matter."""
    _, item, _ = run_in_review(steps=1, messages=1)
    client.force_login(staff_reviewer())
    posted = {"decision": "approve", "reply": "ignored", "action": "{not json", "rejection": ""}
    response = client.post(f"/admin/orchestration/reviewitem/{item.id}/decide/", posted, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Decision recorded: approved. The run is resuming."]
    decision = ReviewDecision.objects.get(item=item)
    assert decision.decision == "approve" and decision.reply_after == "We refund."
