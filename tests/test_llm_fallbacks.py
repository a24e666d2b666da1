"""A model's answer that is JSON but unusable never fails a run: the openai provider against the local
OpenAI-compatible server (real HTTP, the real `openai` client, real worker subprocesses). Each agent's unusable
answer gets one repair request carrying the problem, then the agent's documented fallback, recorded on its step."""

from __future__ import annotations

from typing import Any

import pytest

from agents.planner import DEFAULT_SLIP, TOOLS_SLIP
from conversations.models import Message
from orchestration.models import DeadLetter, ReviewItem, Run, Step
from tests.conftest import llm_env, order_add, run_wait

pytestmark = [pytest.mark.e2e]

ORDER_ANSWERS: dict[str, Any] = {
    "triage": {"intent": "order_status", "confidence": 0.9, "order_ids": ["SB-20001"]},
    "planner": {"slip": TOOLS_SLIP},
    "tools": {"tool_calls": [("order_lookup", {"order_id": "SB-20001"})]},
    "responder": {"reply": "Your order SB-20001 (Set of 4 enamel camping mugs) is delivered.", "sources": []},
}
WHERE_IS_MY_ORDER = "Where is my order SB-20001?"


def step_payload(run: Run, agent: str) -> dict[str, Any]:
    return Step.objects.get(run=run, agent=agent).output["envelope"]["payload"]


def repair_request(fake: Any, agent: str) -> str:
    """What the repair round told the model: the last user message of the agent's second call (of two, or of four
    when the prompt was asked afresh)."""
    calls = fake.calls(agent)
    assert len(calls) in (2, 4) and all(call.status == 200 for call in calls)
    repair = calls[1]
    return repair.body["messages"][-1]["content"]


def messages_of(run: Run, role: str) -> list[str]:
    return [m.content for m in Message.objects.filter(conversation_id=run.conversation_id, role=role)]


def assert_fell_back(run: Run, agent: str, fault: str = "unusable") -> None:
    note = step_payload(run, agent)["llm_fallbacks"][agent]
    assert note["fault"] == fault and note["problems"] and note["fallback"], note
    assert Step.objects.get(run=run, agent=agent).attempt == 1  # the repair round is no retry
    assert not DeadLetter.objects.filter(run=run).exists()


@pytest.fixture
def order_customer(make_customer) -> Any:
    customer, _ = make_customer()
    order_add(customer, "SB-20001", "Set of 4 enamel camping mugs", "45.00")
    return customer


def test_triage_inventing_an_order_id_twice_falls_back_to_the_keyword_triage(fake, worker_factory, start_run) -> None:
    fake.fail_next("triage", "unusable", "unusable")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run("How long does shipping take?").id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert "SB-99999, which the message does not name" in repair_request(fake, "triage")
    assert_fell_back(run, "triage")
    payload = step_payload(run, "triage")
    assert (payload["intent"], payload["order_ids"]) == ("shipping", [])


def test_triage_answering_an_order_id_in_the_wrong_shape_has_it_ignored(
    fake, worker_factory, start_run, order_customer
) -> None:
    fake.answers.update(ORDER_ANSWERS)
    fake.answers["triage"] = {"intent": "order_status", "confidence": 0.9, "order_ids": ["20001"]}
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run(WHERE_IS_MY_ORDER, customer=order_customer).id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert "$.order_ids[0] must match ^SB-[0-9]{5}$, got '20001'" in repair_request(fake, "triage")
    assert_fell_back(run, "triage", fault="malformed")
    assert step_payload(run, "triage")["order_ids"] == ["SB-20001"]  # read from the message, the wrong one ignored
    assert "is delivered" in messages_of(run, "assistant")[0]


def test_a_plan_without_the_responder_twice_falls_back_to_the_default_plan(fake, worker_factory, start_run) -> None:
    fake.fail_next("planner", "unusable", "unusable")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run().id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert "must end with responder, validator, deliver" in repair_request(fake, "planner")
    assert_fell_back(run, "planner")
    assert step_payload(run, "planner")["plan"] == DEFAULT_SLIP


def test_a_plan_naming_an_agent_that_does_not_exist_never_fails_a_run(fake, worker_factory, start_run) -> None:
    fake.answers["planner"] = {"slip": [["retrieval", "account"], "rm_rf", "responder", "validator", "deliver"]}
    worker_factory("llm", env=llm_env(fake))
    runs = [run_wait(start_run().id) for _ in range(20)]
    assert [run.status for run in runs] == ["completed"] * 20, {run.reason for run in runs}
    assert len(fake.calls("planner")) == 40  # each plan asked once, repaired once
    assert "got 'rm_rf'" in fake.calls("planner")[1].body["messages"][-1]["content"]
    for run in runs:
        assert step_payload(run, "planner")["plan"] == DEFAULT_SLIP
        assert_fell_back(run, "planner", fault="malformed")
        assert len(messages_of(run, "assistant")) == 1


