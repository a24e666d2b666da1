"""Writes for runs and steps: starting a run, and each step's begin, success and failure.

Every function here is a short database transaction; none waits on an agent.
The task wrapper (`orchestration.runner`) calls them around `agent.handle`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from agents.base import Agent, AgentResult, Outcome
from agents.envelope import Budget, Envelope, SlipEntry
from conversations.models import Conversation, Customer, Message
from conversations.selectors import conversation_get, message_history
from conversations.services import message_content_clean, message_create
from orchestration.models import ReviewItem, Run, Step, StepAttempt
from project.errors import BudgetExceeded, Conflict, DeadlineExceeded, LoopDetected, RunHalted
from project.tracing import trace_context

logger = logging.getLogger(__name__)

#: The slip every run starts with; the planner writes the rest.
INITIAL_SLIP = ["triage", "planner"]

CUSTOMER_NOTICE_ESCALATED = (
    "Thanks for your patience — a member of our support team is checking this and will reply here."
)
CUSTOMER_NOTICE_FAILED = (
    "Sorry, something went wrong while answering your message. A member of our support team will follow up here."
)
CUSTOMER_NOTICE_TIMED_OUT = (
    "Sorry, answering this is taking longer than it should. A member of our support team will follow up here."
)


def budget_defaults() -> dict[str, Any]:
    return {
        "max_tokens": settings.RUN_MAX_TOKENS,
        "max_cost_usd": settings.RUN_MAX_COST_USD,
        "max_hops": settings.RUN_MAX_HOPS,
        "deadline_seconds": settings.RUN_DEADLINE_SECONDS,
        "max_agent_visits": settings.RUN_MAX_AGENT_VISITS,
    }


def run_start(
    *,
    conversation: Conversation,
    message: Message,
    trace_id: str,
    budget: dict[str, Any] | None = None,
    slip: list[SlipEntry] | None = None,
) -> Run:
    """Record a run for a customer message and dispatch its first agents after commit.

    `budget` overrides the default limits for this run (keys as in `budget_defaults`);
    `slip` replaces the initial routing slip (triage, then the planner).
    """
    unknown = set(budget or {}) - set(budget_defaults())
    if unknown:
        raise ValueError(f"unknown budget keys {sorted(unknown)}; known: {sorted(budget_defaults())}.")
    limits = budget_defaults() | (budget or {})
    run = Run(
        conversation=conversation,
        trigger_message=message,
        trace_id=trace_id,
        budget=limits,
        deadline_at=timezone.now() + timedelta(seconds=float(limits["deadline_seconds"])),
    )
    envelope = Envelope(
        run_id=str(run.id),
        conversation_id=str(conversation.id),
        trace_id=trace_id,
        budget=budget_snapshot(run),
        slip=list(slip or INITIAL_SLIP),
        payload={
            "message": message.content,
            "history": message_history(conversation_id=conversation.id, limit=10)[:-1],
        },
    )
    run.start_envelope = envelope.to_dict()
    run.save(force_insert=True)
    transaction.on_commit(lambda: run_dispatch(run), robust=True)
    return run


def run_dispatch(run: Run) -> None:
    """Send a run's first agents (from its start envelope) to the broker, and its deadline watchdog.

    Called after the commit that wrote the run, by whoever holds it: a new run, the supervisor
    recovering a stuck one, a dead-letter replay, a review decision. Steps already done return their
    recorded output, so the run picks up where it stopped.
    """
    from orchestration.pipeline import canvas_for
    from orchestration.tasks import supervisor_watchdog

    envelope = Envelope.from_dict(run.start_envelope).evolve(budget=budget_snapshot(run))
    # The messages carry the run's trace id, whoever dispatches (a request, the supervisor, a reviewer).
    with trace_context(trace_id=run.trace_id, run_id=str(run.id)):
        canvas_for(envelope).apply_async()
        countdown = max(0.0, (run.deadline_at - timezone.now()).total_seconds()) + 1
        supervisor_watchdog.apply_async((str(run.id),), countdown=countdown)
        logger.info("run dispatched")


def budget_snapshot(run: Run) -> Budget:
    """The run's limits and spending, as carried in the envelope."""
    return Budget(
        max_tokens=int(run.budget["max_tokens"]),
        max_cost_usd=float(run.budget["max_cost_usd"]),
        max_hops=int(run.budget["max_hops"]),
        deadline=run.deadline_at.timestamp(),
        tokens_used=run.tokens_used,
        cost_used_usd=float(run.cost_usd),
    )


