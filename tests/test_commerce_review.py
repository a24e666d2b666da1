"""A refund whose outcome stayed unknown (the shop's API down through deliver's retries) in the hands of a reviewer,
through the real review service and a real worker: approving once the shop is back sends the same key again and
refunds once; rejecting sends nothing more and leaves the pending row recorded (still counted by the policy); an
edit may not change or drop a refund already sent. The review page shows the ledger's evidence."""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Any

import pytest

from agents.ledger import ledger_refund_history
from agents.models import LedgerEntry
from conversations.commerce import CommerceUnavailable
from conversations.models import Message
from harness.fake_commerce import FakeCommerce
from orchestration.models import ReviewDecision, ReviewItem, Run
from orchestration.reviews import UNSETTLED_REPLY, review_decide
from project.errors import InvalidInput, PermanentError
from tests.commerce_data import commerce_env, customer_with_order, execute
from tests.conftest import run_wait
from tests.review_data import staff_reviewer

pytestmark = [pytest.mark.e2e]


def unknown_in_review(worker_factory: Any, make_customer: Any, start_run: Any, shop: FakeCommerce, total: str) -> Any:
    """A run refunding 20 EUR on SB-50001 in review: the shop applied the refund, but its answer was lost (a
    timeout) and every later try got a 503 — the outcome stayed unknown."""
    customer, _ = customer_with_order(make_customer, shop, total=total)
    shop.hold_next, shop.hold_seconds = 1, 4  # applied; the answer comes after the worker's 2s timeout
    worker_factory("shopless", env=commerce_env(shop), concurrency=1)
    run = start_run("Please refund 20 EUR on order SB-50001.", customer=customer, budget={"deadline_seconds": 90})
    assert shop.held.wait(30), "the refund never reached the shop"
    shop.fail_next = 100  # then the shop is down
    run = run_wait(run.id, timeout=60)
    assert run.status == "awaiting_review" and run.reason == "commerce_unavailable", (run.reason, run.reason_detail)
    entry = LedgerEntry.objects.get(kind="refund")
    assert entry.status == "pending" and entry.result["tries"] >= 2 and len(shop.refunds) == 1
    return run, ReviewItem.objects.get(run=run, status="open"), entry


def replies(run: Run, role: str) -> list[str]:
    messages = Message.objects.filter(conversation_id=run.conversation_id, role=role)
    return list(messages.values_list("content", flat=True))


def test_approving_once_the_shop_is_back_sends_the_same_key_and_refunds_once(
    worker_factory, make_customer, start_run, shop
) -> None:
    # The whole order: with the refund applied at the shop, the refundable is 0.00 — approving must still be
    # possible (the recorded refund is not decided again, it is sent again).
    run, item, entry = unknown_in_review(worker_factory, make_customer, start_run, shop, total="20.00")
    sent = len(shop.requests)
    shop.fail_next = 0  # the shop is back
    review_decide(item_id=item.id, reviewer=staff_reviewer(), decision="approve")
    run = run_wait(run.id, timeout=40)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert {r["key"] for r in shop.requests} == {entry.key} and len(shop.requests) == sent + 1
    assert len(shop.refunds) == 1 and shop.orders[str(entry.customer_id)]["SB-50001"]["status"] == "refunded"
    rows = list(LedgerEntry.objects.filter(kind="refund").values_list("key", "status", "amount"))
    assert rows == [(entry.key, "done", Decimal("20.00"))]
    assert LedgerEntry.objects.get(kind="refund").result["reference"] == "re_1"
    assert len(replies(run, "assistant")) == 1 and LedgerEntry.objects.filter(key=f"run:{run.id}:reply").count() == 1


def test_an_edit_may_not_change_a_refund_already_sent_and_a_rejection_leaves_it_pending(
    worker_factory, make_customer, start_run, shop, client
) -> None:
    run, item, entry = unknown_in_review(worker_factory, make_customer, start_run, shop, total="90.00")
    reviewer, sent = staff_reviewer(), len(shop.requests)

    # The review page shows the evidence: outcome unknown, the tries, the last error.
    client.force_login(reviewer)
    page = html.unescape(client.get(f"/admin/orchestration/reviewitem/{item.id}/change/").content.decode())
    assert "Refunds already recorded for this run" in page and entry.key in page
    assert f"<td>{entry.result['tries']}</td>" in page and "unknown" in page and "HTTP 503" in page

    # Another amount under a key already sent is refused, with the reason; so is leaving it out of an edit.
    with pytest.raises(InvalidInput, match=r"outcome is unknown; it cannot be changed to 15\.00 EUR.*same key"):
        review_decide(
            item_id=item.id,
            reviewer=reviewer,
            decision="edit",
            reply="We refunded 15.00 EUR.",
            action={"order_id": "SB-50001", "amount": "15.00"},
        )
    with pytest.raises(InvalidInput, match="cannot be left out"):
        review_decide(item_id=item.id, reviewer=reviewer, decision="edit", reply="Nothing refunded.", action=None)
    item.refresh_from_db()
    assert item.status == "open" and not ReviewDecision.objects.filter(item=item).exists()

    # Reject: nothing more is sent; the row stays pending with its evidence and who left it so.
    review_decide(item_id=item.id, reviewer=reviewer, decision="reject")
    run = run_wait(run.id, timeout=40)
    assert run.status == "completed", (run.reason, run.reason_detail)
    # The customer is not told it was refused, nor that nothing changed: the shop may have refunded it.
    assert len(shop.requests) == sent and replies(run, "human_agent") == [UNSETTLED_REPLY]
    left = LedgerEntry.objects.get(kind="refund")
    assert left.status == "pending" and left.result["tries"] == entry.result["tries"] and "503" in left.result["error"]
    assert left.result["left"]["decision"] == "reject" and left.result["left"]["by"] == reviewer.get_username()
    # It still counts against the agents' limits: the shop may have refunded it (here, it did).
    history = ledger_refund_history(customer_id=left.customer_id, order_ids=["SB-50001"])
    assert history.automatic_by_order == {"SB-50001": Decimal("20.00")}
    page = html.unescape(client.get(f"/admin/orchestration/reviewitem/{item.id}/change/").content.decode())
    assert f"left pending: reject by {reviewer.get_username()}" in page


def test_deliver_never_sends_a_recorded_refund_with_other_terms(make_customer, shop) -> None:
    _, conversation_id = customer_with_order(make_customer, shop)
    shop.fail_next = 1
    with pytest.raises(CommerceUnavailable, match="same key"):
        execute(conversation_id, "run-e")
    with pytest.raises(PermanentError, match=r"cannot be changed to 15\.00"):
        execute(conversation_id, "run-e", amount="15.00")
    assert len(shop.requests) == 1 and LedgerEntry.objects.get(kind="refund").amount == Decimal("20.00")