def test_tool_calls_for_orders_the_customer_did_not_name_are_dropped(
    fake, worker_factory, start_run, order_customer
) -> None:
    fake.answers.update(ORDER_ANSWERS)
    fake.fail_next("tools", "unusable", "unusable")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run(WHERE_IS_MY_ORDER, customer=order_customer).id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert "uses order SB-99999, which the customer did not write" in repair_request(fake, "tools")
    assert_fell_back(run, "tools")
    orders = step_payload(run, "tools")["tool_results"]["orders"]
    assert list(orders) == ["SB-20001"] and orders["SB-20001"]["found"]  # looked up by the fallback
    assert step_payload(run, "tools")["proposed_actions"] == []
    assert messages_of(run, "assistant") == [ORDER_ANSWERS["responder"]["reply"]]


def test_an_unknown_tool_is_dropped_and_the_usable_calls_run(fake, worker_factory, start_run, order_customer) -> None:
    fake.answers.update(ORDER_ANSWERS)
    fake.answers["tools"] = {
        "tool_calls": [("delete_account", {"order_id": "SB-20001"}), ("order_lookup", {"order_id": "SB-20001"})]
    }
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run(WHERE_IS_MY_ORDER, customer=order_customer).id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert "$.calls[0].tool must be one of" in repair_request(fake, "tools")
    assert "got 'delete_account'" in repair_request(fake, "tools")
    assert_fell_back(run, "tools", fault="malformed")
    assert list(step_payload(run, "tools")["tool_results"]["orders"]) == ["SB-20001"]


def test_an_empty_reply_twice_is_asked_again_afresh(fake, worker_factory, start_run) -> None:
    fake.fail_next("responder", "unusable", "unusable")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run().id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert len(fake.calls("responder")) == 3  # asked, repaired, asked afresh
    assert "llm_fallbacks" not in step_payload(run, "responder")


def test_an_empty_reply_after_asking_afresh_hands_the_run_to_a_person(
    fake, worker_factory, start_run, api, make_customer
) -> None:
    fake.fail_next("responder", "unusable", "unusable", "unusable", "unusable")
    worker_factory("llm", env=llm_env(fake))
    customer, token = make_customer()
    run = run_wait(start_run(customer=customer).id)
    assert run.status == "awaiting_review" and run.reason == "reply_unusable"
    assert "$.reply is empty" in repair_request(fake, "responder")
    assert_fell_back(run, "responder")
    assert not fake.calls("validator") and messages_of(run, "assistant") == []
    assert "member of our support team" in messages_of(run, "system")[0]
    assert ReviewItem.objects.get(run=run).reason == "reply_unusable"
    assert api(token).get(f"/runs/{run.id}/").json["reason"]["code"] == "in_review"


def test_a_verdict_without_reasons_twice_is_asked_again_afresh(fake, worker_factory, start_run) -> None:
    fake.fail_next("validator", "unusable", "unusable")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run().id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert len(fake.calls("validator")) == 3  # asked, repaired, asked afresh


def test_a_verdict_without_reasons_after_asking_afresh_fails_closed(fake, worker_factory, start_run) -> None:
    fake.fail_next("validator", "unusable", "unusable", "unusable", "unusable")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run().id)
    assert run.status == "awaiting_review" and run.reason == "validation_failed"
    assert "a verdict that fails the reply must say why" in repair_request(fake, "validator")
    assert_fell_back(run, "validator")
    [reason] = ReviewItem.objects.get(run=run).reasons
    assert reason.startswith("llm_unusable: the model gave no usable verdict")
    assert messages_of(run, "assistant") == [] and "approved_actions" not in step_payload(run, "validator")


def test_an_unusable_answer_once_is_repaired(fake, worker_factory, start_run) -> None:
    fake.fail_next("planner", "unusable")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run().id)
    assert run.status == "completed"
    assert len(fake.calls("planner")) == 2 and "llm_fallbacks" not in step_payload(run, "planner")


def test_a_malformed_verdict_is_retried_not_handed_to_a_person(fake, worker_factory, start_run) -> None:
    fake.fail_next("validator", "malformed", "malformed", "malformed", "malformed")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run().id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    validator = Step.objects.get(run=run, agent="validator")
    assert [a.error_type for a in validator.attempts.all()] == ["LLMMalformedOutput", ""]
