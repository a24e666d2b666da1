"""A run's steps: claiming one for a delivery, and recording each try's success or failure.

Every function here is one short database transaction holding the run's row lock (every change to a run's steps
holds it: that serialises them); none waits on an agent, except `step_run_atomic`, which runs a short,
database-only agent inside its transaction. The task wrapper (`orchestration.runner`) calls them around
`agent.handle`. What a delivery may do is decided by the pure `claims.claim_decide`; this module applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, assert_never, cast

from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from agents.base import MICRO_USD, Agent, AgentResult
from agents.envelope import Envelope
from orchestration.attempts import (
    AtomicTryFailed,
    Attempt,
    Done,
    Proceed,
    StepStart,
    attempt_create,
    attempt_finish,
    error_text,
    ms,
    step_key,
)
from orchestration.budgets import RunBudget, budget_snapshot, guard_check
from orchestration.claims import (
    Busy,
    ClaimAgain,
    ClaimDecision,
    ClaimNew,
    Duplicate,
    Exhausted,
    Halt,
    Recorded,
    Skip,
    StepState,
    claim_decide,
)
from orchestration.models import Run, Step, StepAttempt
from orchestration.pipeline import FlowControl
from orchestration.runs import run_after_step, run_fail, run_halt, run_mark_started
from project.errors import PermanentError, RunHalted


class StaleTry(Exception):
    """A try's late result for a step (or run) that has ended meanwhile: it changes nothing and is dropped."""


def step_begin(*, envelope: Envelope, agent: Agent, task_id: str, worker: str) -> StepStart:
    """Claim the step this delivery is for (a lease, for agents that wait on an LLM), or say why not."""
    with transaction.atomic():
        claimed = _claim_try(envelope, agent, task_id, worker)
        if not isinstance(claimed, _Claimed):
            return claimed
        return Proceed(_try_save(claimed.run, claimed.step, claimed.attempt, run_started=claimed.run_started))


def step_run_atomic(
    *,
    envelope: Envelope,
    agent: Agent,
    task_id: str,
    worker: str,
    execute: Callable[[], tuple[AgentResult, Envelope, FlowControl]],
) -> StepStart:
    """For short, database-only agents: claim the step, run the agent and record its result in one transaction.

    A crash anywhere leaves nothing behind (the redelivered message starts afresh) and the agent's own writes commit
    with its step, exactly once. Concurrent deliveries wait on the run's row lock and then find the recorded step.
    The try's rows are written once, after the agent ran, already final. If anything fails once the step is claimed
    (the agent, recording its result, the commit), everything rolls back and AtomicTryFailed carries the try (with no
    ids: nothing of it was written) to the wrapper, whose `step_fail` writes it as failed if the claim still holds.
    """
    claimed: _Claimed | StepStart | None = None
    try:
        with transaction.atomic():
            claimed = _claim_try(envelope, agent, task_id, worker)
            if not isinstance(claimed, _Claimed):
                return claimed
            # Claimed in memory only: the try's rows are written once, with its result.
            result, after, control = execute()
            now = timezone.now()
            output = _step_record_success(claimed.run, claimed.step, claimed.attempt, result, after, control, now)
        return Done(output, claimed.attempt.number)
    except Exception as exc:
        if not isinstance(claimed, _Claimed):
            raise  # before the claim, or committing a decision that runs no agent: as for any delivery
        raise AtomicTryFailed(claimed.attempt, exc) from exc


@dataclass(frozen=True)
class _Claimed:
    """A delivery whose claim runs the agent: the locked run, its step and the try, started in memory."""

    run: Run
    step: Step
    attempt: Attempt
    run_started: bool
    """The run went from queued to running with this try."""


