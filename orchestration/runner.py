"""The shared agent-task wrapper: what every agent's Celery task does around `handle`.

For each delivery of an agent message it: validates the envelope (a chord's
list of envelopes is joined first), claims the step (or returns the recorded
output of a step already done), runs the agent, records the result on the step
and the run, and then continues, re-plans, retries or stops the flow.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, assert_never

from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from agents.base import Agent, AgentResult, Outcome, Queue, StepMemo
from agents.envelope import Envelope, SlipEntry, envelopes_merge
from agents.payload import payload_write_problems
from agents.registry import agent_get
from orchestration import fast_leased_steps, fast_steps, metering, steps
from orchestration.attempts import (
    AtomicTryFailed,
    Attempt,
    AttemptMemo,
    Done,
    NoMemo,
    Proceed,
    error_text,
    exhausted_error,
    step_key,
)
from orchestration.claims import Busy, Duplicate, Exhausted, Recorded, Skip
from orchestration.deadletters import dead_letter_record
from orchestration.models import Run
from orchestration.pipeline import FlowControl, canvas_for
from orchestration.recordings import tape_save
from orchestration.replay_steps import step_handle, tape_open
from project.errors import (
    InvalidEnvelope,
    PermanentError,
    PollLater,
    Postponed,
    RunHalted,
    SwitchboardError,
    TransientError,
)
from project.ids import uuid_or_none
from project.recording import Tape
from project.tracing import trace_set

logger = logging.getLogger(__name__)

#: A database that cannot be reached (restarting, a connection cut): the wrapper waits for it (`_with_database`).
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
T = TypeVar("T")

#: Errors that may pass: a database or broker blip, or a try that ran past its soft time limit.
INFRASTRUCTURE_TRANSIENT = (
    OperationalError,
    InterfaceError,
    BrokerOperationalError,
    RedisConnectionError,
    SoftTimeLimitExceeded,
)


def envelope_receive(incoming: Any, agent_name: str) -> Envelope:
    """The envelope an agent task was sent: validated, joined if it is a chord's results,
    and addressed to this agent by the slip."""
    if isinstance(incoming, list):
        envelope = envelopes_merge([Envelope.from_dict(item) for item in incoming])
    else:
        envelope = Envelope.from_dict(incoming)
    head = envelope.slip[0] if envelope.slip else None
    if head != agent_name and not (isinstance(head, list) and agent_name in head):
        raise InvalidEnvelope(f"the slip sends this message to {head!r}, not to {agent_name!r}.")
    return envelope


def retry_countdown(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before retry number `attempt`: as the remote side asked, else
    exponential backoff with full jitter between half and the whole delay."""
    if retry_after is not None:
        return max(0.0, retry_after)
    delay = min(settings.AGENT_RETRY_BACKOFF_MAX_SECONDS, settings.AGENT_RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1))
    return delay * random.uniform(0.5, 1.0)


def envelope_after(envelope: Envelope, agent_name: str, result: AgentResult) -> tuple[Envelope, FlowControl]:
    """The envelope an agent's success produces, and what the flow does next: continue (the canvas goes on),
    replace (the slip changed: recompile) or stop. An agent that writes a protected payload key it may not write
    (`agents.payload`) fails permanently."""
    forbidden = payload_write_problems(agent_name, result.payload)
    if forbidden:
        raise PermanentError(f"{agent_name} may not write {forbidden} into the payload.")
    parallel = bool(envelope.slip) and isinstance(envelope.slip[0], list)
    if parallel and (result.slip is not None or result.handoff):
        raise PermanentError(f"{agent_name} runs in parallel and may not change the slip.")
    slip: list[SlipEntry]
    if parallel:
        slip = list(envelope.slip)  # the agent that joins the branches moves past them
    elif result.slip is not None:
        slip = list(result.slip)
    else:
        slip = list(result.handoff or []) + list(envelope.slip[1:])
    after = envelope.evolve(
        hop=envelope.hop + 1,
        path=[*envelope.path, agent_name],
        slip=slip,
        payload={**envelope.payload, **result.payload},
    )
    if result.outcome != Outcome.CONTINUE or (not parallel and not slip):
        return after, FlowControl.STOP
    if result.slip is not None or result.handoff:
        return after, FlowControl.REPLACE
    return after, FlowControl.CONTINUE


