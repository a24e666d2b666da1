"""`run_cancel` against the real database (PostgreSQL in CI), no worker: what a cancel writes, what it refuses, and
that nothing a step still in flight does afterwards has an effect (a late result, a late failure, deliver's claim,
a reviewer's decision, the supervisor, a dead-letter replay)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from agents.base import AgentResult
from agents.envelope import Envelope
from agents.models import LedgerEntry
from agents.registry import agent_get
from conversations.models import Message, Order
from conversations.services import conversation_create, customer_create, message_create
from orchestration import runs, steps
from orchestration.attempts import Proceed
from orchestration.cancel import run_cancel
from orchestration.claims import Skip
from orchestration.deadletters import dead_letter_record, dead_letter_replay
from orchestration.models import ReviewDecision, ReviewItem, Run, Step, StepAttempt
from orchestration.public import PUBLIC_REASON_MESSAGES, PublicReason
from orchestration.recovery import Cause, run_redispatch
from orchestration.reviews import review_decide
from orchestration.runner import envelope_after
from orchestration.selectors import review_list_open, run_events
from orchestration.supervisor import run_deadline_enforce
from project.errors import Conflict, NotCancelable, NotFound, TransientError
from tests.conftest import order_add
from tests.review_data import staff_reviewer

pytestmark = pytest.mark.django_db

SLEEPY = agent_get("sleepy")  # a leased agent (it would wait on an LLM): its try runs with no transaction held
DELIVER = agent_get("deliver")


def new_run(customer: Any = None, *, slip: list | None = None) -> Run:
    """A customer's run, not dispatched (the test's transaction never commits)."""
    customer = customer or customer_create(email=f"c{Run.objects.count()}@example.com", name="Ada")
    conversation = conversation_create(customer=customer)
    message, _ = message_create(conversation_id=conversation.id, role=Message.Role.CUSTOMER, content="Refund SB-1")
    return runs.run_start(conversation=conversation, message=message, trace_id="cancel-test", slip=slip)


def notices(run: Run) -> list[str]:
    return list(
        Message.objects.filter(conversation_id=run.conversation_id, role="system").values_list("content", flat=True)
    )


def test_a_queued_run_is_cancelled_with_one_notice_and_no_reply() -> None:
    run = new_run()
    cancelled = run_cancel(run_id=str(run.id), customer=run.conversation.customer)
    run.refresh_from_db()
    assert cancelled.id == run.id
    assert (run.status, run.reason, run.reason_detail) == ("cancelled", "cancelled", "cancelled by the customer")
    assert run.finished_at is not None
    assert notices(run) == [runs.CUSTOMER_NOTICE_CANCELLED]
    assert not Message.objects.filter(conversation_id=run.conversation_id, role="assistant").exists()
    events, status = run_events(run.id)
    assert status == "cancelled"
    assert events[-2][1:] == (
        "run",
        {
            "status": "cancelled",
            "reason": {"code": "cancelled", "message": PUBLIC_REASON_MESSAGES[PublicReason.CANCELLED]},
        },
    )
    assert events[-1][1] == "message" and events[-1][2]["content"] == runs.CUSTOMER_NOTICE_CANCELLED


def test_cancelling_twice_answers_the_same_run_and_writes_nothing_more() -> None:
    run = new_run()
    first = run_cancel(run_id=run.id, customer=run.conversation.customer)
    second = run_cancel(run_id=run.id, customer=run.conversation.customer)
    assert (second.status, second.finished_at, second.reason) == (first.status, first.finished_at, first.reason)
    assert notices(run) == [runs.CUSTOMER_NOTICE_CANCELLED]


@pytest.mark.parametrize("status", ["completed", "failed", "timed_out"])
def test_a_run_that_ended_otherwise_is_not_cancelable(status: str) -> None:
    run = new_run()
    Run.objects.filter(id=run.id).update(status=status)
    with pytest.raises(NotCancelable, match=f"already ended \\({status}\\)") as raised:
        run_cancel(run_id=run.id, customer=run.conversation.customer)
    assert isinstance(raised.value, Conflict) and raised.value.code == "not_cancelable"
    assert Run.objects.get(id=run.id).status == status
    assert notices(run) == []


def test_only_the_customers_own_run_is_found() -> None:
    run = new_run()
    other = customer_create(email="other@example.com", name="Bo")
    for run_id in (run.id, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(NotFound):
            run_cancel(run_id=run_id, customer=other)
    assert Run.objects.get(id=run.id).status == "queued"
    with pytest.raises(NotFound):
        run_cancel(run_id="00000000-0000-0000-0000-000000000000")
    staff = run_cancel(run_id=run.id)  # staff: any run
    assert (staff.status, staff.reason_detail) == ("cancelled", "cancelled by staff")


def test_a_step_under_way_is_stopped_its_task_revoked_and_its_late_result_dropped(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    run = new_run(slip=["sleepy", "deliver"])
    envelope = Envelope.from_dict(run.start_envelope)
    start = steps.step_begin(envelope=envelope, agent=SLEEPY, task_id="task-sleepy", worker="w:1")
    assert isinstance(start, Proceed)
    revoked: list[list[str]] = []
    monkeypatch.setattr(runs, "tasks_revoke", revoked.append)
    with django_capture_on_commit_callbacks(execute=True):
        run_cancel(run_id=run.id, customer=run.conversation.customer)
    assert revoked == [["task-sleepy"]]
    step = Step.objects.get(run=run)
    assert (step.status, step.error, step.lease_expires_at) == ("failed", "the run was cancelled", None)
    assert list(StepAttempt.objects.filter(step=step).values_list("status", "error")) == [
        ("abandoned", "the run was cancelled")
    ]

    # The agent finishes after all (a thread pool cannot be terminated): its result changes nothing, nothing follows.
    result = AgentResult(payload={"slept": True})
    after, control = envelope_after(envelope, SLEEPY.name, result)
    with pytest.raises(steps.StaleTry):
        steps.step_succeed(attempt=start.attempt, result=result, envelope=after, control=control)
    # Or it fails late: nothing is recorded either.
    error = TransientError("late")
    assert steps.step_fail(attempt=start.attempt, error=error, retry_in=1.0, envelope=envelope, agent=SLEEPY) is False
    assert Step.objects.get(run=run).status == "failed"
    assert Run.objects.get(id=run.id).status == "cancelled"


def test_deliver_arriving_after_the_cancel_sends_and_refunds_nothing() -> None:
    customer = customer_create(email="refund@example.com", name="Ada")
    order_add(customer, "SB-71001", "Set of 4 enamel camping mugs", "45.00")
    run = new_run(customer, slip=["deliver"])
    action = {"type": "refund", "order_id": "SB-71001", "amount": "45.00", "currency": "EUR"}
    envelope = Envelope.from_dict(run.start_envelope).evolve(
        payload={
            **Envelope.from_dict(run.start_envelope).payload,
            "draft": "Your refund of 45.00 EUR for order SB-71001 is confirmed.",
            "verdict": {"pass": True, "reasons": []},
            "approved_actions": [action],
        }
    )
    run_cancel(run_id=run.id, customer=customer)
    executed = []

    def execute() -> Any:
        executed.append(True)
        return runs_handle(envelope)

    # Deliver is atomic: it runs inside its claim's transaction, under the run's lock, only for an active run.
    assert DELIVER.atomic
    start = steps.step_run_atomic(
        envelope=envelope, agent=DELIVER, task_id="task-deliver", worker="w:1", execute=execute
    )
    assert start == Skip(reason="run is cancelled")
    assert executed == []
    assert not LedgerEntry.objects.exists()
    assert Order.objects.get(id="SB-71001").refunded_amount == Decimal("0")
    assert not Message.objects.filter(conversation_id=run.conversation_id, role="assistant").exists()


def runs_handle(envelope: Envelope) -> Any:
    result = DELIVER.handle(envelope)
    after, control = envelope_after(envelope, DELIVER.name, result)
    return result, after, control


def test_a_run_in_review_is_cancelled_its_item_closed_and_a_decision_refused() -> None:
    run = new_run()
    item = runs.run_escalate(run, reason="refund_over_limit", detail="above the limit")
    reviewer = staff_reviewer()
    run_cancel(run_id=run.id, customer=run.conversation.customer)
    item.refresh_from_db()
    assert item.status == "cancelled" and item.decided_at is not None and item.decided_by is None
    assert list(review_list_open()) == []
    for decision in ("approve", "reject"):
        with pytest.raises(Conflict, match="its run was cancelled"):
            review_decide(item_id=item.id, reviewer=reviewer, decision=decision, reply="We refund.")
    assert not ReviewDecision.objects.exists()
    assert Run.objects.get(id=run.id).status == "cancelled"
    events, _ = run_events(run.id)
    assert [data.get("status") for _, kind, data in events if kind == "review"] == [None, "cancelled"]


def test_a_first_approval_waiting_for_a_second_executes_nothing_once_cancelled() -> None:
    run = new_run()
    item = runs.run_escalate(run, reason="refund_over_limit")
    first = ReviewDecision.objects.create(item=item, reviewer=staff_reviewer(), decision="approve")
    ReviewItem.objects.filter(id=item.id).update(pending_decision=first)
    run_cancel(run_id=run.id, customer=run.conversation.customer)
    item.refresh_from_db()
    assert (item.status, item.pending_decision_id) == ("cancelled", None)
    with pytest.raises(Conflict):
        review_decide(item_id=item.id, reviewer=staff_reviewer(), decision="approve")


def test_the_supervisor_and_a_replay_leave_a_cancelled_run_alone() -> None:
    run = new_run()
    run_cancel(run_id=run.id, customer=run.conversation.customer)
    Run.objects.filter(id=run.id).update(deadline_at=timezone.now() - timedelta(seconds=5))
    assert run_redispatch(run.id, Cause.STALLED) is False
    assert run_deadline_enforce(run.id) is False
    letter = dead_letter_record(
        task_name="agents.triage",
        task_id="task-dead",
        message=run.start_envelope,
        reason="permanent_error",
        error=RuntimeError("x"),
        run_id=str(run.id),
        step_key="001.triage",
        trace_id=run.trace_id,
    )
    assert "was cancelled; not replayed" in dead_letter_replay(letter.id)
    run.refresh_from_db()
    assert (run.status, run.recoveries) == ("cancelled", 0)
