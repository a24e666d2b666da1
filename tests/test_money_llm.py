"""The refund policy against a model's tool calls (the openai provider and the fake OpenAI-compatible server):
several refunds in one run are judged on their sum."""

from __future__ import annotations

from decimal import Decimal

import pytest

from harness.fake_openai import refund_answers
from orchestration.models import ReviewItem
from tests.conftest import llm_env, run_wait
from tests.money import messages, order_in, order_refunded_amount, refund_rows

pytestmark = [pytest.mark.e2e]


def test_a_model_calling_refund_100_twice_in_one_run_gets_a_person_not_200(
    fake, worker_factory, start_run, make_customer
) -> None:
    customer, _ = make_customer()
    order_in(customer, "SB-41001", "249.00")
    fake.answers.update(refund_answers("SB-41001", "Aurora noise-cancelling headphones", "100.00"))
    fake.answers["tools"] = {
        "tool_calls": [
            ("refund", {"order_id": "SB-41001", "amount": "100"}),
            ("refund", {"order_id": "SB-41001", "amount": "100"}),
        ]
    }
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run("Please refund SB-41001", customer=customer).id)
    assert run.status == "awaiting_review" and run.reason == "refund_over_limit", (run.reason, run.reason_detail)
    assert refund_rows("SB-41001") == 0 and order_refunded_amount("SB-41001") == Decimal("0.00")
    assert messages(run, "assistant") == []
    item = ReviewItem.objects.get(run=run)
    assert [action["amount"] for action in item.proposed_action] == ["100.00", "100.00"]