def conversation_message_post(
    *,
    customer: Customer,
    conversation_id: object,
    content: object,
    trace_id: str,
    idempotency_key: str | None = None,
) -> tuple[Message, Run, bool]:
    """Store a customer's message and start a run for it.

    With an idempotency key, repeating the call returns the first message and
    run (created=False); the same key with different content is a Conflict.
    """
    content = message_content_clean(content)
    conversation = conversation_get(customer=customer, conversation_id=conversation_id)
    key = f"customer:{customer.id}:{idempotency_key}" if idempotency_key else None
    with transaction.atomic():
        message, created = message_create(
            conversation_id=conversation.id, role=Message.Role.CUSTOMER, content=content, idempotency_key=key
        )
        if not created:
            if message.conversation_id != conversation.id or message.content != content:
                raise Conflict("This Idempotency-Key was already used for a different message.")
            return message, Run.objects.get(trigger_message=message), False
        run = run_start(conversation=conversation, message=message, trace_id=trace_id)
    return message, run, True


# --- Steps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StepStart:
    """What `step_begin` decided for one delivery of an agent message."""

    action: str
    """proceed: run the agent; recorded: return `recorded`; skip: do nothing; busy: the same message is
    under way elsewhere, try again when its lease ends; duplicate: another message for this step is under way,
    drop this one;
    exhausted: every try died mid-step (the message goes to the dead letters); done: the agent ran and its
    result is recorded (`step_run_atomic`)."""
    run_id: str = ""
    step_id: int | None = None
    attempt_id: int | None = None
    attempt: int = 0
    attempt_started_at: Any = None
    retry_base: int = 0
    recorded: dict[str, Any] | None = None
    retry_in: float = 0.0
    reason: str = ""
    task_id: str = ""
    worker: str = ""


def step_key(hop: int, agent_name: str) -> str:
    return f"{hop:03d}.{agent_name}"


def step_begin(*, envelope: Envelope, agent: Agent, task_id: str, worker: str) -> StepStart:
    """Claim the step this delivery is for (a lease, for agents that wait on an LLM), or say why not.

    A completed step returns its recorded output (an idempotent receiver); a step
    another delivery is running (unexpired lease) is dropped or retried later; a
    step whose lease expired (its worker died) is taken over with a new attempt.
    """
    with transaction.atomic():
        run = _run_lock(envelope.run_id, step_key(envelope.hop + 1, agent.name))
        start, _step = _step_claim(run, envelope, agent, task_id, worker, timezone.now())
    return start


def step_run_atomic(
    *,
    envelope: Envelope,
    agent: Agent,
    task_id: str,
    worker: str,
    execute: Callable[[], tuple[AgentResult, Envelope, str]],
) -> StepStart:
    """For short, database-only agents: claim the step, run the agent and record its result in one
    transaction. A crash anywhere leaves nothing behind (the redelivered message starts afresh) and the
    agent's own writes commit with its step, exactly once. Concurrent deliveries wait on the run's row
    lock and then find the recorded step. An exception from the agent rolls everything back and
    propagates (the caller records the failed try). Returns action "done" with the recorded output.
    A new step's rows are written once, after the agent ran, already final.
    """
    with transaction.atomic():
        run = _run_lock(envelope.run_id, step_key(envelope.hop + 1, agent.name))
        now = timezone.now()
        start, step = _step_claim(run, envelope, agent, task_id, worker, now, write_new=False)
        if start.action != "proceed":
            return start
        result, after, control = execute()
        output = _step_record_success(run, step, start, result, after, control, timezone.now())
    return replace(start, action="done", recorded=output)


