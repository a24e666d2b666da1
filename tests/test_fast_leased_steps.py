"""The one-round-trip leased step (`orchestration.fast_leased_steps`) against the real database: its claim writes
exactly the rows `steps.step_begin` writes and its record exactly what `steps.step_succeed` writes, one statement
each; anything unusual (a duplicate, a lease to take over, a guard, a stopped run, an ending) changes nothing and the
locked path decides as it always has. Recovery finds fast-claimed tries as before. The path selection is tested on
any database."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.base import Agent, AgentResult, Outcome, Usage
from agents.envelope import Envelope
from agents.registry import agent_get
from api.streams import run_channel
from conversations.models import Message
from conversations.services import conversation_create, customer_create, message_create
from orchestration import fast_leased_steps, recovery, steps
from orchestration.attempts import Attempt, Proceed
from orchestration.claims import Busy, Duplicate, Skip
from orchestration.models import Run, Step, StepAttempt
from orchestration.pipeline import FlowControl
from orchestration.runner import envelope_after
from orchestration.runs import run_start

PLANNER = agent_get("planner")  # leased (waits on an LLM)
POSTGRES_ONLY = pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement step is PostgreSQL's")


def new_envelope(email: str = "lease@example.com") -> Envelope:
    """A new run whose next agent is the planner, then the responder (so that the planner's success continues)."""
    customer = customer_create(email=email, name="Sam")
    conversation = conversation_create(customer=customer)
    message, _ = message_create(conversation_id=conversation.id, role=Message.Role.CUSTOMER, content="Hi")
    with mock.patch("orchestration.runs.run_dispatch"):
        run = run_start(
            conversation=conversation, message=message, trace_id="lease-test", slip=["planner", "responder"]
        )
    return Envelope.from_dict(run.start_envelope)


def outcome_of(envelope: Envelope, outcome: Outcome = Outcome.CONTINUE) -> tuple[AgentResult, Envelope, FlowControl]:
    usage = Usage(11, 7, Decimal("0.0012345"), "model-x", "planner@1", 5)
    result = AgentResult(payload={"plan": {"steps": 1}}, usage=usage, outcome=outcome)
    after, control = envelope_after(envelope, PLANNER.name, result)
    return result, after, control


def claim(envelope: Envelope, task_id: str = "task-a", worker: str = "host:1") -> Any:
    return fast_leased_steps.step_begin_fast(envelope=envelope, agent=PLANNER, task_id=task_id, worker=worker)


def record(attempt: Attempt, envelope: Envelope, outcome: Outcome = Outcome.CONTINUE) -> dict[str, Any]:
    result, after, control = outcome_of(envelope, outcome)
    return fast_leased_steps.step_succeed_fast(attempt=attempt, result=result, envelope=after, control=control)


def claimed(envelope: Envelope, **kwargs: Any) -> Attempt:
    start = claim(envelope, **kwargs)
    assert isinstance(start, Proceed), start
    return start.attempt


def columns(instance: Any, *skip: str) -> dict[str, Any]:
    return {
        field.attname: getattr(instance, field.attname)
        for field in instance._meta.concrete_fields
        if field.attname not in {"id", *skip}
    }


def ids_out(output: dict[str, Any]) -> dict[str, Any]:
    envelope = {key: value for key, value in output["envelope"].items() if key not in {"run_id", "conversation_id"}}
    return {**output, "envelope": envelope}


RUN_SKIP = ("conversation_id", "trigger_message_id", "start_envelope", "created_at", "trace_id")


# --- Which path (any database) ----------------------------------------------------------------


class Reader(Agent):
    name = "atomic_reader_for_lease_test"
    atomic = True
    writes_database = False


@pytest.mark.parametrize(
    ("agent", "vendor", "enabled", "expected"),
    [
        (PLANNER, "postgresql", True, True),
        (PLANNER, "sqlite", True, False),
        (PLANNER, "postgresql", False, False),
        (Reader(), "postgresql", True, False),
    ],
)
def test_only_a_leased_agent_on_postgresql_takes_the_fast_leased_path(
    agent: Agent, vendor: str, enabled: bool, expected: bool, settings: Any
) -> None:
    settings.STEP_FAST_PATH = enabled
    with mock.patch.object(connection, "vendor", vendor):
        assert fast_leased_steps.fast_path_applies(agent) is expected


# --- Same rows as the locked path ------------------------------------------------------------------


@POSTGRES_ONLY
@pytest.mark.django_db
def test_claim_and_record_write_exactly_what_the_locked_path_writes() -> None:
    fast_envelope, slow_envelope = new_envelope("fast@example.com"), new_envelope("slow@example.com")
    deadline = timezone.now() + timedelta(minutes=5)
    Run.objects.update(deadline_at=deadline)
    at = timezone.now().replace(microsecond=250000)
    with mock.patch("django.utils.timezone.now", return_value=at):
        slow = steps.step_begin(envelope=slow_envelope, agent=PLANNER, task_id="task-a", worker="host:1")
        fast = claim(fast_envelope)
    assert isinstance(slow, Proceed) and isinstance(fast, Proceed)
    assert (fast.attempt.number, fast.attempt.started_at, fast.attempt.retry_base) == (1, at, 0)
    ids = {"run_id": "", "step_id": 0, "attempt_id": 0}
    assert replace(fast.attempt, **ids) == replace(slow.attempt, **ids)

    def compare(*, step_skip: tuple[str, ...] = ()) -> None:
        fast_step = Step.objects.get(run_id=fast_envelope.run_id)
        slow_step = Step.objects.get(run_id=slow_envelope.run_id)
        assert columns(fast_step, "run_id", *step_skip) == columns(slow_step, "run_id", *step_skip)
        fast_try, slow_try = StepAttempt.objects.get(step=fast_step), StepAttempt.objects.get(step=slow_step)
        assert columns(fast_try, "step_id") == columns(slow_try, "step_id")
        fast_run, slow_run = Run.objects.get(id=fast_envelope.run_id), Run.objects.get(id=slow_envelope.run_id)
        assert columns(fast_run, *RUN_SKIP) == columns(slow_run, *RUN_SKIP)

    compare()
    step = Step.objects.get(id=fast.attempt.step_id)
    assert (step.status, step.attempt, step.lease_expires_at) == ("running", 1, at + timedelta(seconds=60))
    assert Run.objects.get(id=fast_envelope.run_id).status == Run.Status.RUNNING

    later = at + timedelta(seconds=2, milliseconds=500)
    with mock.patch("django.utils.timezone.now", return_value=later):
        result, after, control = outcome_of(slow_envelope)
        slow_output = steps.step_succeed(attempt=slow.attempt, result=result, envelope=after, control=control)
        fast_output = record(fast.attempt, fast_envelope)
    assert ids_out(fast_output) == ids_out(slow_output)
    compare(step_skip=("output",))
    fast_step = Step.objects.get(run_id=fast_envelope.run_id)
    assert ids_out(fast_step.output) == ids_out(fast_output)
    assert (fast_step.status, fast_step.duration_ms, fast_step.lease_expires_at) == ("completed", 2500, None)
    assert fast_output["envelope"]["budget"]["tokens_used"] == 18
    assert fast_output["envelope"]["budget"]["cost_used_usd"] == 0.001234
    assert fast_output["envelope"]["budget"]["deadline"] == deadline.timestamp()
    run = Run.objects.get(id=fast_envelope.run_id)
    assert (run.status, run.hops_used, run.tokens_used, run.cost_usd) == ("running", 1, 18, Decimal("0.001234"))
    assert StepAttempt.objects.get(id=fast.attempt.attempt_id).status == StepAttempt.Status.SUCCEEDED


@POSTGRES_ONLY
@pytest.mark.django_db(transaction=True)
def test_one_statement_claims_and_one_records() -> None:
    envelope = new_envelope()
    with CaptureQueriesContext(connection) as queries:
        attempt = claimed(envelope)
    assert len(queries.captured_queries) == 1
    with CaptureQueriesContext(connection) as queries:
        output = record(attempt, envelope)
    assert len(queries.captured_queries) == 1
    assert Step.objects.get(run_id=envelope.run_id).output == output


@POSTGRES_ONLY
@pytest.mark.django_db(transaction=True)
def test_the_live_progress_ping_is_sent_for_claim_and_record() -> None:
    envelope = new_envelope()
    with mock.patch("api.signals.changed_publish_many") as publish:
        attempt = claimed(envelope)
        record(attempt, envelope)
    channel = run_channel(envelope.run_id)
    assert [call.args[0] for call in publish.call_args_list] == [[channel], [channel]]  # after each commit


# --- Anything unusual: the locked path decides ----------------------------------------------------


@POSTGRES_ONLY
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("second_task", "expected"), [("task-b", Duplicate), ("task-a", Busy)])
def test_concurrent_claims_let_one_try_run_and_drop_the_other(second_task: str, expected: type) -> None:
    envelope = new_envelope()
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def deliver(name: str, task_id: str) -> None:
        try:
            barrier.wait(timeout=10)
            results[name] = claim(envelope, task_id=task_id)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, args=args) for args in (("one", "task-a"), ("two", second_task))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    kinds = sorted(type(result).__name__ for result in results.values())
    assert kinds == sorted(["Proceed", expected.__name__]), results
    step = Step.objects.get(run_id=envelope.run_id)
    assert StepAttempt.objects.filter(step=step).count() == 1 and step.attempt == 1


