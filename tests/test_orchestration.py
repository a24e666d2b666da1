"""Orchestration under duplicates, loops, budgets, hangs and failures — real worker, Redis, database."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from agents.envelope import Envelope
from agents.models import LedgerEntry
from conversations.models import Message
from orchestration.models import DeadLetter, ReviewItem, Run, Step, StepAttempt
from orchestration.pipeline import canvas_for
from project.celery import app
from tests.agents_for_tests import fault_set
from tests.conftest import run_wait, wait_for

pytestmark = [pytest.mark.e2e]

PIPELINE = ["triage", "planner", "retrieval", "account", "responder", "validator", "deliver"]


def messages_of(run: Run, role: str) -> list[Message]:
    return list(Message.objects.filter(conversation_id=run.conversation_id, role=role))


def assert_escalated(run: Run, reason: str) -> ReviewItem:
    item = ReviewItem.objects.get(run=run)
    assert item.status == "open" and item.reason == reason
    notices = messages_of(run, "system")
    assert len(notices) == 1 and "member of our support team" in notices[0].content
    assert messages_of(run, "assistant") == []
    return item


def test_the_same_messages_delivered_twice_have_one_effect(worker, start_run) -> None:
    run = start_run()
    # Send the run's first messages again, twice, with the same task ids each time.
    duplicate = canvas_for(Envelope.from_dict(run.start_envelope))
    duplicate.freeze()
    duplicate.apply_async()
    duplicate.apply_async()

    run = run_wait(run.id)
    assert run.status == "completed"
    assert len(messages_of(run, "assistant")) == 1
    assert LedgerEntry.objects.filter(key=f"run:{run.id}:reply").count() == 1
    steps = list(Step.objects.filter(run=run))
    assert sorted(s.agent for s in steps) == sorted(PIPELINE)
    assert all(s.status == "completed" and s.attempt == 1 for s in steps)
    assert StepAttempt.objects.filter(step__run=run).count() == len(PIPELINE)
    assert run.hops_used == len(PIPELINE)


def test_a_second_dispatch_during_a_chord_does_not_join_twice(worker, start_run) -> None:
    run = start_run(slip=[["sleepy", "retrieval"], "responder", "validator", "deliver"])
    wait_for(lambda: Step.objects.filter(run=run, agent="sleepy", status="running").exists())
    # A second copy of the run's messages (new task ids, as a re-dispatch sends) while a branch is under way.
    canvas_for(Envelope.from_dict(run.start_envelope)).apply_async()
    run = run_wait(run.id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    steps = list(Step.objects.filter(run=run))
    assert sorted(s.agent for s in steps) == ["deliver", "responder", "retrieval", "sleepy", "validator"]
    assert all(s.attempt == 1 for s in steps)
    assert len(messages_of(run, "assistant")) == 1


def test_agents_handing_off_in_a_circle_are_stopped(worker, start_run) -> None:
    run = start_run(slip=["loop_a"], budget={"max_agent_visits": 1})
    run = run_wait(run.id, timeout=15)
    assert run.status == "awaiting_review"
    assert run.reason == "loop_detected"
    assert "loop_a -> loop_b -> loop_c -> loop_a" in run.reason_detail
    assert_escalated(run, "loop_detected")
    assert [s.agent for s in Step.objects.filter(run=run)] == ["loop_a", "loop_b", "loop_c"]
    # Handoffs travel through the broker: nothing is left running or waiting on a worker.
    active = app.control.inspect(destination=[worker.hostname], timeout=2).active() or {}
    assert active.get(worker.hostname) == []


def test_the_default_loop_limit_allows_two_visits(worker, start_run) -> None:
    run = run_wait(start_run(slip=["loop_a"]).id, timeout=15)
    assert run.reason == "loop_detected"
    assert [s.agent for s in Step.objects.filter(run=run)] == ["loop_a", "loop_b", "loop_c"] * 2


@pytest.mark.parametrize(
    ("budget", "reason", "detail", "stopped_before"),
    [
        ({"max_tokens": 50}, "budget_tokens", "tokens: used", "planner"),
        ({"max_cost_usd": 0.00005}, "budget_cost", "cost: used $0.000", "planner"),
        ({"max_hops": 3}, "budget_hops", "hops: step 5 would exceed the limit of 3", "responder"),
    ],
)
def test_each_budget_halts_the_run_and_escalates(worker, start_run, budget, reason, detail, stopped_before) -> None:
    run = run_wait(start_run(budget=budget).id)
    assert run.status == "awaiting_review"
    assert run.reason == reason
    assert detail in run.reason_detail
    assert_escalated(run, reason)
    assert not Step.objects.filter(run=run, agent=stopped_before).exists()


def test_usage_is_summed_on_the_run(worker, start_run) -> None:
    run = run_wait(start_run().id)
    steps = list(Step.objects.filter(run=run))
    assert run.tokens_used == sum(s.tokens for s in steps) > 0
    assert run.cost_usd == sum(s.cost_usd for s in steps) > 0


def test_an_agent_hanging_past_the_deadline_is_timed_out(worker, start_run) -> None:
    run = start_run(slip=["triage", "hang", "deliver"], budget={"deadline_seconds": 3})
    run = run_wait(run.id, timeout=30, statuses=("timed_out", "completed", "failed"))
    assert run.status == "timed_out" and run.reason == "timed_out"
    item = ReviewItem.objects.get(run=run)
    assert item.reason == "timed_out" and item.status == "open"
    assert "longer than it should" in messages_of(run, "system")[0].content
    hang = Step.objects.get(run=run, agent="hang")
    assert hang.status == "failed"
    assert [a.status for a in hang.attempts.all()] == ["abandoned"]
    # The hung task was terminated: the worker has no task running for this run.
    wait_for(
        lambda: not (app.control.inspect(destination=[worker.hostname], timeout=2).active() or {}).get(worker.hostname),
        timeout=20,
    )
    assert not Step.objects.filter(run=run, agent="deliver").exists()


def test_a_failing_agent_is_retried_then_dead_lettered_and_replay_completes_once(worker, start_run) -> None:
    fault_set("faulty", True)
    try:
        run = start_run(slip=["triage", "faulty", ["retrieval", "account"], "responder", "validator", "deliver"])
        run = run_wait(run.id, timeout=30)
        assert run.status == "failed" and run.reason == "agent_failed"
        faulty = Step.objects.get(run=run, agent="faulty")
        assert faulty.status == "failed"
        assert faulty.attempt == 3  # the first try and max_retries=2 retries
        assert [a.status for a in faulty.attempts.all()] == ["failed"] * 3
        assert all(a.error_type == "TransientError" for a in faulty.attempts.all())
        letter = DeadLetter.objects.get(run=run)
        assert letter.reason == "retries_exhausted" and letter.task_name == "agents.faulty"
        assert letter.trace_id == run.trace_id and "TransientError" in letter.traceback
        assert letter.message["run_id"] == str(run.id)
    finally:
        fault_set("faulty", False)

    call_command("deadletters", "replay", str(letter.id))
    run = run_wait(run.id, timeout=30, statuses=("completed",))
    assert len(messages_of(run, "assistant")) == 1
    faulty.refresh_from_db()
    assert faulty.status == "completed" and faulty.attempt == 4
    assert Step.objects.get(run=run, agent="triage").attempt == 1  # earlier agents were not run again

    from io import StringIO

    out = StringIO()
    call_command("deadletters", "replay", str(letter.id), stdout=out)
    assert "already replayed" in out.getvalue()
    run_wait(run.id)
    assert len(messages_of(run, "assistant")) == 1


@pytest.mark.parametrize("failures", [0, 2])
def test_a_short_database_agent_records_its_step_once_and_rolls_back_failed_tries(worker, start_run, failures) -> None:
    # The run's first step: the claim that writes nothing until the agent is done must also start the run.
    if failures:
        fault_set("faulty_atomic", True, times=failures)
    try:
        run = start_run(slip=["faulty_atomic", "triage", "planner"])
        run = run_wait(run.id, timeout=30)
    finally:
        fault_set("faulty_atomic", False)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert run.started_at is not None and run.started_at <= run.finished_at
    step = Step.objects.get(run=run, agent="faulty_atomic")
    assert step.status == "completed" and step.attempt == failures + 1 and step.finished_at is not None
    attempts = list(step.attempts.order_by("number"))
    expected = [(n, "failed") for n in range(1, failures + 1)] + [(failures + 1, "succeeded")]
    assert [(a.number, a.status) for a in attempts] == expected
    assert all(a.task_id and a.worker and a.finished_at for a in attempts)
    # Only the successful try's write is kept: the failed ones rolled back with their transaction.
    assert Message.objects.filter(conversation_id=run.conversation_id, content="faulty_atomic was here").count() == 1
    assert len(messages_of(run, "assistant")) == 1
    assert run.hops_used == Step.objects.filter(run=run).count()


def test_a_malformed_envelope_is_dead_lettered_with_its_reason(worker, transactional_db) -> None:
    result = app.send_task("agents.triage", args=({"v": 99, "run_id": "nope"},), queue="llm")
    letter = wait_for(lambda: DeadLetter.objects.filter(task_id=result.id).first())
    assert letter.reason == "invalid_envelope"
    assert "unknown envelope version 99" in letter.error
    assert letter.run is None and letter.message == {"v": 99, "run_id": "nope"}

    out = __import__("io").StringIO()
    call_command("deadletters", "list", stdout=out)
    assert "invalid_envelope" in out.getvalue()


def test_a_chord_branch_failing_for_good_stops_the_join_and_replay_completes(worker, start_run) -> None:
    fault_set("faulty", True)
    try:
        run = start_run(slip=["triage", ["faulty", "retrieval"], "responder", "validator", "deliver"])
        run = run_wait(run.id, timeout=30)
        assert run.status == "failed"
        assert Step.objects.get(run=run, agent="retrieval").status == "completed"
        assert not Step.objects.filter(run=run, agent="responder").exists()  # the join never ran
        letter = DeadLetter.objects.get(run=run)
    finally:
        fault_set("faulty", False)
    call_command("deadletters", "replay", str(letter.id))
    run = run_wait(run.id, timeout=30, statuses=("completed",))
    assert Step.objects.get(run=run, agent="retrieval").attempt == 1
    assert Step.objects.filter(run=run, agent="responder").count() == 1
    assert len(messages_of(run, "assistant")) == 1


def test_dead_letters_are_replayed_from_django_admin(worker, start_run, admin_client) -> None:
    fault_set("faulty", True)
    try:
        run = run_wait(start_run(slip=["faulty", "retrieval", "responder", "validator", "deliver"]).id, timeout=30)
    finally:
        fault_set("faulty", False)
    letter = DeadLetter.objects.get(run=run)
    page = admin_client.get("/admin/orchestration/deadletter/")
    assert page.status_code == 200 and b"retries_exhausted" in page.content
    response = admin_client.post(
        "/admin/orchestration/deadletter/",
        {"action": "replay", "_selected_action": [letter.id]},
        follow=True,
    )
    assert b"re-dispatched from its recorded steps" in response.content
    run = run_wait(run.id, timeout=30, statuses=("completed",))
    assert len(messages_of(run, "assistant")) == 1
