"""The refund policy against a model's tool calls (the openai provider and the fake OpenAI-compatible server):
several refunds in one run are judged on their sum."""

from __future__ import annotations

from decimal import Decimal

import pytest

from harness.fake_openai import prompt_text, refund_answers, refund_calls
from orchestration.models import DeadLetter, ReviewItem, Step
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


def test_a_model_calling_refund_twice_with_the_customers_amount_gets_a_person_not_twice_the_amount(
    fake, worker_factory, start_run, make_customer
) -> None:
    """The customer wrote €50; the model proposed two refunds of 50 on the order (100): the customer's words bind
    the refunds together, so the amount is unclear and a person writes it (issue 12, reviewer's item 6)."""
    customer, _ = make_customer()
    order_in(customer, "SB-41002", "249.00")
    fake.answers.update(refund_answers("SB-41002", "Aurora noise-cancelling headphones", "50.00"))
    fake.answers["tools"] = refund_calls([("SB-41002", "50"), ("SB-41002", "50")])
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run("Please refund €50 on SB-41002", customer=customer).id)
    # The scripted reply promises 50.00 EUR, which no checked refund now backs: the validator holds it as well.
    assert run.status == "awaiting_review", (run.reason, run.reason_detail)
    assert "the model's refunds together (100.00 EUR) are not the amount the customer asked for" in run.reason_detail
    assert refund_rows("SB-41002") == 0 and order_refunded_amount("SB-41002") == Decimal("0.00")
    item = ReviewItem.objects.get(run=run)
    assert [action["amount"] for action in item.proposed_action] == [None, None]
    assert "together (100.00 EUR)" in item.proposed_action[0]["amount_note"]


#: Tool-call arguments holding an integer Python will not read (more than 4300 digits): json.loads raises a plain
#: ValueError, not JSONDecodeError.
HUGE_INTEGER_ARGUMENTS = '{"order_id": "SB-41003", "amount": ' + "9" * 5000 + "}"


def test_tool_arguments_with_a_huge_integer_are_malformed_output_repaired_once_then_dropped(
    fake, worker_factory, start_run, make_customer
) -> None:
    customer, _ = make_customer()
    order_in(customer, "SB-41003", "249.00")
    fake.answers.update(refund_answers("SB-41003", "Aurora noise-cancelling headphones", "249.00"))
    fake.answers["tools"] = {"tool_calls": [("refund", HUGE_INTEGER_ARGUMENTS)]}
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run("Please refund SB-41003", customer=customer).id)
    _first, repair = fake.calls("tools")  # one repair round, then the tools agent's fallback: the call is dropped
    assert "are not JSON we read (a number in it has too many digits" in repair.body["messages"][-1]["content"]
    tools = Step.objects.get(run=run, agent="tools")
    assert tools.status == "completed"
    assert tools.output["envelope"]["payload"]["llm_fallbacks"]["tools"]["fault"] == "malformed"
    assert tools.output["envelope"]["payload"]["proposed_actions"] == []
    # No refund was proposed, so the scripted reply's "refund ... is confirmed" is held: nothing moved, a person looks.
    assert run.status == "awaiting_review" and run.reason == "validation_failed", (run.reason, run.reason_detail)
    assert not DeadLetter.objects.filter(run=run).exists()
    assert refund_rows("SB-41003") == 0


def test_tool_arguments_with_a_huge_integer_once_are_repaired(fake, worker_factory, start_run, make_customer) -> None:
    customer, _ = make_customer()
    order_in(customer, "SB-41004", "249.00")
    fake.answers.update(refund_answers("SB-41004", "Aurora noise-cancelling headphones", "249.00"))
    repaired = refund_calls([("SB-41004", "249.00")])
    broken = {"tool_calls": [("refund", HUGE_INTEGER_ARGUMENTS.replace("SB-41003", "SB-41004"))]}
    fake.answers["tools"] = lambda body: repaired if "is not valid" in prompt_text(body) else broken
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run("Please refund SB-41004", customer=customer).id)
    assert len(fake.calls("tools")) == 2
    assert run.status in ("completed", "awaiting_review"), (run.reason, run.reason_detail)
    assert Step.objects.get(run=run, agent="tools").status == "completed"