def _claim_try(envelope: Envelope, agent: Agent, task_id: str, worker: str) -> _Claimed | StepStart:
    """Inside the caller's transaction: claim the step; start a try in memory when the decision runs the agent,
    else apply the decision and return what the wrapper does instead."""
    run, step, decision = _claim(envelope, agent, task_id)
    if not isinstance(decision, ClaimNew | ClaimAgain):
        return _settle(run, step, decision, envelope, agent)
    step = step or _step_new(run, envelope, agent)
    attempt, run_started = _try_start(run, step, decision, agent, task_id, worker)
    return _Claimed(run, step, attempt, run_started)


def _claim(envelope: Envelope, agent: Agent, task_id: str) -> tuple[Run, Step | None, ClaimDecision]:
    """Lock the run, load the step's facts and decide (the caller holds the transaction)."""
    hop = envelope.hop + 1
    run, claimed_step_id = _run_lock(envelope.run_id, step_key(hop, agent.name))
    step = Step.objects.get(id=claimed_step_id) if claimed_step_id is not None else None
    now = timezone.now()
    guard = None
    if step is None:
        guard = guard_check(RunBudget.of(run), hop=hop, path=envelope.path, agent_name=agent.name, now=now)
    decision = claim_decide(
        run_status=run.status,
        step=_step_state(step),
        guard=guard,
        now=now,
        task_id=task_id,
        max_retries=agent.max_retries,
    )
    return run, step, decision


def _run_lock(run_id: str, key: str) -> tuple[Run, int | None]:
    """The run, row-locked, and the id of its step `key` if that exists — one query for both."""
    claimed = Step.objects.filter(run=OuterRef("pk"), key=key).values("pk")[:1]
    run = (
        Run.objects.select_for_update()
        .defer("start_envelope")
        .annotate(claimed_step_id=Subquery(claimed))
        .get(id=run_id)
    )
    return run, run.claimed_step_id


def _step_state(step: Step | None) -> StepState | None:
    if step is None:
        return None
    holder = None
    if step.status == Step.Status.RUNNING:
        running = step.attempts.filter(status=StepAttempt.Status.RUNNING).order_by("-number").first()
        holder = running.task_id if running is not None else None
    return StepState(
        status=Step.Status(step.status),
        lease_expires_at=step.lease_expires_at,
        attempt=step.attempt,
        retry_base=step.retry_base,
        holder_task_id=holder,
        output=step.output,
    )


def _step_new(run: Run, envelope: Envelope, agent: Agent) -> Step:
    """A new step, not yet saved (`_try_start` makes its first attempt)."""
    hop = envelope.hop + 1
    return Step(
        run=run,
        key=step_key(hop, agent.name),
        trace_id=envelope.trace_id,
        agent=agent.name,
        version=agent.version,
        hop=hop,
        attempt=0,
        started_at=timezone.now(),
    )


def _try_start(
    run: Run, step: Step, decision: ClaimNew | ClaimAgain, agent: Agent, task_id: str, worker: str
) -> tuple[Attempt, bool]:
    """Start a try, in memory: the step under a fresh lease with its attempt number, the run running.
    Returns the attempt (no ids yet) and whether the run started with it."""
    now = timezone.now()
    step.status = Step.Status.RUNNING
    step.lease_expires_at = now + timedelta(seconds=agent.time_limit)
    step.attempt = 1 if isinstance(decision, ClaimNew) else decision.attempt
    run_started = run_mark_started(run, now)
    return Attempt(str(run.id), step.pk, None, step.attempt, now, step.retry_base, task_id, worker), run_started


def _try_save(run: Run, step: Step, attempt: Attempt, *, run_started: bool) -> Attempt:
    """Write a started try: the step (new, or taken over: earlier tries still running are abandoned), its attempt
    row, and the run if it started. Returns the attempt with its ids."""
    if step.pk is None:
        step.save(force_insert=True)
    else:
        step.attempts.abandon(attempt.started_at)
        step.save(update_fields=["status", "lease_expires_at", "attempt"])
    row = StepAttempt.objects.create(
        step=step, number=attempt.number, task_id=attempt.task_id, worker=attempt.worker, started_at=attempt.started_at
    )
    # A live lease marks progress under way; the run row changes only when the run starts.
    if run_started:
        run.save(update_fields=["status", "started_at", "last_progress_at"])
    return replace(attempt, step_id=step.pk, attempt_id=row.id)