@POSTGRES_ONLY
@pytest.mark.django_db
def test_a_duplicate_delivery_while_the_lease_is_live_is_dropped() -> None:
    envelope = new_envelope()
    claimed(envelope)
    duplicate = claim(envelope, task_id="task-b", worker="host:2")
    assert isinstance(duplicate, Duplicate) and duplicate.holder_task_id == "task-a"
    assert isinstance(claim(envelope), Busy)  # a redelivery of the same message
    assert StepAttempt.objects.filter(step__run_id=envelope.run_id).count() == 1


@POSTGRES_ONLY
@pytest.mark.django_db
def test_an_expired_lease_is_taken_over_through_the_locked_path() -> None:
    envelope = new_envelope()
    first = claimed(envelope)
    Step.objects.filter(id=first.step_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = claimed(envelope, task_id="task-b", worker="host:2")
    assert (second.step_id, second.number) == (first.step_id, 2)
    tries = dict(StepAttempt.objects.filter(step_id=first.step_id).values_list("number", "status"))
    assert tries == {1: StepAttempt.Status.ABANDONED, 2: StepAttempt.Status.RUNNING}
    output = record(second, envelope)
    assert Step.objects.get(id=first.step_id).output == output


@POSTGRES_ONLY
@pytest.mark.django_db
def test_the_supervisor_expires_a_fast_claimed_lease_as_before() -> None:
    envelope = new_envelope()
    first = claimed(envelope)
    assert not recovery.step_lease_expired(step_id=first.step_id)  # still live
    assert recovery.step_lease_expired(step_id=first.step_id, now=timezone.now() + timedelta(seconds=61))
    assert Step.objects.get(id=first.step_id).status == Step.Status.RETRYING
    later = timezone.now() + timedelta(seconds=120)
    with mock.patch("django.utils.timezone.now", return_value=later):
        second = claimed(envelope, task_id="task-b")
    assert second.number == 2


@POSTGRES_ONLY
@pytest.mark.django_db
@pytest.mark.parametrize("found_by", ["its worker", "the supervisor"])
def test_a_fast_claimed_try_whose_worker_dies_is_recovered(found_by: str) -> None:
    envelope = new_envelope()
    first = claimed(envelope, worker="host:7")
    if found_by == "its worker":
        lost = recovery.step_lost(
            run_id=envelope.run_id,
            key=Step.objects.get(id=first.step_id).key,
            agent=PLANNER,
            worker="host:7",
            task_id="task-a",
            message=None,
            error="WorkerLostError",
        )
    else:
        running = StepAttempt.objects.filter(status=StepAttempt.Status.RUNNING, worker="host:7")
        (row,) = running  # the supervisor finds the dead process's tries by worker, as before
        lost = recovery.attempt_lost(attempt=row)
    assert lost == recovery.LostOutcome.RETRY
    step = Step.objects.get(id=first.step_id)
    assert (step.status, step.lost) == (Step.Status.RETRYING, 1)
    assert StepAttempt.objects.get(id=first.attempt_id).status == StepAttempt.Status.ABANDONED
    again = claimed(envelope)  # the message's redelivery takes the step over at once
    assert again.number == 2
    assert record(again, envelope)["control"] == FlowControl.CONTINUE.value


@POSTGRES_ONLY
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"deadline_at": timezone.now() - timedelta(seconds=1)}, Run.Status.TIMED_OUT, "timed_out"),
        ({"tokens_used": 10**9}, Run.Status.AWAITING_REVIEW, "budget_tokens"),
        ({"cost_usd": Decimal("999999")}, Run.Status.AWAITING_REVIEW, "budget_cost"),
    ],
)
def test_a_run_over_a_guard_is_halted_by_the_locked_path_as_before(
    change: dict[str, Any], status: str, reason: str
) -> None:
    envelope = new_envelope()
    Run.objects.filter(id=envelope.run_id).update(**change)
    assert isinstance(claim(envelope), Skip)
    run = Run.objects.get(id=envelope.run_id)
    assert (run.status, run.reason) == (status, reason)
    assert not Step.objects.filter(run=run).exists()


