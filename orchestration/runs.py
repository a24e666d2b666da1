"""A run's lifecycle: start (from a customer's message), reopen, and its endings with the customer's notices.

`queued -> running -> (awaiting_review -> running) -> completed | failed | timed_out | cancelled`. Every function
that changes a run's status is called inside a transaction holding the run's row lock; dispatching to the broker
happens after the commit (`orchestration.pipeline.run_dispatch`).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any, assert_never

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from agents.base import AgentResult, Outcome
from agents.envelope import Envelope, SlipEntry
from agents.payload import Payload
from agents.remote_errors import RemoteRefused
from conversations.models import Conversation, Customer, Message
from conversations.selectors import conversation_get, message_history
from conversations.services import conversation_create, message_content_clean, message_create
from orchestration import metering
from orchestration.budgets import budget_limits, budget_snapshot
from orchestration.models import ReviewItem, Run, Step, StepAttempt
from orchestration.pipeline import run_dispatch
from orchestration.review_stake import refunds_at_stake
from orchestration.routing import REMOTE_CANCEL_TASK
from project import brand
from project.celery import app
from project.errors import Conflict, DeadlineExceeded, RunHalted

logger = logging.getLogger(__name__)

#: The slip every run starts with; the planner writes the rest.
INITIAL_SLIP: list[SlipEntry] = ["triage", "planner"]
#: Sent (run, item) when a replay's run stops for a person; its item is closed already (`review_item_open`).
replay_review_opened = Signal()
#: Messages of the conversation a run is given: its trigger and the ones before it, as `history`.
HISTORY_TURNS = 10

#: The notice each ending without a reply leaves, by its old constant's name: the texts are the brand's settings
#: (`BRAND_NOTICE_*`, `project.brand.notice`), read when used; a cancelled run's is its one message (no reply,
#: nothing executed: `run_mark_cancelled`).
_NOTICES = {
    "CUSTOMER_NOTICE_ESCALATED": "escalated",
    "CUSTOMER_NOTICE_FAILED": "failed",
    "CUSTOMER_NOTICE_TIMED_OUT": "timed_out",
    "CUSTOMER_NOTICE_CANCELLED": "cancelled",
}


def __getattr__(name: str) -> str:
    """`runs.CUSTOMER_NOTICE_CANCELLED` and the others: the configured notice, as it reads now."""
    if name in _NOTICES:
        return brand.notice(_NOTICES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_start(
    *,
    conversation: Conversation,
    message: Message,
    trace_id: str,
    budget: dict[str, Any] | None = None,
    slip: list[SlipEntry] | None = None,
    a2a_guard: dict[str, Any] | None = None,
    replay_of: Run | None = None,
    replay: dict[str, Any] | None = None,
) -> Run:
    """Record a run for a customer message and dispatch its first agents after commit.

    `budget` overrides the default limits for this run (keys as in `budgets.budget_defaults`);
    `slip` replaces the initial routing slip (triage, then the planner); `a2a_guard` is the loop guard of the A2A
    request the message came with (`LoopGuard.to_json()`), kept on the run and in the payload: remote agent steps send
    it on, one hop further (`agents.remote`). A replay (`orchestration.replay`) names the run it replays and carries its
    plan in the envelope.
    """
    limits = budget_limits(budget)
    run = Run(
        conversation=conversation,
        trigger_message=message,
        trace_id=trace_id,
        budget=limits,
        deadline_at=timezone.now() + timedelta(seconds=float(limits["deadline_seconds"])),
        a2a_guard=a2a_guard,
        replay_of=replay_of,
    )
    envelope = Envelope(
        run_id=str(run.id),
        conversation_id=str(conversation.id),
        trace_id=trace_id,
        budget=budget_snapshot(run),
        slip=list(slip or INITIAL_SLIP),
        payload=Payload(
            message=message.content,
            history=message_history(conversation_id=conversation.id, limit=HISTORY_TURNS)[:-1],
        ),
        replay=replay,
    )
    if a2a_guard is not None:
        envelope.payload["loop_guard"] = a2a_guard
    run.start_envelope = envelope.to_dict()
    run.save(force_insert=True)
    metering.run_started(run)
    transaction.on_commit(lambda: run_dispatch(run), robust=True)
    return run


def conversation_message_post(
    *,
    customer: Customer,
    conversation_id: object | None,
    content: object,
    trace_id: str,
    idempotency_key: str | None = None,
    budget: dict[str, Any] | None = None,
    a2a_guard: dict[str, Any] | None = None,
    refusal: tuple[str, str] | None = None,
) -> tuple[Message, Run, bool]:
    """Store a customer's message and start a run for it; returns (message, run, created).

    `conversation_id` None starts a new conversation (A2A's SendMessage without a contextId). With an idempotency
    key, repeating the call returns the first message and run (created=False) — looked up before anything is created,
    so a repeat without a conversation id finds the first one's; the same key with different content is a Conflict.
    `budget` caps the run's limits (keys as `budgets.budget_defaults`), `a2a_guard` is stored on the run
    (`Run.a2a_guard`). With `refusal` (a reason code and a sentence: our loop guard refused the request) the
    message is kept and its run recorded as failed for that reason, never dispatched.
    """
    content = message_content_clean(content)
    key = message_key(customer=customer, idempotency_key=idempotency_key) if idempotency_key else None
    asked = None if conversation_id is None else conversation_get(customer=customer, conversation_id=conversation_id)
    with transaction.atomic():
        if key is not None:
            repeated = Message.objects.filter(idempotency_key=key).select_related("run").first()
            if repeated is not None:
                return _repeated(repeated, conversation=asked, content=content)
        conversation = asked or conversation_create(customer=customer)
        message, created = message_create(
            conversation_id=conversation.id, role=Message.Role.CUSTOMER, content=content, idempotency_key=key
        )
        if not created:  # the same key at the same moment: the first call's message and run
            if asked is None:
                conversation.delete()  # the one this call started for nothing
            return _repeated(message, conversation=asked, content=content)
        if refusal is not None:
            return (
                message,
                run_refused(conversation=conversation, message=message, trace_id=trace_id, refusal=refusal),
                True,
            )
        run = run_start(
            conversation=conversation, message=message, trace_id=trace_id, budget=budget, a2a_guard=a2a_guard
        )
    return message, run, True


def message_key(*, customer: Customer, idempotency_key: str) -> str:
    """A message's stored key: scoped per customer, and a digest, so any key length fits the column and two
    different keys stay different."""
    return f"customer:{customer.id}:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"


def _repeated(message: Message, *, conversation: Conversation | None, content: str) -> tuple[Message, Run, bool]:
    if (conversation is not None and message.conversation_id != conversation.id) or message.content != content:
        raise Conflict("This Idempotency-Key was already used for a different message.")
    return message, Run.objects.get(trigger_message=message), False


def run_refused(*, conversation: Conversation, message: Message, trace_id: str, refusal: tuple[str, str]) -> Run:
    """The run of a message our A2A loop guard refused: recorded as failed with the guard's reason, not started."""
    now = timezone.now()
    code, sentence = refusal
    run = Run(
        conversation=conversation,
        trigger_message=message,
        trace_id=trace_id,
        budget=budget_limits(None),
        deadline_at=now,
        status=Run.Status.FAILED,
        reason=code,
        reason_detail=sentence,
        finished_at=now,
    )
    run.save(force_insert=True)
    logger.warning("A2A request refused: %s", code, extra={"run_id": str(run.id), "trace_id": trace_id})
    return run


def run_reopen(run: Run) -> None:
    """Back to running after a stop (a dead-letter replay, a review decision): a fresh deadline, no
    recoveries counted. The caller holds the run's lock and dispatches after commit."""
    now = timezone.now()
    run.status = Run.Status.RUNNING
    run.finished_at = None
    run.last_progress_at = now
    run.deadline_at = now + timedelta(seconds=float(run.budget["deadline_seconds"]))
    run.recoveries = 0
    run.save()


def step_reopen(*, run: Run, key: str) -> bool:
    """The run's step `key`, if it failed for good, runs again when its message comes (a dead-letter replay; a review
    decision resuming the run at the step that gave up): retrying, its retries and lost tries counted afresh. The
    caller holds the run's lock. Returns whether there was such a step."""
    step = Step.objects.filter(run=run, key=key, status=Step.Status.FAILED).first()
    if step is None:
        return False
    step.status = Step.Status.RETRYING
    step.retry_base = step.attempt
    step.lost = 0  # a replayed poison message gets its STEP_MAX_LOST again, as it gets its retries
    step.finished_at = None
    step.save(update_fields=["status", "retry_base", "lost", "finished_at"])
    return True


def run_mark_started(run: Run, now: Any) -> bool:
    """A queued run is running from its first claimed step on (in memory; the caller saves). True if it changed."""
    if run.status != Run.Status.QUEUED:
        return False
    run.status = Run.Status.RUNNING
    run.started_at = now
    run.last_progress_at = now
    return True


# --- Endings (the caller holds the run's row lock) ----------------------------------------


def run_after_step(run: Run, *, agent: str, result: AgentResult, envelope: Envelope, stop: bool) -> None:
    """What a step's success does to its run: complete it, escalate it, fail it (the slip ran out: `stop` with
    nothing delivered) or nothing."""
    if run.status != Run.Status.RUNNING:
        return  # stopped meanwhile (timed out, say): the step is recorded, the run stays as it is
    match result.outcome:
        case Outcome.COMPLETE:
            run_complete(run)
        case Outcome.ESCALATE:
            verdict = envelope.payload.get("verdict") or {}
            detail = "; ".join(verdict.get("reasons", []))
            run_escalate(run, reason=result.reason or "escalated", detail=detail, envelope=envelope)
        case Outcome.CONTINUE:
            if stop:
                run_fail(run, reason="slip_exhausted", detail=f"the slip ended after {agent} without a reply.")
        case _:
            assert_never(result.outcome)


def run_complete(run: Run) -> None:
    run.status = Run.Status.COMPLETED
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at"])
    metering.run_finished(run)


def run_halt(run: Run, error: RunHalted, envelope: Envelope) -> None:
    """A guard stopped the run: a deadline times it out; a loop-guard refusal downstream, in a run that serves another
    system's A2A request, ends it refused in turn (its caller decides: nobody here could resolve a loop); anything
    else escalates it."""
    if isinstance(error, DeadlineExceeded):
        run_time_out(run, detail=error.message, envelope=envelope)
    elif isinstance(error, RemoteRefused) and error.refusal and run.a2a_guard is not None:
        run_refused_downstream(run, refusal=error.refusal, detail=error.message)
    else:
        run_escalate(run, reason=error.code, detail=error.message, envelope=envelope)


def run_refused_downstream(run: Run, *, refusal: str, detail: str) -> None:
    """End a run serving another system's A2A request as refused (failed with the loop guard's reason: its task is
    `rejected`), with no notice and no review."""
    _run_end(run, Run.Status.FAILED, reason=refusal, detail=detail)
    logger.warning(
        "A2A request refused downstream: %s", refusal, extra={"run_id": str(run.id), "trace_id": run.trace_id}
    )


def run_escalate(run: Run, *, reason: str, detail: str = "", envelope: Envelope | None = None) -> ReviewItem:
    """Stop the run and hand it to a person (a review item); the customer is told."""
    run.status = Run.Status.AWAITING_REVIEW
    run.reason = reason
    run.reason_detail = detail
    run.save(update_fields=["status", "reason", "reason_detail"])
    metering.run_escalated(run, reason=reason)
    _customer_notice(run, f"escalated:{run.review_items.count()}", brand.notice("escalated"))
    # The reason code only: the detail may quote what the validator blocked (customer text, a prompt); it stays on
    # the run and the review item, for staff.
    logger.warning("run escalated: %s", reason, extra={"run_id": str(run.id), "trace_id": run.trace_id})
    return review_item_open(run, reason=reason, detail=detail, envelope=envelope or run_latest_envelope(run))


def run_latest_envelope(run: Run) -> Envelope:
    """The envelope of the run's furthest completed step (or its first one)."""
    step = run.steps.filter(status=Step.Status.COMPLETED).order_by("-hop", "-id").first()
    if step is not None and step.output:
        return Envelope.from_dict(step.output["envelope"])
    return Envelope.from_dict(run.start_envelope)


def run_time_out(run: Run, *, detail: str, envelope: Envelope | None = None) -> ReviewItem:
    """The run passed its deadline: stop it, cancel its running steps, hand it to a person."""
    _steps_stop(run, _run_end(run, Run.Status.TIMED_OUT, reason="timed_out", detail=detail), error="the run timed out")
    _customer_notice(run, "timed_out", brand.notice("timed_out"))
    logger.warning("run timed out: %s", detail, extra={"run_id": str(run.id), "trace_id": run.trace_id})
    return review_item_open(run, reason="timed_out", detail=detail, envelope=envelope or run_latest_envelope(run))


def run_mark_cancelled(run: Run, *, detail: str) -> None:
    """Someone stopped the run (`orchestration.cancel.run_cancel`, which also closes its open review item): cancel its
    running steps as a timeout does. The customer gets a short notice, never a reply: no claim, no step's result and
    no effect (deliver runs under this lock) follows a run that is not active."""
    _steps_stop(
        run, _run_end(run, Run.Status.CANCELLED, reason="cancelled", detail=detail), error="the run was cancelled"
    )
    _customer_notice(run, "cancelled", brand.notice("cancelled"))
    logger.info("run cancelled: %s", detail, extra={"run_id": str(run.id), "trace_id": run.trace_id})


def _run_end(run: Run, status: str, *, reason: str, detail: str) -> datetime:
    """Record the run's ending (status, reason, detail, when); returns when."""
    run.status = status
    run.reason = reason
    run.reason_detail = detail
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "reason", "reason_detail", "finished_at"])
    metering.run_finished(run)
    return run.finished_at