def _run_lock(run_id: str, key: str) -> Run:
    """The run, row-locked (every change to a run's steps holds the lock: it serialises them), with
    `claimed_step_id`: the id of its step `key`, if that exists — one query for both."""
    claimed = Step.objects.filter(run=OuterRef("pk"), key=key).values("pk")[:1]
    return (
        Run.objects.select_for_update()
        .defer("start_envelope")
        .annotate(claimed_step_id=Subquery(claimed))
        .get(id=run_id)
    )


def _step_claim(
    run: Run, envelope: Envelope, agent: Agent, task_id: str, worker: str, now: Any, *, write_new: bool = True
) -> tuple[StepStart, Step | None]:
    """The claim decision and its rows; the caller holds the run's row lock (`_run_lock`).

    With `write_new=False` a new step and its attempt are not written here but by
    `_step_record_success`, once, in the same transaction (see `step_run_atomic`).
    """
    hop = envelope.hop + 1
    key = step_key(hop, agent.name)
    if run.status not in (Run.Status.QUEUED, Run.Status.RUNNING):
        return StepStart(action="skip", reason=f"run is {run.status}"), None
    step = Step.objects.get(id=run.claimed_step_id) if run.claimed_step_id is not None else None
    if step is not None and step.status == Step.Status.COMPLETED:
        return StepStart(action="recorded", run_id=str(run.id), step_id=step.id, recorded=step.output), step
    if step is not None and step.status == Step.Status.FAILED:
        return StepStart(action="skip", reason="step failed permanently"), step
    if step is not None and step.status == Step.Status.RUNNING and step.lease_expires_at > now:
        holder = step.attempts.filter(status=StepAttempt.Status.RUNNING).order_by("-number").first()
        if holder is not None and holder.task_id != task_id:
            # A second message for a step already under way (a re-dispatch, a duplicate send): the
            # holder carries the flow on; if it dies, its own message is redelivered.
            return StepStart(action="duplicate", reason=f"step is under way as task {holder.task_id}"), step
        # The same message again while its lease runs: its worker may have died (requeued at once)
        # or be slow; try again when the lease ends.
        return StepStart(action="busy", retry_in=(step.lease_expires_at - now).total_seconds() + 1), step
    if step is None:
        halt = run_guard_check(run, envelope, agent.name, now)
        if halt is not None:
            run_halt(run, halt, envelope)
            return StepStart(action="skip", reason=f"run halted: {halt.code}: {halt.message}"), None
    elif step.attempt - step.retry_base > agent.max_retries:
        step_attempts_abandon(step, now)
        return StepStart(action="exhausted", run_id=str(run.id), step_id=step.id, attempt=step.attempt), step
    lease = now + timedelta(seconds=agent.time_limit)
    if step is None:
        step = Step(
            run=run,
            key=key,
            trace_id=envelope.trace_id,
            agent=agent.name,
            version=agent.version,
            hop=hop,
            attempt=1,
            started_at=now,
            lease_expires_at=lease,
        )
        if not write_new:
            # Claimed in memory only: `_step_record_success` writes the step, its attempt and the run.
            _run_mark_started(run, now)
            return StepStart(
                action="proceed", run_id=str(run.id), attempt=1, attempt_started_at=now, task_id=task_id, worker=worker
            ), step  # fmt: skip
        step.save(force_insert=True)
    else:
        step_attempts_abandon(step, now)
        step.status = Step.Status.RUNNING
        step.lease_expires_at = lease
        step.attempt += 1
        step.save(update_fields=["status", "lease_expires_at", "attempt"])
    attempt = StepAttempt.objects.create(step=step, number=step.attempt, task_id=task_id, worker=worker, started_at=now)
    # A live lease marks progress under way; the run row changes only when the run starts.
    if _run_mark_started(run, now):
        run.save(update_fields=["status", "started_at", "last_progress_at"])
    start = StepStart(
        action="proceed",
        run_id=str(run.id),
        step_id=step.id,
        attempt_id=attempt.id,
        attempt=attempt.number,
        attempt_started_at=now,
        retry_base=step.retry_base,
        task_id=task_id,
        worker=worker,
    )
    return start, step