@POSTGRES_ONLY
@pytest.mark.django_db
def test_hops_and_visits_over_their_limits_halt_as_before() -> None:
    envelope = new_envelope()
    Run.objects.filter(id=envelope.run_id).update(budget={**Run.objects.get(id=envelope.run_id).budget, "max_hops": 0})
    assert isinstance(claim(envelope), Skip)
    assert Run.objects.get(id=envelope.run_id).reason == "budget_hops"
    looping = new_envelope("loop@example.com")
    looping = Envelope.from_dict({**looping.to_dict(), "path": ["planner"] * 5})
    assert isinstance(claim(looping), Skip)
    assert Run.objects.get(id=looping.run_id).status == Run.Status.AWAITING_REVIEW


@POSTGRES_ONLY
@pytest.mark.django_db
def test_a_run_cancelled_between_claim_and_record_gets_nothing_recorded() -> None:
    envelope = new_envelope()
    attempt = claimed(envelope)
    Run.objects.filter(id=envelope.run_id).update(status=Run.Status.CANCELLED)
    with pytest.raises(steps.StaleTry):
        record(attempt, envelope)
    step = Step.objects.get(id=attempt.step_id)
    assert (step.status, step.output, step.input_tokens) == (Step.Status.RUNNING, None, 0)
    run = Run.objects.get(id=envelope.run_id)
    assert (run.hops_used, run.tokens_used, run.cost_usd) == (0, 0, Decimal("0"))


@POSTGRES_ONLY
@pytest.mark.django_db
def test_a_step_completed_by_another_try_keeps_its_output() -> None:
    envelope = new_envelope()
    first = claimed(envelope)
    Step.objects.filter(id=first.step_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = claimed(envelope, task_id="task-b")
    output = record(second, envelope)
    assert record(first, envelope) == output  # the late first try: the locked path returns the recorded output
    assert Run.objects.get(id=envelope.run_id).hops_used == 1


@POSTGRES_ONLY
@pytest.mark.django_db
def test_an_ending_outcome_goes_to_the_locked_path() -> None:
    envelope = new_envelope()
    attempt = claimed(envelope)
    output = record(attempt, envelope, outcome=Outcome.COMPLETE)
    assert output["control"] == FlowControl.STOP.value
    run = Run.objects.get(id=envelope.run_id)
    assert (run.status, run.hops_used) == (Run.Status.COMPLETED, 1)
