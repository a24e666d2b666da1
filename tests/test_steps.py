"""Claiming and recording steps against the real database (no worker): an atomic agent's try that fails, anywhere
after its claim, rolls back whole and is written as failed only while its claim still holds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from agents.base import AgentResult
from agents.envelope import Envelope
from agents.registry import agent_get
from conversations.models import Message
from conversations.services import conversation_create, customer_create, message_create
from orchestration import steps
from orchestration.attempts import AtomicTryFailed, Attempt, Done, Proceed
from orchestration.models import Run, Step, StepAttempt
from orchestration.pipeline import FlowControl
from orchestration.runner import envelope_after
from orchestration.runs import run_start
from project.errors import TransientError

pytestmark = pytest.mark.django_db

ACCOUNT = agent_get("account")  # a short database agent (Agent.atomic)


@pytest.fixture
def envelope() -> Envelope:
    """A new run (not dispatched: the test's transaction never commits) whose next agent is `account`."""
    customer = customer_create(email="steps@example.com", name="Sam")
    conversation = conversation_create(customer=customer)
    message, _ = message_create(conversation_id=conversation.id, role=Message.Role.CUSTOMER, content="Hi")
    run = run_start(conversation=conversation, message=message, trace_id="steps-test", slip=["account"])
    return Envelope.from_dict(run.start_envelope)


def note(envelope: Envelope, text: str) -> None:
    message_create(conversation_id=envelope.conversation_id, role=Message.Role.SYSTEM, content=text)


def unrecordable(envelope: Envelope) -> Callable[[], tuple[AgentResult, Envelope, FlowControl]]:
    """The agent writes a note and succeeds, but its result cannot be recorded (not JSON): the failure comes after
    the agent ran, while its step is being written."""

    def execute() -> tuple[AgentResult, Envelope, FlowControl]:
        note(envelope, "the agent was here")
        result = AgentResult(payload={"account": {"oops": object()}})
        after, control = envelope_after(envelope, ACCOUNT.name, result)
        return result, after, control

    return execute


def fine(envelope: Envelope) -> Callable[[], tuple[AgentResult, Envelope, FlowControl]]:
    def execute() -> tuple[AgentResult, Envelope, FlowControl]:
        result = AgentResult(payload={"account": {"name": "Sam"}})
        after, control = envelope_after(envelope, ACCOUNT.name, result)
        return result, after, control

    return execute


def atomic(envelope: Envelope, execute: Callable[[], Any], task_id: str = "task-a") -> Any:
    return steps.step_run_atomic(envelope=envelope, agent=ACCOUNT, task_id=task_id, worker="w", execute=execute)


def failed_try(envelope: Envelope) -> Attempt:
    with pytest.raises(AtomicTryFailed) as raised:
        atomic(envelope, unrecordable(envelope))
    assert isinstance(raised.value.error, TypeError)  # the recording's own error, carried to the wrapper
    return raised.value.attempt


def fail(envelope: Envelope, attempt: Attempt, *, will_retry: bool = True) -> bool:
    error = TransientError("the database blinked")
    return steps.step_fail(
        attempt=attempt, error=error, retry_in=1.0 if will_retry else None, envelope=envelope, agent=ACCOUNT
    )


def test_a_try_failing_after_the_agent_ran_rolls_back_whole_and_is_written_as_it_ended(envelope: Envelope) -> None:
    attempt = failed_try(envelope)
    assert (attempt.number, attempt.step_id, attempt.attempt_id) == (1, None, None)
    assert not Step.objects.filter(run_id=envelope.run_id).exists()
    assert not Message.objects.filter(content="the agent was here").exists()  # the agent's write rolled back too

    assert fail(envelope, attempt) is True
    step = Step.objects.get(run_id=envelope.run_id)
    assert (step.status, step.attempt, step.error) == ("retrying", 1, "TransientError: the database blinked")
    (row,) = StepAttempt.objects.filter(step=step)
    assert (row.number, row.status, row.task_id, row.error_type) == (1, "failed", "task-a", "TransientError")
    assert Run.objects.get(id=envelope.run_id).status == "running"

    # The retry takes the step over with attempt 2 and records it once, final.
    done = atomic(envelope, fine(envelope), task_id="task-a")
    assert isinstance(done, Done) and done.attempt == 2
    assert list(StepAttempt.objects.filter(step=step).values_list("number", "status")) == [
        (1, "failed"),
        (2, "succeeded"),
    ]


def test_a_failed_try_leaves_no_trace_when_another_delivery_finished_the_step(envelope: Envelope) -> None:
    attempt = failed_try(envelope)
    assert isinstance(atomic(envelope, fine(envelope), task_id="task-b"), Done)
    assert fail(envelope, attempt) is False
    step = Step.objects.get(run_id=envelope.run_id)
    assert step.status == "completed"
    assert list(StepAttempt.objects.filter(step=step).values_list("task_id", "status")) == [("task-b", "succeeded")]


def test_a_failed_try_leaves_no_trace_when_its_run_stopped_meanwhile(envelope: Envelope) -> None:
    attempt = failed_try(envelope)
    Run.objects.filter(id=envelope.run_id).update(status=Run.Status.CANCELLED)
    assert fail(envelope, attempt, will_retry=False) is False
    assert not Step.objects.filter(run_id=envelope.run_id).exists()
    assert Run.objects.get(id=envelope.run_id).status == "cancelled"


def test_a_failed_try_past_the_deadline_times_the_run_out_as_a_claim_would(envelope: Envelope) -> None:
    attempt = failed_try(envelope)
    Run.objects.filter(id=envelope.run_id).update(deadline_at=timezone.now() - timedelta(seconds=1))
    assert fail(envelope, attempt, will_retry=False) is False
    run = Run.objects.get(id=envelope.run_id)
    assert (run.status, run.reason) == ("timed_out", "timed_out")
    assert not Step.objects.filter(run=run).exists()


def test_a_leased_try_is_recorded_on_the_rows_written_when_it_started(envelope: Envelope) -> None:
    start = steps.step_begin(envelope=envelope, agent=ACCOUNT, task_id="task-l", worker="w")
    assert isinstance(start, Proceed)
    assert start.attempt.step_id is not None and start.attempt.attempt_id is not None
    assert fail(envelope, start.attempt, will_retry=False) is True
    step = Step.objects.get(run_id=envelope.run_id)
    assert step.status == "failed"
    run = Run.objects.get(id=envelope.run_id)
    assert (run.status, run.reason) == ("failed", "agent_failed")


# --- A leased try taken over (its worker taken for dead, its lease run out): its late result changes nothing ---

RESPONDER = agent_get("responder")  # an agent that waits on an LLM: its tries hold a lease


@pytest.fixture
def leased(envelope: Envelope) -> Envelope:
    """The same run, its next agent the responder (a leased step)."""
    return envelope.evolve(slip=["responder", "validator", "deliver"])


def begin(envelope: Envelope, task_id: str, worker: str) -> Attempt:
    start = steps.step_begin(envelope=envelope, agent=RESPONDER, task_id=task_id, worker=worker)
    assert isinstance(start, Proceed)
    return start.attempt


def taken_over(envelope: Envelope) -> tuple[Attempt, Attempt]:
    """Try A claims the step; its lease runs out; try B takes the step over."""
    first = begin(envelope, "task-a", "w:1")
    Step.objects.filter(id=first.step_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = begin(envelope, "task-b", "w:2")
    assert (first.number, second.number) == (1, 2)
    return first, second


def reply_result(envelope: Envelope, text: str) -> tuple[AgentResult, Envelope, FlowControl]:
    result = AgentResult(payload={"draft": text})
    after, control = envelope_after(envelope, RESPONDER.name, result)
    return result, after, control


def test_a_late_failure_of_a_try_taken_over_changes_nothing(leased: Envelope) -> None:
    first, second = taken_over(leased)
    result, after, control = reply_result(leased, "from B")
    steps.step_succeed(attempt=second, result=result, envelope=after, control=control)
    late = steps.step_fail(
        attempt=first, error=TransientError("A's LLM call timed out"), retry_in=1.0, envelope=leased, agent=RESPONDER
    )
    assert late is False
    step = Step.objects.get(id=second.step_id)
    assert step.status == "completed" and step.output["envelope"]["payload"]["draft"] == "from B"
    assert Run.objects.get(id=leased.run_id).status in Run.ACTIVE


def test_a_late_failure_while_the_step_is_held_by_its_taker_changes_nothing(leased: Envelope) -> None:
    first, second = taken_over(leased)
    assert (
        steps.step_fail(attempt=first, error=TransientError("late"), retry_in=None, envelope=leased, agent=RESPONDER)
        is False
    )
    step = Step.objects.get(id=second.step_id)
    assert step.status == "running" and step.attempt == 2  # still B's
    assert Run.objects.get(id=leased.run_id).status in Run.ACTIVE  # and the run not failed


def test_a_late_success_for_a_step_given_up_is_dropped(leased: Envelope) -> None:
    first = begin(leased, "task-a", "w:1")
    Step.objects.filter(id=first.step_id).update(status="failed")
    result, after, control = reply_result(leased, "too late")
    with pytest.raises(steps.StaleTry):
        steps.step_succeed(attempt=first, result=result, envelope=after, control=control)
    assert Step.objects.get(id=first.step_id).status == "failed"
