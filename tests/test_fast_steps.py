"""The one-round-trip step (`orchestration.fast_steps`) against the real database: it records exactly what the locked
path records, in one statement; anything unusual (a concurrent delivery, a stopped run, a guard, an ending) changes
nothing and the locked path decides as it always has. The path selection is tested on any database."""

from __future__ import annotations

import threading
from collections.abc import Callable
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
from conversations.models import Message
from conversations.services import conversation_create, customer_create, message_create
from orchestration import fast_steps, steps
from orchestration.attempts import AtomicTryFailed, Done
from orchestration.claims import Recorded, Skip
from orchestration.models import Run, Step, StepAttempt
from orchestration.pipeline import FlowControl
from orchestration.runner import envelope_after
from orchestration.runs import run_start
from project.errors import TransientError

ACCOUNT = agent_get("account")  # atomic, reads only
POSTGRES_ONLY = pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement record is PostgreSQL's")
Execute = Callable[[], tuple[AgentResult, Envelope, FlowControl]]


def new_envelope(email: str = "fast@example.com", slip: list[Any] | None = None) -> Envelope:
    """A new run whose next agent is `account`, then the responder (so that account's success continues)."""
    customer = customer_create(email=email, name="Sam")
    conversation = conversation_create(customer=customer)
    message, _ = message_create(conversation_id=conversation.id, role=Message.Role.CUSTOMER, content="Hi")
    with mock.patch("orchestration.runs.run_dispatch"):
        run = run_start(
            conversation=conversation, message=message, trace_id="fast-test", slip=slip or ["account", "responder"]
        )
    return Envelope.from_dict(run.start_envelope)


def spending(envelope: Envelope, outcome: Outcome = Outcome.CONTINUE, calls: list[int] | None = None) -> Execute:
    """Account's result with some LLM usage (so that the run's spending and the output's budget are exercised)."""

    def execute() -> tuple[AgentResult, Envelope, FlowControl]:
        if calls is not None:
            calls.append(1)
        usage = Usage(11, 7, Decimal("0.0012345"), "model-x", "account@1", 5)
        result = AgentResult(payload={"account": {"name": "Sam"}}, usage=usage, outcome=outcome)
        after, control = envelope_after(envelope, ACCOUNT.name, result)
        return result, after, control

    return execute


def fast(envelope: Envelope, execute: Execute, task_id: str = "task-a") -> Any:
    return fast_steps.step_run_fast(envelope=envelope, agent=ACCOUNT, task_id=task_id, worker="w", execute=execute)


def columns(instance: Any, *skip: str) -> dict[str, Any]:
    return {
        field.attname: getattr(instance, field.attname)
        for field in instance._meta.concrete_fields
        if field.attname not in {"id", *skip}
    }


def ids_out(output: dict[str, Any]) -> dict[str, Any]:
    """A step's output without what differs between two runs (their ids)."""
    envelope = {key: value for key, value in output["envelope"].items() if key not in {"run_id", "conversation_id"}}
    return {**output, "envelope": envelope}


# --- Which path (any database) ----------------------------------------------------------------


class Writer(Agent):
    name = "writer_for_test"
    atomic = True


class Reader(Agent):
    name = "reader_for_test"
    atomic = True
    writes_database = False


class Leased(Agent):
    name = "leased_for_test"
    writes_database = False


@pytest.mark.parametrize(
    ("agent", "vendor", "enabled", "expected"),
    [
        (Reader(), "postgresql", True, True),
        (Reader(), "sqlite", True, False),
        (Reader(), "postgresql", False, False),
        (Writer(), "postgresql", True, False),
        (Leased(), "postgresql", True, False),
    ],
)
def test_only_a_read_only_atomic_agent_on_postgresql_takes_the_fast_path(
    agent: Agent, vendor: str, enabled: bool, expected: bool, settings: Any
) -> None:
    settings.STEP_FAST_PATH = enabled
    with mock.patch.object(connection, "vendor", vendor):
        assert fast_steps.fast_path_applies(agent) is expected


def test_the_agents_that_write_keep_the_transaction() -> None:
    assert agent_get("deliver").writes_database
    assert not agent_get("retrieval").writes_database and not agent_get("account").writes_database


