"""The openai provider against a local OpenAI-compatible server: real HTTP, the real `openai` client."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis
from django.conf import settings

from conversations.models import Message, Order
from harness.fake_openai import SHIPPING_ANSWERS, refund_answers
from orchestration.models import DeadLetter, ReviewItem, Step, StepAttempt
from tests.conftest import llm_env, order_add, run_wait, wait_for

pytestmark = [pytest.mark.e2e]

LLM_AGENTS = ["triage", "planner", "responder", "validator"]


def messages_of(run, role: str) -> list[Message]:
    return list(Message.objects.filter(conversation_id=run.conversation_id, role=role))


def test_a_full_run_through_the_openai_provider(fake, worker_factory, start_run, api, make_customer) -> None:
    worker_factory("llm", env=llm_env(fake))
    customer, token = make_customer()
    run = run_wait(start_run(customer=customer).id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert messages_of(run, "assistant")[0].content == SHIPPING_ANSWERS["responder"]["reply"]

    calls = fake.calls()
    assert [c.prompt for c in calls] == ["triage@2", "planner@3", "responder@3", "validator@3"]
    for call in calls:
        assert call.body["model"] == "fake-model"
        assert call.body["response_format"]["type"] == "json_schema"
        assert call.body["messages"][0]["role"] == "system"

    steps = {s.agent: s for s in Step.objects.filter(run=run)}
    for agent, call in zip(LLM_AGENTS, calls, strict=True):
        step = steps[agent]
        assert step.model == "fake-model" and step.prompt_version == call.prompt
        assert (step.input_tokens, step.output_tokens) == (
            call.usage["prompt_tokens"],
            call.usage["completion_tokens"],
        )
        assert step.cost_usd == Decimal(step.input_tokens * 1 + step.output_tokens * 2) / 1_000_000
        assert step.llm_latency_ms >= 0
    assert steps["retrieval"].tokens == 0 and steps["retrieval"].model == ""
    assert run.tokens_used == sum(s.tokens for s in steps.values())
    assert run.cost_usd == sum(s.cost_usd for s in steps.values())

    # The customer's view of the run shows step names and timings, no model, prompt, tokens or cost.
    body = api(token).get(f"/runs/{run.id}/").json
    assert "usage" not in body and [s["agent"] for s in body["steps"]][:2] == ["triage", "planner"]
    assert not {"model", "prompt_version", "tokens", "cost_usd"} & set(body["steps"][0])


def test_tool_calls_from_the_model_drive_a_refund(fake, worker_factory, start_run, make_customer) -> None:
    customer, _ = make_customer()
    order_add(customer, "SB-20001", "Set of 4 enamel camping mugs", "45.00")
    fake.answers.update(refund_answers("SB-20001", "Set of 4 enamel camping mugs", "45.00"))
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run("Please refund SB-20001", customer=customer).id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    tools_call = fake.calls("tools")[0]
    assert [t["function"]["name"] for t in tools_call.body["tools"]] == ["order_lookup", "refund", "escalate_to_human"]
    assert Order.objects.get(id="SB-20001").status == "refunded"
    assert Step.objects.get(run=run, agent="tools").prompt_version == "tools@2"


def test_a_429_is_retried_once_after_its_retry_after(fake, worker_factory, start_run) -> None:
    fake.fail_next("triage", "429:2")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run().id)
    assert run.status == "completed"
    first, second = fake.calls("triage")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 2.0  # waited as told
    triage = Step.objects.get(run=run, agent="triage")
    assert triage.attempt == 2
    assert [a.error_type for a in triage.attempts.all()] == ["LLMRateLimited", ""]


def test_500s_open_the_breaker_which_postpones_steps_until_a_probe_closes_it(fake, worker_factory, start_run) -> None:
    fake.fail_always("*", "500")
    worker_factory("llm", env=llm_env(fake, LLM_BREAKER_FAILURES="3", LLM_BREAKER_COOLDOWN_SECONDS="4"))
    first = start_run()
    postponed = StepAttempt.objects.filter(error_type="LLMCircuitOpen")
    wait_for(lambda: postponed.filter(step__run=first).exists())
    assert len(fake.calls("triage")) == 3  # three failures opened it; the next try sent nothing
    second = start_run()
    wait_for(lambda: postponed.filter(step__run=second).exists())
    assert len(fake.calls()) == 3  # while it is open, no call reaches the server

    fake.fail_always("*", None)  # the provider is back: after the cool-down a probe closes the breaker
    first, second = run_wait(first.id, timeout=60), run_wait(second.id, timeout=60)
    assert first.status == second.status == "completed", (first.reason, second.reason)
    assert not ReviewItem.objects.filter(run__in=[first, second]).exists()  # nobody was handed to a person
    triage = Step.objects.get(run=second, agent="triage")
    assert triage.retry_base >= 1 and triage.attempt - triage.retry_base == 1  # waiting used up no retry
    assert redis.Redis.from_url(settings.REDIS_URL).hget("switchboard:breaker:openai:fake-model", "state") is None


def test_a_timeout_is_retried_then_the_run_fails_cleanly(fake, worker_factory, start_run) -> None:
    fake.fail_always("triage", "sleep:3")
    # The breaker is kept shut here (it would postpone the step until the deadline: another test's subject).
    worker_factory(
        "llm",
        env=llm_env(fake, LLM_TIMEOUT_SECONDS="1", LLM_BREAKER_FAILURES="100", AGENT_RETRY_BACKOFF_MAX_SECONDS="0.4"),
    )
    run = run_wait(start_run().id, timeout=90)
    assert run.status == "failed" and run.reason == "agent_failed"
    triage = Step.objects.get(run=run, agent="triage")
    assert [a.error_type for a in triage.attempts.all()] == ["LLMTimeout"] * 7  # LLM agents' max_retries=6
    assert DeadLetter.objects.get(run=run).reason == "retries_exhausted"
    assert "Sorry, something went wrong" in messages_of(run, "system")[0].content


def test_a_timeout_then_an_answer_completes(fake, worker_factory, start_run) -> None:
    fake.fail_next("triage", "sleep:3")
    worker_factory("llm", env=llm_env(fake, LLM_TIMEOUT_SECONDS="1"))
    run = run_wait(start_run().id, timeout=60)
    assert run.status == "completed"
    assert Step.objects.get(run=run, agent="triage").attempt == 2


def test_malformed_json_fails_a_try_which_is_retried(fake, worker_factory, start_run) -> None:
    # The responder has no fallback for a malformed answer (agents/responder.py): asked, repaired, asked afresh and
    # repaired again, then the try fails like a provider error and the next try answers.
    fake.fail_next("responder", "malformed", "malformed", "malformed", "malformed")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run().id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    _first, repair, _fresh, _fresh_repair, _retry = fake.calls("responder")
    assert repair.body["messages"][-2] == {"role": "assistant", "content": first_answer()}
    assert "is not valid: it is not JSON" in repair.body["messages"][-1]["content"]
    responder = Step.objects.get(run=run, agent="responder")
    assert [a.error_type for a in responder.attempts.all()] == ["LLMMalformedOutput", ""]


def test_malformed_json_on_every_try_is_dead_lettered_with_the_raw_output(fake, worker_factory, start_run) -> None:
    fake.fail_always("responder", "malformed")
    worker_factory("llm", env=llm_env(fake, AGENT_RETRY_BACKOFF_MAX_SECONDS="0.4"))
    run = run_wait(start_run().id, timeout=90)
    assert run.status == "failed"
    responder = Step.objects.get(run=run, agent="responder")
    assert responder.status == "failed" and responder.attempt == 7  # the LLM agents' six retries
    assert len(fake.calls("responder")) == 7 * 4  # asked, repaired, asked afresh, repaired: on each try
    assert "malformed output twice" in responder.error and "Sure! Here is what you asked for" in responder.error
    letter = DeadLetter.objects.get(run=run)
    assert letter.reason == "retries_exhausted" and "Sure! Here is what you asked for" in letter.error


def test_malformed_json_twice_from_triage_gets_its_fallback(fake, worker_factory, start_run) -> None:
    # Triage's fallback ignores the answer (agents/triage.py), so it stands in for a malformed one too.
    fake.fail_next("triage", "malformed", "malformed")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run().id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert len(fake.calls("triage")) == 2 and not DeadLetter.objects.filter(run=run).exists()
    payload = Step.objects.get(run=run, agent="triage").output["envelope"]["payload"]
    assert payload["intent"] == "shipping" and payload["llm_fallbacks"]["triage"]["fault"] == "malformed"


def test_malformed_json_once_is_repaired(fake, worker_factory, start_run) -> None:
    fake.fail_next("triage", "malformed")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run().id)
    assert run.status == "completed"
    assert len(fake.calls("triage")) == 2
    assert Step.objects.get(run=run, agent="triage").attempt == 1


def first_answer() -> str:
    return "Sure! Here is what you asked for: {intent: shipping"