def _steps_stop(run: Run, now: datetime, *, error: str) -> None:
    """A stopped run's unfinished steps fail, their tries still running are abandoned, and the tasks executing them
    are revoked after commit (a late result of theirs is dropped anyway: `steps.StaleTry`)."""
    running = StepAttempt.objects.filter(step__run=run, status=StepAttempt.Status.RUNNING)
    task_ids = [task_id for task_id in running.values_list("task_id", flat=True) if task_id]
    unfinished = [Step.Status.RUNNING, Step.Status.RETRYING]
    running.filter(step__status__in=unfinished).abandon(now, error=error)
    stopped = run.steps.filter(status__in=unfinished)
    remote = stopped.filter(memo__has_key="task_id").exists()  # a remote A2A step's (agents.remote.RemoteCall)
    stopped.update(status=Step.Status.FAILED, error=error, finished_at=now, lease_expires_at=None)
    if task_ids:
        transaction.on_commit(lambda: tasks_revoke(task_ids), robust=True)
    if remote:  # a remote A2A agent may still be working for it: ask it to stop
        transaction.on_commit(lambda: app.send_task(REMOTE_CANCEL_TASK, args=[str(run.id)]), robust=True)


def tasks_revoke(task_ids: list[str]) -> None:
    """Cancel tasks of a stopped run, terminating any a worker is executing (prefork pools)."""
    app.control.revoke(task_ids, terminate=True, signal="SIGTERM")