def _run_mark_started(run: Run, now: Any) -> bool:
    """A queued run is running from its first claimed step on (in memory; the caller saves). True if it changed."""
    if run.status != Run.Status.QUEUED:
        return False
    run.status = Run.Status.RUNNING
    run.started_at = now
    run.last_progress_at = now
    return True


def step_attempts_abandon(step: Step, now: Any) -> None:
    """Mark tries still 'running' as abandoned: their lease ran out, their worker died."""
    step.attempts.filter(status=StepAttempt.Status.RUNNING).update(
        status=StepAttempt.Status.ABANDONED, finished_at=now, error="lease expired; worker presumed dead"
    )


def run_guard_check(run: Run, envelope: Envelope, agent_name: str, now: Any) -> RunHalted | None:
    """The first guard this step would break: deadline, hops, loop, tokens, cost."""
    limits = run.budget
    hop = envelope.hop + 1
    if now >= run.deadline_at:
        return DeadlineExceeded(f"the run's deadline {run.deadline_at.isoformat()} has passed.")
    if hop > int(limits["max_hops"]):
        return BudgetExceeded(f"hops: step {hop} would exceed the limit of {limits['max_hops']}.", code="budget_hops")
    visits = envelope.path.count(agent_name)
    if visits >= int(limits["max_agent_visits"]):
        cycle = " -> ".join([*envelope.path, agent_name])
        return LoopDetected(f"{agent_name} would run {visits + 1} times (limit {limits['max_agent_visits']}): {cycle}.")
    if run.tokens_used > int(limits["max_tokens"]):
        return BudgetExceeded(f"tokens: used {run.tokens_used}, limit {limits['max_tokens']}.", code="budget_tokens")
    if float(run.cost_usd) > float(limits["max_cost_usd"]):
        return BudgetExceeded(
            f"cost: used ${run.cost_usd:.6f}, limit ${float(limits['max_cost_usd']):.6f}.", code="budget_cost"
        )
    return None


def step_succeed(*, start: StepStart, result: AgentResult, envelope: Envelope, control: str) -> dict[str, Any]:
    """Record a step's success and its effect on the run; return the recorded output.

    If another delivery completed the step first, its recorded output wins.
    """
    with transaction.atomic():
        # Every change to a run's steps holds the run's row lock: it serialises them.
        run = Run.objects.select_for_update().defer("start_envelope").get(id=start.run_id)
        step = Step.objects.get(id=start.step_id)
        if step.status == Step.Status.COMPLETED:
            return step.output
        return _step_record_success(run, step, start, result, envelope, control, timezone.now())