# --- Against PostgreSQL ------------------------------------------------------------------------


@POSTGRES_ONLY
@pytest.mark.django_db
def test_the_fast_path_records_exactly_what_the_locked_path_records() -> None:
    fast_envelope, slow_envelope = new_envelope("fast@example.com"), new_envelope("slow@example.com")
    deadline = timezone.now() + timedelta(minutes=5)
    Run.objects.update(deadline_at=deadline)
    at = timezone.now()
    with mock.patch("django.utils.timezone.now", return_value=at):
        slow = steps.step_run_atomic(
            envelope=slow_envelope, agent=ACCOUNT, task_id="task-a", worker="w", execute=spending(slow_envelope)
        )
        done = fast(fast_envelope, spending(fast_envelope))
    assert isinstance(slow, Done) and isinstance(done, Done)
    assert ids_out(done.output) == ids_out(slow.output)
    fast_step, slow_step = Step.objects.get(run_id=fast_envelope.run_id), Step.objects.get(run_id=slow_envelope.run_id)
    assert columns(fast_step, "run_id", "output") == columns(slow_step, "run_id", "output")
    assert ids_out(fast_step.output) == ids_out(slow_step.output) == ids_out(done.output)
    assert done.output["envelope"]["budget"]["tokens_used"] == 18
    assert done.output["envelope"]["budget"]["cost_used_usd"] == 0.001234
    assert done.output["envelope"]["budget"]["deadline"] == deadline.timestamp()
    fast_try, slow_try = StepAttempt.objects.get(step=fast_step), StepAttempt.objects.get(step=slow_step)
    assert columns(fast_try, "step_id") == columns(slow_try, "step_id")
    fast_run, slow_run = Run.objects.get(id=fast_envelope.run_id), Run.objects.get(id=slow_envelope.run_id)
    skip = ("conversation_id", "trigger_message_id", "start_envelope", "created_at", "trace_id")
    assert columns(fast_run, *skip) == columns(slow_run, *skip)
    assert (fast_run.status, fast_run.hops_used, fast_run.cost_usd) == ("running", 1, Decimal("0.001234"))


@POSTGRES_ONLY
@pytest.mark.django_db(transaction=True)
def test_one_statement_records_the_step() -> None:
    envelope = new_envelope()
    with CaptureQueriesContext(connection) as queries:
        done = fast(envelope, spending(envelope))
    assert isinstance(done, Done)
    assert len(queries.captured_queries) == 1
    assert Step.objects.get(run_id=envelope.run_id).status == Step.Status.COMPLETED


