"""The order system behind one interface (conversations/commerce.py): the HTTP adapter against a fake shop
(harness/fake_commerce.py), and refunds through it exactly once — over 5xx, timeouts, an outcome that stays unknown
(a person decides, with the evidence) and a worker killed between the request and the recorded outcome."""

from __future__ import annotations

import os
import signal
from decimal import Decimal

import pytest
from django.test import override_settings

from agents.models import LedgerEntry
from agents.tools.refunds import RefundsExecuted, refund_key
from conversations.commerce import CommerceUnavailable, RefundRefused
from conversations.commerce_http import HttpCommerce
from conversations.models import Message
from conversations.selectors import customer_facts, order_lookup
from orchestration.models import Step
from tests.commerce_data import commerce_env, customer_with_order, execute
from tests.conftest import run_wait

pytestmark = [pytest.mark.e2e]


def test_http_adapter_looks_up_lists_and_refunds_once_per_key(make_customer, shop) -> None:
    customer, conversation_id = customer_with_order(make_customer, shop)
    found = order_lookup(conversation_id=conversation_id, order_id="SB-50001")
    assert found["found"] and found["refundable"] == "90.00" and found["status"] == "delivered"
    assert not order_lookup(conversation_id=conversation_id, order_id="SB-59999")["found"]
    assert [o["id"] for o in customer_facts(conversation_id=conversation_id)["orders"]] == ["SB-50001"]
    # Another customer's order is never found, whatever the shop holds.
    other, _ = make_customer()
    shop.add_order(str(other.id), "SB-50002", "10.00")
    assert not order_lookup(conversation_id=conversation_id, order_id="SB-50002")["found"]

    adapter = HttpCommerce.from_settings()
    first = adapter.refund(
        key="k1", customer_id=str(customer.id), order_id="SB-50001", amount=Decimal("5"), currency="EUR"
    )
    again = adapter.refund(
        key="k1", customer_id=str(customer.id), order_id="SB-50001", amount=Decimal("5"), currency="EUR"
    )
    assert first == again and first.order_status == "partially_refunded" and first.reference == "re_1"
    assert len(shop.refunds) == 1
    with pytest.raises(Exception, match="another request"):  # 409: same key, another body
        adapter.refund(key="k1", customer_id=str(customer.id), order_id="SB-50001", amount=Decimal("6"), currency="EUR")
    with pytest.raises(RefundRefused):  # 4xx: permanent
        adapter.refund(
            key="k2", customer_id=str(customer.id), order_id="SB-50001", amount=Decimal("500"), currency="EUR"
        )


def test_refund_through_the_shop_is_recorded_before_and_after(make_customer, shop) -> None:
    _, conversation_id = customer_with_order(make_customer, shop)
    outcome = execute(conversation_id, "run-a")
    assert isinstance(outcome, RefundsExecuted) and outcome.results[0]["amount"] == "20.00"
    entry = LedgerEntry.objects.get(kind="refund")
    assert entry.status == "done" and entry.key == refund_key("run-a", 0) and entry.amount == Decimal("20.00")
    assert shop.requests[0]["key"] == entry.key
    # A second delivery of the same run sends nothing.
    assert execute(conversation_id, "run-a") == outcome and len(shop.requests) == 1


def test_a_5xx_then_success_resends_the_same_key(make_customer, shop) -> None:
    _, conversation_id = customer_with_order(make_customer, shop)
    shop.fail_next = 1
    with pytest.raises(CommerceUnavailable, match="same key"):
        execute(conversation_id, "run-b")
    entry = LedgerEntry.objects.get(kind="refund")
    assert entry.status == "pending" and entry.result["tries"] == 1 and "503" in entry.result["error"]
    execute(conversation_id, "run-b")
    assert {r["key"] for r in shop.requests} == {refund_key("run-b", 0)} and len(shop.requests) == 2
    assert len(shop.refunds) == 1 and LedgerEntry.objects.get(kind="refund").status == "done"