def _settle(run: Run, step: Step | None, decision: ClaimDecision, envelope: Envelope, agent: Agent) -> StepStart:
    """Apply a decision that runs no agent."""
    match decision:
        case Recorded() | Skip() | Duplicate() | Busy():
            return decision
        case Halt(error=error):
            run_halt(run, error, envelope)
            return Skip(reason=f"run halted: {error.code}: {error.message}")
        case Exhausted():
            assert step is not None
            step.attempts.abandon(timezone.now())  # the wrapper gives the step up (`step_give_up`)
            return decision
        case ClaimNew() | ClaimAgain():
            raise AssertionError("a claim runs the agent; it is not settled here")
        case _:
            assert_never(decision)


def step_succeed(*, attempt: Attempt, result: AgentResult, envelope: Envelope, control: FlowControl) -> dict[str, Any]:
    """Record a step's success and its effect on the run; return the recorded output.

    If another delivery completed the step first, its recorded output wins.
    """
    with transaction.atomic():
        run = Run.objects.select_for_update().defer("start_envelope").get(id=attempt.run_id)
        step = _step_of(attempt)
        if step.status == Step.Status.COMPLETED:
            return cast(dict[str, Any], step.output)
        if step.status == Step.Status.FAILED or run.status not in Run.ACTIVE:
            raise StaleTry(f"step {step.key} is {step.status} and its run {run.status}: this late result is dropped")
        return _step_record_success(run, step, attempt, result, envelope, control, timezone.now())


def _step_record_success(
    run: Run,
    step: Step,
    attempt: Attempt,
    result: AgentResult,
    envelope: Envelope,
    control: FlowControl,
    now: datetime,
) -> dict[str, Any]:
    """Mark the step completed, add its usage to the run, apply its outcome; the caller holds the run's lock."""
    usage = result.usage
    step.status = Step.Status.COMPLETED
    step.finished_at = now
    step.duration_ms = ms(now - step.started_at)
    step.input_tokens = usage.input_tokens
    step.output_tokens = usage.output_tokens
    step.cost_usd = usage.cost_usd.quantize(MICRO_USD)
    step.model = usage.model
    step.prompt_version = usage.prompt_version
    step.llm_latency_ms = usage.latency_ms
    step.lease_expires_at = None
    step.error = ""
    run.tokens_used += usage.tokens
    run.cost_usd += step.cost_usd
    run.hops_used += 1
    run.last_progress_at = now
    # status and started_at too: an atomic agent's claim, which wrote nothing, may have just set them.
    run.save(update_fields=["tokens_used", "cost_usd", "hops_used", "last_progress_at", "status", "started_at"])
    output = {"envelope": envelope.evolve(budget=budget_snapshot(run)).to_dict(), "control": control.value}
    step.output = output
    if attempt.attempt_id is None:
        # An atomic try: claimed and finished in one transaction, its rows written once, final.
        _step_save_taking_over(step, now)
        attempt_create(step, attempt, StepAttempt.Status.SUCCEEDED, now)
    else:
        attempt_finish(attempt, StepAttempt.Status.SUCCEEDED, now)
        step.save()
    run_after_step(run, agent=step.agent, result=result, envelope=envelope, stop=control == FlowControl.STOP)
    return output