@POSTGRES_ONLY
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_deliveries_record_one_step_and_return_the_same_output() -> None:
    envelope = new_envelope()
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def deliver(task_id: str) -> None:
        def execute() -> tuple[AgentResult, Envelope, FlowControl]:
            barrier.wait(timeout=10)  # both ran the agent: both record at once
            return spending(envelope)()

        try:
            results[task_id] = fast(envelope, execute, task_id=task_id)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, args=(task_id,)) for task_id in ("task-a", "task-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    outcomes = sorted(type(result).__name__ for result in results.values())
    # Usually one records and the other finds its step; if the second's redo of the agent under the lock comes
    # first... it cannot: the step exists by then. Either way, one step, one try, one hop, one output.
    assert outcomes == ["Done", "Recorded"], results
    outputs = [result.output for result in results.values()]
    assert outputs[0] == outputs[1]
    step = Step.objects.get(run_id=envelope.run_id)
    assert StepAttempt.objects.filter(step=step).count() == 1
    assert Run.objects.get(id=envelope.run_id).hops_used == 1


@POSTGRES_ONLY
@pytest.mark.django_db(transaction=True)
def test_a_delivery_that_loses_the_race_inside_the_statement_changes_nothing() -> None:
    """The step is inserted by another delivery whose transaction commits while this statement waits on the run's row
    lock: the unique key (or the re-checked row) stops it whole, and the locked path returns the recorded output."""
    envelope = new_envelope()
    from django.db import transaction

    second: dict[str, Any] = {}

    def late() -> None:
        try:
            second["start"] = fast(envelope, spending(envelope), task_id="task-b")
        finally:
            connections.close_all()

    with transaction.atomic():
        first = fast_steps.step_record_fast(
            envelope=envelope,
            agent=ACCOUNT,
            task_id="task-a",
            worker="w",
            **_result_of(spending(envelope)),
            started_at=timezone.now(),
            now=timezone.now(),
        )
        assert first is not None
        thread = threading.Thread(target=late)
        thread.start()
        thread.join(timeout=0.5)  # it waits on the run's row lock, held here
        assert thread.is_alive()
    thread.join(timeout=30)
    assert isinstance(second["start"], Recorded) and second["start"].output == first
    assert StepAttempt.objects.filter(step__run_id=envelope.run_id).count() == 1
    assert Run.objects.get(id=envelope.run_id).hops_used == 1


def _result_of(execute: Execute) -> dict[str, Any]:
    result, after, control = execute()
    return {"result": result, "after": after, "control": control}


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
    start = fast(envelope, spending(envelope))
    assert isinstance(start, Skip)
    run = Run.objects.get(id=envelope.run_id)
    assert (run.status, run.reason) == (status, reason)
    assert not Step.objects.filter(run=run).exists()


@POSTGRES_ONLY
@pytest.mark.django_db
def test_hops_and_visits_over_their_limits_halt_as_before() -> None:
    envelope = new_envelope()
    Run.objects.filter(id=envelope.run_id).update(budget={**Run.objects.get(id=envelope.run_id).budget, "max_hops": 0})
    assert isinstance(fast(envelope, spending(envelope)), Skip)
    assert Run.objects.get(id=envelope.run_id).reason == "budget_hops"
    looping = new_envelope("loop@example.com")
    looping = Envelope.from_dict({**looping.to_dict(), "path": ["account"] * 5})
    assert isinstance(fast(looping, spending(looping)), Skip)
    assert Run.objects.get(id=looping.run_id).status == Run.Status.AWAITING_REVIEW


@POSTGRES_ONLY
@pytest.mark.django_db
@pytest.mark.parametrize("ended", [Run.Status.CANCELLED, Run.Status.COMPLETED, Run.Status.AWAITING_REVIEW])
def test_a_run_stopped_meanwhile_gets_nothing_recorded(ended: str) -> None:
    envelope = new_envelope()

    def execute() -> tuple[AgentResult, Envelope, FlowControl]:
        Run.objects.filter(id=envelope.run_id).update(status=ended)  # while the agent ran
        return spending(envelope)()

    start = fast(envelope, execute)
    assert isinstance(start, Skip)
    assert not Step.objects.filter(run_id=envelope.run_id).exists()
    run = Run.objects.get(id=envelope.run_id)
    assert (run.status, run.hops_used, run.tokens_used) == (ended, 0, 0)


@POSTGRES_ONLY
@pytest.mark.django_db
def test_an_existing_step_is_returned_as_recorded() -> None:
    envelope = new_envelope()
    first = fast(envelope, spending(envelope))
    calls: list[int] = []
    again = fast(envelope, spending(envelope, calls=calls), task_id="task-b")
    assert isinstance(again, Recorded) and again.output == first.output
    assert Run.objects.get(id=envelope.run_id).hops_used == 1


@POSTGRES_ONLY
@pytest.mark.django_db
def test_an_ending_outcome_goes_to_the_locked_path() -> None:
    envelope = new_envelope()
    calls: list[int] = []
    done = fast(envelope, spending(envelope, outcome=Outcome.COMPLETE, calls=calls))
    assert isinstance(done, Done) and done.output["control"] == FlowControl.STOP.value
    assert len(calls) == 2  # run again under the lock, which records it and completes the run
    assert Run.objects.get(id=envelope.run_id).status == Run.Status.COMPLETED


@POSTGRES_ONLY
@pytest.mark.django_db
def test_a_failing_agent_is_run_again_by_the_locked_path_and_fails_as_any_try() -> None:
    envelope = new_envelope()

    def failing() -> tuple[AgentResult, Envelope, FlowControl]:
        raise TransientError("down")

    with pytest.raises(AtomicTryFailed):
        fast(envelope, failing)
    assert not Step.objects.filter(run_id=envelope.run_id).exists()