def agent_execute(task: Task, incoming: Any, agent_name: str) -> Any:
    """Run one delivery of an agent message (the body of every agent task).

    Short, database-only agents (`Agent.atomic`) run in one transaction with
    their step record; the others (those waiting on an LLM) claim the step with a
    lease, run with no transaction held, and record the result afterwards.
    """
    agent = agent_get(agent_name)
    try:
        envelope = envelope_receive(incoming, agent_name)
    except InvalidEnvelope as exc:
        _dead_letter(task, incoming, "invalid_envelope", exc)
        raise
    key = step_key(envelope.hop + 1, agent_name)
    trace_set(trace_id=envelope.trace_id, run_id=envelope.run_id, agent=agent_name, step=key)
    delivery = Delivery(task, agent, incoming, envelope, key, tape_open(envelope, agent_name))
    task_id, worker = task.request.id or "", f"{task.request.hostname}:{os.getpid()}"
    started = time.monotonic()
    try:
        if agent.atomic:
            # A read-only agent's step: one statement when nothing is unusual, else the locked path.
            run_atomic = fast_steps.step_run_fast if fast_steps.fast_path_applies(agent) else steps.step_run_atomic
            start = _with_database(
                lambda: run_atomic(
                    envelope=envelope,
                    agent=agent,
                    task_id=task_id,
                    worker=worker,
                    execute=lambda: _handle(agent, envelope, NoMemo(key), delivery.tape),
                )
            )
        else:
            # A leased step: claimed in one statement when nothing is unusual, else by the locked path.
            fast = fast_leased_steps.fast_path_applies(agent)
            begin = fast_leased_steps.step_begin_fast if fast else steps.step_begin
            start = _with_database(lambda: begin(envelope=envelope, agent=agent, task_id=task_id, worker=worker))
    except AtomicTryFailed as failed:
        # The agent's writes rolled back; the failed try is recorded and decided like any other.
        trace_set(attempt=failed.attempt.number)
        return _failed(delivery, failed.attempt, failed.error)
    except Run.DoesNotExist as exc:
        _dead_letter(task, incoming, "unknown_run", exc, envelope, key)
        raise InvalidEnvelope(f"no run {envelope.run_id}.") from exc
    match start:
        case Skip(reason=reason):
            logger.info("step skipped: %s", reason)
            # Ignore, not a result: in a chord, a result would count as this branch's output and let a
            # duplicate chord join without it. The message is acknowledged; nothing follows from it.
            raise Ignore()
        case Duplicate(holder_task_id=holder):
            logger.info("step duplicate dropped: step is under way as task %s", holder)
            # Ignore, not a result: in a chord, a result would count as this branch's output and let a
            # duplicate chord join without it. The message is acknowledged; nothing follows from it.
            raise Ignore()
        case Busy():
            # This same message is under way (a redelivery while it runs): drop the copy. If its worker died, the
            # worker's own hand-back or the supervisor resumes the step (orchestration.liveness, .supervisor).
            logger.info("step in progress under this message elsewhere; copy dropped")
            raise Ignore()
        case Recorded(output=output):
            logger.info("step already done; returning its recorded output")
            return _follow(task, output)
        case Exhausted(attempts=attempts):
            trace_set(attempt=attempts)
            error = exhausted_error(agent_name, attempts)
            with transaction.atomic():
                steps.step_give_up(run_id=envelope.run_id, key=key, error=error)
                _dead_letter(task, incoming, "attempts_exhausted", error, envelope, key)
            metering.step_tried(agent=agent_name, outcome=metering.StepOutcome.FAILED)
            raise error
        case Done(output=output, attempt=number):
            trace_set(attempt=number)
            delivery.tape_save(number)  # the atomic try ran here (a tape with no calls stores nothing)
            return _completed(task, agent_name, output, started)
        case Proceed(attempt=attempt):
            trace_set(attempt=attempt.number)
            return _proceed(delivery, attempt, started)
        case _:
            assert_never(start)