def run_fail(run: Run, *, reason: str, detail: str = "") -> None:
    _run_end(run, Run.Status.FAILED, reason=reason, detail=detail)
    _customer_notice(run, "failed", brand.notice("failed"))
    # The reason code only: the detail carries the error's text, which may quote a model's answer; it stays on the run.
    logger.warning("run failed: %s", reason, extra={"run_id": str(run.id), "trace_id": run.trace_id})


def review_item_open(run: Run, *, reason: str, detail: str, envelope: Envelope) -> ReviewItem:
    """The run's open review item (one per run at a time), with what the agents proposed. A replay's item is never
    open (never in the queue): created closed, and `replay_review_opened` is sent for it (`orchestration.
    replay_reviews` answers it from the record)."""
    item = ReviewItem.objects.filter(run=run, status=ReviewItem.Status.OPEN).first()
    if item is not None:
        return item
    payload = envelope.payload
    replay = run.replay_of_id is not None
    proposed = payload.get("proposed_actions") or None
    stake = refunds_at_stake(proposed)
    item = ReviewItem.objects.create(
        run=run,
        status=ReviewItem.Status.CANCELLED if replay else ReviewItem.Status.OPEN,
        decided_at=timezone.now() if replay else None,
        reason=reason,
        detail=detail,
        reasons=list((payload.get("verdict") or {}).get("reasons", [])),
        proposed_reply=payload.get("draft", ""),
        proposed_action=proposed,
        amount_at_stake=stake.amount,
        stake_currency=stake.currency,
        resume_envelope=envelope.to_dict(),
    )
    if replay:
        replay_review_opened.send(sender=ReviewItem, run=run, item=item)
    return item


def _customer_notice(run: Run, kind: str, text: str) -> None:
    message_create(
        conversation_id=run.conversation_id,
        role=Message.Role.SYSTEM,
        content=text,
        idempotency_key=f"run:{run.id}:{kind}",
    )
