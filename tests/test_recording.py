"""Every step's calls on the record: LLM requests and raw answers with usage and latency, the shop's answers, the
agents' results; scrubbed like the logs; kept LLM_RECORD_DAYS days (0: nothing recorded)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.services import conversation_create, message_create
from harness.fake_openai import refund_answers
from orchestration.models import StepCall
from orchestration.recordings import recordings_expire, tape_save
from project import recording
from project.recording import Kind, Tape
from tests.conftest import llm_env, order_add, run_wait

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-projabcdefghijklmnopqrst"


def test_a_run_records_each_llm_request_and_raw_answer_the_shop_and_each_result(
    fake: Any, worker_factory: Any, start_run: Any, make_customer: Any
) -> None:
    customer, _ = make_customer()
    order_add(customer, "SB-78001", "Trail running shoes", "60.00")
    fake.answers.update(refund_answers("SB-78001", "Trail running shoes", "60.00"))
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run("Please refund SB-78001", customer=customer).id, timeout=60)
    assert run.status == "completed", (run.reason, run.reason_detail)
    calls = StepCall.objects.filter(run=run)

    requests = calls.filter(kind="llm_call", error="")
    assert requests.count() == len(fake.calls())  # one row per request the model's server received
    triage = requests.get(step_key="001.triage")
    assert triage.request["model"] == "fake-model"
    assert [m["role"] for m in triage.request["messages"]] == ["system", "user"]
    assert triage.request["response_format"]["type"] == "json_schema"
    assert json.loads(triage.response["choices"][0]["message"]["content"])["intent"] == "refund"
    assert triage.input_tokens > 0 and triage.output_tokens > 0 and triage.cost_usd > 0
    tools = requests.get(step_key__endswith=".tools")
    assert [t["function"]["name"] for t in tools.request["tools"]][:2] == ["order_lookup", "refund"]

    completions = calls.filter(kind="llm")
    assert set(completions.values_list("name", flat=True)) >= {"triage@2", "planner@3", "tools@2", "responder@3"}
    assert json.loads(completions.get(step_key="001.triage").response["data"])["intent"] == "refund"
    shop = calls.filter(kind="commerce")
    assert shop.filter(name="orders_get").exists()
    looked_up = shop.filter(name="orders_get").first()
    assert looked_up is not None and looked_up.response["SB-78001"]["total"] == "60.00"
    assert shop.filter(name="refund").exists() is False  # the demo database refunds in deliver's transaction
    results = calls.filter(kind="result")
    assert list(results.values_list("name", flat=True).order_by("id"))[:2] == ["triage", "planner"]
    assert results.get(name="deliver").response["outcome"] == "complete"


def test_recordings_are_scrubbed_like_the_logs(fake: Any, worker_factory: Any, start_run: Any) -> None:
    worker_factory("llm", env=llm_env(fake))
    message = f"How long is shipping? My key is {SECRET} and api_key=hunterhunter, Authorization: Bearer abc.def"
    run = run_wait(start_run(message).id, timeout=60)
    calls = StepCall.objects.filter(run=run)
    assert calls.filter(kind="llm_call").exists()
    everything = json.dumps([list(calls.values("request", "response", "error"))], default=str)
    assert SECRET not in everything and "hunterhunter" not in everything and "Bearer abc.def" not in everything
    assert "sk-test-not-a-real-key" not in everything  # the provider's own key
    assert "[redacted]" in everything
    assert "How long is shipping? My key is" in everything  # the rest of what the customer wrote is kept


def test_a_failed_llm_request_is_recorded_with_its_error(fake: Any, worker_factory: Any, start_run: Any) -> None:
    fake.fail_next("triage", "500")
    worker_factory("llm", env=llm_env(fake))
    run = run_wait(start_run().id, timeout=60)
    assert run.status == "completed"
    first, second = StepCall.objects.filter(run=run, step_key="001.triage", kind="llm_call").order_by("attempt")
    assert (first.attempt, second.attempt) == (1, 2)
    assert "500" in first.error and first.response is None
    assert second.error == "" and second.response["choices"]


def test_nothing_is_recorded_when_llm_record_days_is_0(worker_factory: Any, start_run: Any) -> None:
    worker_factory("norecord", env={"LLM_RECORD_DAYS": "0"})
    run = run_wait(start_run().id)
    assert run.status == "completed"
    assert not StepCall.objects.filter(run=run).exists()


def test_recordings_older_than_llm_record_days_are_deleted(worker_factory: Any, start_run: Any) -> None:
    worker_factory("record")
    old, new = run_wait(start_run().id), run_wait(start_run().id)
    StepCall.objects.filter(run=old).update(created_at=timezone.now() - timedelta(days=31))
    kept = StepCall.objects.filter(run=new).count()
    assert kept > 0

    with override_settings(LLM_RECORD_DAYS=30):
        recordings_expire()
    assert not StepCall.objects.filter(run=old).exists()
    assert StepCall.objects.filter(run=new).count() == kept
    with override_settings(LLM_RECORD_DAYS=0):  # switched off: what was recorded goes too
        recordings_expire()
    assert not StepCall.objects.exists()


def test_replays_throwaway_conversations_expire_with_their_messages(transactional_db: Any, make_customer: Any) -> None:
    customer, _ = make_customer()
    original = conversation_create(customer=customer)

    def copy(age: timedelta) -> Any:
        replay = conversation_create(customer=customer)
        message_create(conversation_id=replay.id, role=Message.Role.CUSTOMER, content="a copied message")
        Conversation.objects.filter(id=replay.id).update(replay_of=original, created_at=timezone.now() - age)
        return replay

    old, fresh = copy(timedelta(days=2)), copy(timedelta(hours=1))
    with override_settings(LLM_RECORD_DAYS=30):
        recordings_expire()
    assert set(Conversation.objects.values_list("id", flat=True)) == {original.id, fresh.id}
    assert not Message.objects.filter(conversation_id=old.id).exists()
    assert Message.objects.filter(conversation_id=fresh.id).count() == 1


def test_a_try_is_stored_in_one_statement(transactional_db: Any, start_run: Any) -> None:
    run = start_run()
    tape = Tape()
    with recording.using(tape):
        for index in range(3):
            recording.record(Kind.COMMERCE, "orders_get", request={"n": index}, response={"ok": True})
    with CaptureQueriesContext(connection) as queries:
        tape_save(run_id=str(run.id), key="001.triage", attempt=1, tape=tape)
    assert len(queries) == 1 and queries[0]["sql"].startswith("INSERT")
    assert list(StepCall.objects.filter(run=run).values_list("seq", flat=True).order_by("seq")) == [0, 1, 2]
    assert tape.calls == []  # stored once