@dataclass(frozen=True)
class Delivery:
    """One delivery of an agent message, as the failure path needs it."""

    task: Task
    agent: Agent
    incoming: Any
    """The message as received (what a dead letter stores)."""
    envelope: Envelope
    step_key: str
    tape: Tape | None
    """What the try asks the outside world, recorded on the step (`orchestration.recordings`)."""

    def tape_save(self, attempt: int) -> None:
        tape_save(run_id=self.envelope.run_id, key=self.step_key, attempt=attempt, tape=self.tape)


def _proceed(delivery: Delivery, attempt: Attempt, started: float) -> Any:
    """Run the agent with no transaction held, then record its result."""
    if delivery.agent.queue == Queue.LLM:
        # The LLM call can take seconds: the database connection goes back (to the pool) meanwhile,
        # so that many threads waiting on LLMs need few connections.
        connection.close()
    try:
        result, after, control = _handle(delivery.agent, delivery.envelope, AttemptMemo(attempt), delivery.tape)
    except Exception as exc:  # noqa: BLE001  (classified by _failed: retried, escalated, or dead-lettered and re-raised)
        return _failed(delivery, attempt, exc)
    try:
        # The work is done: while the database is away, wait for it rather than lose the result.
        fast = fast_leased_steps.fast_path_applies(delivery.agent)
        succeed = fast_leased_steps.step_succeed_fast if fast else steps.step_succeed
        recorded = _with_database(lambda: succeed(attempt=attempt, result=result, envelope=after, control=control))
        delivery.tape_save(attempt.number)
    except steps.StaleTry as stale:
        logger.info("%s", stale)
        raise Ignore() from stale
    except INFRASTRUCTURE_TRANSIENT as exc:
        # It could not be recorded even so: a failed try like any other.
        return _failed(delivery, attempt, exc)
    return _completed(delivery.task, delivery.agent.name, recorded, started)


def _with_database(action: Callable[[], T]) -> T:
    """Run a database action of the wrapper's (a claim, recording a try); while the database cannot be reached, wait
    and try again, up to DATABASE_WAIT_SECONDS, holding the message: handing it back to the broker would only bring it
    back to a database that is still away (and on RabbitMQ count against its delivery limit). Past that, the error is
    raised (the supervisor resumes the run once the database is back)."""
    deadline = time.monotonic() + settings.DATABASE_WAIT_SECONDS
    while True:
        try:
            return action()
        except DATABASE_UNAVAILABLE as exc:
            connection.close()
            if time.monotonic() >= deadline:
                raise
            logger.warning("database unavailable, waiting for it: %s", exc)
            time.sleep(1.0)


def _handle(
    agent: Agent, envelope: Envelope, memo: StepMemo, tape: Tape | None
) -> tuple[AgentResult, Envelope, FlowControl]:
    result = step_handle(agent, envelope, memo, tape)
    after, control = envelope_after(envelope, agent.name, result)
    return result, after, control


def _completed(task: Task, agent: str, recorded: dict[str, Any], started: float) -> Any:
    seconds = time.monotonic() - started
    logger.info("step completed", extra={"duration_ms": round(seconds * 1000, 1), "status": recorded["control"]})
    metering.step_tried(agent=agent, outcome=metering.StepOutcome.SUCCEEDED, seconds=seconds)
    return _follow(task, recorded)