def test_a_timeout_then_success_refunds_once(make_customer, shop) -> None:
    _, conversation_id = customer_with_order(make_customer, shop)
    shop.hold_next, shop.hold_seconds = 1, 1.5  # applied, the answer comes after the client gave up
    with override_settings(COMMERCE_API_TIMEOUT_SECONDS=0.3), pytest.raises(CommerceUnavailable, match="within"):
        execute(conversation_id, "run-c")
    assert LedgerEntry.objects.get(kind="refund").status == "pending" and len(shop.refunds) == 1
    execute(conversation_id, "run-c")
    assert len(shop.refunds) == 1 and len(shop.requests) == 2
    assert LedgerEntry.objects.get(kind="refund").status == "done"


def test_a_refusal_is_permanent_and_not_counted(make_customer, shop) -> None:
    _, conversation_id = customer_with_order(make_customer, shop)
    shop.fail_next, shop.fail_status = 1, 422
    with pytest.raises(RefundRefused):
        execute(conversation_id, "run-d")
    entry = LedgerEntry.objects.get(kind="refund")
    assert entry.status == "failed" and "422" in entry.result["error"] and shop.refunds == []
    with pytest.raises(RefundRefused):  # never sent again, under this key or another
        execute(conversation_id, "run-d")
    assert len(shop.requests) == 1


def test_an_outcome_still_unknown_after_the_retries_goes_to_review(worker_factory, make_customer, start_run, shop):
    customer, _ = customer_with_order(make_customer, shop)
    shop.fail_next = 100  # the shop never answers usefully
    worker_factory("shopless", env=commerce_env(shop), concurrency=1)
    run = start_run("Please refund 20 EUR on order SB-50001.", customer=customer, budget={"deadline_seconds": 60})
    run = run_wait(run.id, timeout=40)
    assert run.status == "awaiting_review" and run.reason == "commerce_unavailable", (run.reason, run.reason_detail)
    assert "outcome unknown" in run.reason_detail and "same key" in run.reason_detail
    entry = LedgerEntry.objects.get(kind="refund")  # the evidence: requested, never settled
    assert entry.status == "pending" and entry.result["tries"] >= 2 and "503" in entry.result["error"]
    assert {r["key"] for r in shop.requests} == {entry.key} and shop.refunds == []
    assert not Message.objects.filter(conversation_id=run.conversation_id, role="assistant").exists()


def test_a_worker_killed_between_the_refund_and_its_outcome_refunds_once(
    worker_factory, make_customer, start_run, shop
):
    customer, _ = customer_with_order(make_customer, shop)
    shop.hold_next, shop.hold_seconds = 1, 30  # the shop applies the refund and holds its answer
    worker = worker_factory("doomed", env=commerce_env(shop), concurrency=1, supervise=False)
    run = start_run("Please refund 20 EUR on order SB-50001.", customer=customer, budget={"deadline_seconds": 60})
    assert shop.held.wait(30), "the refund never reached the shop"
    entry = LedgerEntry.objects.get(kind="refund")
    assert entry.status == "pending" and len(shop.refunds) == 1  # requested, applied, outcome not recorded
    step = Step.objects.get(run=run, agent="deliver", status="running")
    child = int(step.attempts.get(status="running").worker.rpartition(":")[2])
    os.kill(child, signal.SIGKILL)  # the pool process dies waiting for the answer
    shop.release()

    run = run_wait(run.id, timeout=40)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert len(shop.refunds) == 1 and {r["key"] for r in shop.requests} == {entry.key} and len(shop.requests) == 2
    assert list(LedgerEntry.objects.filter(kind="refund").values_list("key", "status")) == [(entry.key, "done")]
    assert Message.objects.filter(conversation_id=run.conversation_id, role="assistant").count() == 1
    attempts = [a.status for a in Step.objects.get(run=run, agent="deliver").attempts.all()]
    assert attempts == ["abandoned", "succeeded"] and worker.process.poll() is None