def _step_record_success(
    run: Run, step: Step, start: StepStart, result: AgentResult, envelope: Envelope, control: str, now: Any
) -> dict[str, Any]:
    """Mark the step completed, add its usage to the run, apply its outcome; the caller holds the run's lock."""
    usage = result.usage
    step.status = Step.Status.COMPLETED
    step.finished_at = now
    step.duration_ms = _ms(now - step.started_at)
    step.input_tokens = usage.input_tokens
    step.output_tokens = usage.output_tokens
    step.cost_usd = Decimal(str(round(usage.cost_usd, 6)))
    step.model = usage.model
    step.prompt_version = usage.prompt_version
    step.llm_latency_ms = usage.latency_ms
    step.lease_expires_at = None
    step.error = ""
    run.tokens_used += usage.tokens
    run.cost_usd += step.cost_usd
    run.hops_used += 1
    run.last_progress_at = now
    # status and started_at too: a claim that wrote nothing (`write_new=False`) may have just set them.
    run.save(update_fields=["tokens_used", "cost_usd", "hops_used", "last_progress_at", "status", "started_at"])
    output = {"envelope": envelope.evolve(budget=budget_snapshot(run)).to_dict(), "control": control}
    step.output = output
    if step.pk is None:
        # Claimed and finished in one transaction: the step and its one attempt are written once, final.
        step.save(force_insert=True)
        StepAttempt.objects.create(
            step=step, number=start.attempt, status=StepAttempt.Status.SUCCEEDED, task_id=start.task_id,
            worker=start.worker, started_at=start.attempt_started_at, finished_at=now,
            duration_ms=_ms(now - start.attempt_started_at),
        )  # fmt: skip
    else:
        _attempt_finish(start, StepAttempt.Status.SUCCEEDED, now)
        step.save(
            update_fields=[
                "status", "finished_at", "duration_ms", "input_tokens", "output_tokens", "cost_usd", "model",
                "prompt_version", "llm_latency_ms", "lease_expires_at", "error", "output",
            ]
        )  # fmt: skip
    if run.status != Run.Status.RUNNING:
        pass  # stopped meanwhile (timed out, say): the step is recorded, the run stays as it is
    elif result.outcome == Outcome.COMPLETE:
        run_complete(run)
    elif result.outcome == Outcome.ESCALATE:
        run_escalate(run, reason=result.reason or "escalated", detail=_verdict_detail(envelope), envelope=envelope)
    elif control == "stop":
        run_fail(run, reason="slip_exhausted", detail=f"the slip ended after {step.agent} without a reply.")
    return output


def step_fail(*, start: StepStart, error: BaseException, will_retry: bool, envelope: Envelope | None = None) -> None:
    """Record a failed try. Without a retry the step fails, and so does the run — or, when a guard
    or the agent stopped it on purpose (`RunHalted`, e.g. the LLM's circuit is open), it goes to a
    person (`envelope`: what the review resumes from)."""
    now = timezone.now()
    text = f"{type(error).__name__}: {error}"
    with transaction.atomic():
        run = Run.objects.select_for_update().defer("start_envelope").get(id=start.run_id)
        step = Step.objects.get(id=start.step_id)
        _attempt_finish(start, StepAttempt.Status.FAILED, now, error=error)
        step.error = text
        step.lease_expires_at = None
        if will_retry:
            step.status = Step.Status.RETRYING
        else:
            step.status = Step.Status.FAILED
            step.finished_at = now
            step.duration_ms = _ms(now - step.started_at)
        step.save()
        run.last_progress_at = now
        run.save(update_fields=["last_progress_at"])
        if will_retry or run.status not in (Run.Status.QUEUED, Run.Status.RUNNING):
            return
        if isinstance(error, RunHalted) and envelope is not None:
            run_halt(run, error, envelope)
        else:
            run_fail(run, reason="agent_failed", detail=f"{step.agent} failed: {text}")


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


def _attempt_finish(start: StepStart, status: str, now: Any, error: BaseException | None = None) -> None:
    if start.attempt_id is None:
        return
    fields: dict[str, Any] = {"status": status, "finished_at": now, "duration_ms": _ms(now - start.attempt_started_at)}
    if error is not None:
        fields.update(error_type=type(error).__name__, error=str(error)[:4000])
    StepAttempt.objects.filter(id=start.attempt_id).update(**fields)


def _ms(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds() * 1000))


def _verdict_detail(envelope: Envelope) -> str:
    verdict = envelope.payload.get("verdict") or {}
    return "; ".join(verdict.get("reasons", []))


# --- Run endings (called inside a transaction holding the run's row lock) -----------


def run_complete(run: Run) -> None:
    run.status = Run.Status.COMPLETED
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at"])


def run_halt(run: Run, error: RunHalted, envelope: Envelope) -> None:
    """A guard stopped the run: a deadline times it out, anything else escalates it."""
    if isinstance(error, DeadlineExceeded):
        run_time_out(run, detail=error.message, envelope=envelope)
    else:
        run_escalate(run, reason=error.code, detail=error.message, envelope=envelope)