def _failed(delivery: Delivery, attempt: Attempt, exc: Exception) -> Any:
    """A try failed: retry it, hand the run to a person, or dead-letter the message. A step that fails for good and
    its dead letter are written in one transaction. An atomic agent's try that no longer holds its claim (another
    delivery has the step, the run stopped) leaves no trace: the error is raised as it is."""
    task, agent, envelope = delivery.task, delivery.agent, delivery.envelope
    delivery.tape_save(attempt.number)

    def fail(retry_in: float | None, reason: str = "", postponed: bool = False, error: Exception = exc) -> None:
        def record() -> bool:
            with transaction.atomic():
                recorded = steps.step_fail(
                    attempt=attempt, error=error, retry_in=retry_in, postponed=postponed, envelope=envelope, agent=agent
                )
                if recorded and reason:
                    _dead_letter(task, delivery.incoming, reason, exc, envelope, delivery.step_key)
            return recorded

        if not _with_database(record):
            raise exc
        metering.step_failed(agent=agent.name, retry_in=retry_in, postponed=postponed, error=error)

    # A retry is a row, not a message: the step waits, due at a time, and the supervisor sends it again then. No
    # message waits in a worker for its countdown (it would die with that worker, and block a quorum queue's
    # prefetch); this message is acknowledged and the flow goes on from the step when it is due.
    if isinstance(exc, Postponed):
        # Not this try's fault (the LLM's breaker is open): wait, using up no retry; the deadline bounds the wait.
        countdown = retry_countdown(1, exc.retry_after)
        fail(retry_in=countdown, postponed=True)
        # Polling work under way elsewhere (a remote agent's task) is the normal course, not a warning.
        (logger.info if isinstance(exc, PollLater) else logger.warning)("postponed for %.1fs: %s", countdown, exc)
        raise Ignore()
    if isinstance(exc, (TransientError, *INFRASTRUCTURE_TRANSIENT)):
        if attempt.tries <= agent.max_retries:
            retry_after = exc.retry_after if isinstance(exc, TransientError) else None
            countdown = retry_countdown(attempt.tries, retry_after)
            fail(retry_in=countdown)
            logger.warning("transient failure (attempt %d), retrying in %.1fs: %s", attempt.tries, countdown, exc)
            raise Ignore()
        logger.error("step failed after %d attempts: %s", attempt.tries, exc)
        if agent.review_when_exhausted:
            # A person answers instead (the agent's choice, `Agent.review_when_exhausted`); the dead letter stays. The
            # try is recorded as the halt it ends in (RunHalted, its text naming the last error).
            code = exc.code if isinstance(exc, SwitchboardError) else "agent_unavailable"
            halted = RunHalted(f"{agent.name} gave up after {attempt.number} attempts: {error_text(exc)}", code=code)
            fail(retry_in=None, reason="retries_exhausted", error=halted)
            return _stop(task, envelope.to_dict())
        fail(retry_in=None, reason="retries_exhausted")
        raise PermanentError(f"{agent.name} gave up after {attempt.number} attempts: {exc}") from exc
    if isinstance(exc, RunHalted):
        # Not a fault of this message (e.g. the LLM's circuit is open): a person takes over, no retries pile up.
        fail(retry_in=None)
        logger.warning("run halted by %s: %s", agent.name, exc.message)
        return _stop(task, envelope.to_dict())
    # Anything else is permanent: retrying the same input cannot fix it.
    fail(retry_in=None, reason="permanent_error")
    raise exc


def _dead_letter(
    task: Task,
    incoming: Any,
    reason: str,
    error: BaseException,
    envelope: Envelope | None = None,
    step_key: str = "",
) -> None:
    run_id = envelope.run_id if envelope else _field(incoming, "run_id")
    dead_letter_record(
        task_name=task.name,
        task_id=task.request.id or uuid.uuid4().hex,
        message=incoming,
        reason=reason,
        error=error,
        run_id=run_id if uuid_or_none(run_id) else None,
        step_key=step_key,
        trace_id=envelope.trace_id if envelope else str(_field(incoming, "trace_id") or ""),
    )


def _field(incoming: Any, name: str) -> Any:
    """A field of a message that failed validation, if it has one."""
    if isinstance(incoming, list) and incoming:
        incoming = incoming[0]
    return incoming.get(name) if isinstance(incoming, dict) else None


def _follow(task: Task, recorded: dict[str, Any]) -> Any:
    """Continue the flow as the step's recorded control says."""
    envelope = recorded["envelope"]
    control = FlowControl(recorded["control"])
    match control:
        case FlowControl.STOP:
            return _stop(task, envelope)
        case FlowControl.REPLACE:
            # The slip changed: the rest of the run is recompiled from it, replacing
            # whatever the old canvas still had queued after this task.
            task.request.chain = None
            return task.replace(canvas_for(Envelope.from_dict(envelope)))
        case FlowControl.CONTINUE:
            return envelope
        case _:
            assert_never(control)


def _stop(task: Task, envelope: dict[str, Any]) -> dict[str, Any]:
    """End the flow here: the chain's remaining tasks are not sent."""
    task.request.chain = None
    return envelope


__all__ = ["agent_execute", "envelope_after", "envelope_receive", "retry_countdown"]