def step_fail(
    *, attempt: Attempt, error: BaseException, retry_in: float | None, envelope: Envelope, agent: Agent, postponed=False
) -> bool:
    """Record a failed try; True if it was recorded. With `retry_in` (seconds) the step waits for its retry, due then
    (the supervisor sends it); a `postponed` try uses up no retry. Without a retry the step fails, and so does the
    run — or, when a guard or the agent stopped it on purpose (`RunHalted`), it goes to a person, from `envelope`.

    A try is written only while it still holds its step, decided under the lock: False when another delivery has
    meanwhile taken or finished it (a leased try's worker taken for dead, its lease run out), the run has stopped, or
    (an atomic try, whose rows rolled back with it) a guard now stops a new step (the run is halted as at a claim).
    """
    now = timezone.now()
    with transaction.atomic():
        if attempt.attempt_id is None:
            claim = _claim_again(attempt, envelope, agent)
            if claim is None:
                return False
            run, step = claim
        else:
            run = Run.objects.select_for_update().defer("start_envelope").get(id=attempt.run_id)
            step = _step_of(attempt)
            if not (step.status == Step.Status.RUNNING and step.attempt == attempt.number):
                return False  # taken over (its worker was taken for dead, its lease ran out) or done: a late failure
        will_retry = retry_in is not None
        if retry_in is not None:
            step.error = error_text(error)
            step.lease_expires_at = now + timedelta(seconds=retry_in)  # due then: the supervisor sends it
            step.status = Step.Status.RETRYING
            step.retry_base += postponed
        else:
            _step_set_failed(step, error, now)
        if attempt.attempt_id is None:
            _step_save_taking_over(step, now)
            attempt_create(step, attempt, StepAttempt.Status.FAILED, now, error=error)
        else:
            step.save()
            attempt_finish(attempt, StepAttempt.Status.FAILED, now, error=error)
        run_mark_started(run, attempt.started_at)
        run.last_progress_at = now
        run.save(update_fields=["status", "started_at", "last_progress_at"])
        if will_retry or run.status not in Run.ACTIVE:
            return True
        if isinstance(error, RunHalted):
            run_halt(run, error, envelope)
        else:
            run_fail(run, reason="agent_failed", detail=f"{step.agent} failed: {error_text(error)}")
    return True


def _claim_again(attempt: Attempt, envelope: Envelope, agent: Agent) -> tuple[Run, Step] | None:
    """The run (locked) and the step an atomic try that rolled back belongs to, as the try claimed it (not saved);
    None when the claim no longer holds (a guard that now stops a new step halts the run, as at a claim)."""
    run, step, decision = _claim(envelope, agent, attempt.task_id)
    if isinstance(decision, Halt):
        run_halt(run, decision.error, envelope)
        return None
    match decision:
        case ClaimNew():
            number = 1
        case ClaimAgain(attempt=number):
            pass
        case _:
            return None  # the step moved on (taken, done, failed for good) or the run stopped
    if number != attempt.number:
        return None  # another delivery made a try meanwhile
    step = step or _step_new(run, envelope, agent)
    if step.pk is None:
        step.started_at = attempt.started_at
    step.attempt = attempt.number
    return run, step


def step_give_up(*, run_id: str, key: str, error: PermanentError) -> None:
    """Fail a step whose every try died mid-step (`Exhausted`), and its run; the caller writes the dead letter in the
    same transaction."""
    now = timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().defer("start_envelope").get(id=run_id)
        step = Step.objects.get(run=run, key=key)
        _step_set_failed(step, error, now)
        step.save()
        run.last_progress_at = now
        run.save(update_fields=["last_progress_at"])
        if run.status in Run.ACTIVE:
            run_fail(run, reason="agent_failed", detail=f"{step.agent} failed: {error_text(error)}")


def _step_of(attempt: Attempt) -> Step:
    if attempt.step_id is None:
        raise AssertionError("a leased try is recorded on the step written when it started")
    return Step.objects.get(id=attempt.step_id)


def _step_save_taking_over(step: Step, now: datetime) -> None:
    """Write an atomic try's step: a new one, or one it took over (tries still marked running are abandoned)."""
    if step.pk is None:
        step.save(force_insert=True)
    else:
        step.attempts.abandon(now)
        step.save()


def _step_set_failed(step: Step, error: BaseException, now: datetime) -> None:
    step.error = error_text(error)
    step.lease_expires_at = None
    step.status = Step.Status.FAILED
    step.finished_at = now
    step.duration_ms = ms(now - step.started_at)