def run_escalate(run: Run, *, reason: str, detail: str = "", envelope: Envelope | None = None) -> ReviewItem:
    """Stop the run and hand it to a person (a review item); the customer is told."""
    run.status = Run.Status.AWAITING_REVIEW
    run.reason = reason
    run.reason_detail = detail
    run.save(update_fields=["status", "reason", "reason_detail"])
    _customer_notice(run, f"escalated:{run.review_items.count()}", CUSTOMER_NOTICE_ESCALATED)
    logger.warning("run escalated: %s: %s", reason, detail, extra={"run_id": str(run.id), "trace_id": run.trace_id})
    return review_item_open(run, reason=reason, detail=detail, envelope=envelope or run_latest_envelope(run))


def run_latest_envelope(run: Run) -> Envelope:
    """The envelope of the run's furthest completed step (or its first one)."""
    step = run.steps.filter(status=Step.Status.COMPLETED).order_by("-hop", "-id").first()
    if step is not None and step.output:
        return Envelope.from_dict(step.output["envelope"])
    return Envelope.from_dict(run.start_envelope)


def run_time_out(run: Run, *, detail: str, envelope: Envelope | None = None) -> ReviewItem:
    """The run passed its deadline: stop it, cancel its running steps, hand it to a person."""
    now = timezone.now()
    run.status = Run.Status.TIMED_OUT
    run.reason = "timed_out"
    run.reason_detail = detail
    run.finished_at = now
    run.save(update_fields=["status", "reason", "reason_detail", "finished_at"])
    task_ids = list(
        StepAttempt.objects.filter(step__run=run, status=StepAttempt.Status.RUNNING).values_list("task_id", flat=True)
    )
    for step in run.steps.filter(status__in=[Step.Status.RUNNING, Step.Status.RETRYING]):
        step_attempts_abandon(step, now)
        step.status = Step.Status.FAILED
        step.error = "the run timed out"
        step.finished_at = now
        step.lease_expires_at = None
        step.save(update_fields=["status", "error", "finished_at", "lease_expires_at"])
    if task_ids:
        transaction.on_commit(lambda: tasks_revoke(task_ids), robust=True)
    _customer_notice(run, "timed_out", CUSTOMER_NOTICE_TIMED_OUT)
    logger.warning("run timed out: %s", detail, extra={"run_id": str(run.id), "trace_id": run.trace_id})
    return review_item_open(run, reason="timed_out", detail=detail, envelope=envelope or run_latest_envelope(run))


def tasks_revoke(task_ids: list[str]) -> None:
    """Cancel tasks of a stopped run, terminating any a worker is executing (prefork pools)."""
    from project.celery import app

    app.control.revoke([t for t in task_ids if t], terminate=True, signal="SIGTERM")


def run_fail(run: Run, *, reason: str, detail: str = "") -> None:
    run.status = Run.Status.FAILED
    run.reason = reason
    run.reason_detail = detail
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "reason", "reason_detail", "finished_at"])
    _customer_notice(run, "failed", CUSTOMER_NOTICE_FAILED)
    logger.warning("run failed: %s", detail, extra={"run_id": str(run.id), "trace_id": run.trace_id})


def review_item_open(run: Run, *, reason: str, detail: str, envelope: Envelope) -> ReviewItem:
    """The run's open review item (one per run at a time), with what the agents proposed."""
    item = ReviewItem.objects.filter(run=run, status=ReviewItem.Status.OPEN).first()
    if item is not None:
        return item
    payload = envelope.payload
    return ReviewItem.objects.create(
        run=run,
        reason=reason,
        detail=detail,
        reasons=list((payload.get("verdict") or {}).get("reasons", [])),
        proposed_reply=payload.get("draft", ""),
        proposed_action=payload.get("proposed_actions") or None,
        resume_envelope=envelope.to_dict(),
    )


def _customer_notice(run: Run, kind: str, text: str) -> None:
    message_create(
        conversation_id=run.conversation_id,
        role=Message.Role.SYSTEM,
        content=text,
        idempotency_key=f"run:{run.id}:{kind}",
    )
