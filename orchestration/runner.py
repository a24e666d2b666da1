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
from typing import Any

from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from agents.base import AgentResult, Outcome, Queue
from agents.envelope import Envelope, envelopes_merge
from agents.registry import agent_get
from orchestration import services
from orchestration.deadletters import dead_letter_record
from orchestration.models import Run
from project.errors import InvalidEnvelope, PermanentError, RunHalted, TransientError
from project.ids import uuid_or_none
from project.tracing import trace_set

logger = logging.getLogger(__name__)

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


#: Payload keys only a reviewer's decision writes (see orchestration.reviews).
REVIEW_ONLY_KEYS = frozenset({"approved_by", "reply_role"})


def envelope_after(envelope: Envelope, agent_name: str, result: AgentResult) -> tuple[Envelope, str]:
    """The envelope an agent's success produces, and what the flow does next:
    continue (the canvas goes on), replace (the slip changed: recompile) or stop."""
    forbidden = REVIEW_ONLY_KEYS & set(result.payload)
    if "approved_actions" in result.payload and not agent_get(agent_name).may_approve_actions:
        forbidden.add("approved_actions")
    if forbidden:
        raise PermanentError(f"{agent_name} may not write {sorted(forbidden)} into the payload.")
    parallel = bool(envelope.slip) and isinstance(envelope.slip[0], list)
    if parallel and (result.slip is not None or result.handoff):
        raise PermanentError(f"{agent_name} runs in parallel and may not change the slip.")
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
        return after, "stop"
    if result.slip is not None or result.handoff:
        return after, "replace"
    return after, "continue"


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
    step_key = services.step_key(envelope.hop + 1, agent_name)
    trace_set(trace_id=envelope.trace_id, run_id=envelope.run_id, agent=agent_name, step=step_key)
    claim = {"envelope": envelope, "agent": agent, "task_id": task.request.id or "",
             "worker": f"{task.request.hostname}:{os.getpid()}"}  # fmt: skip
    started = time.monotonic()
    try:
        if agent.atomic:
            try:
                start = services.step_run_atomic(**claim, execute=lambda: _handle(agent, envelope))
            except Run.DoesNotExist:
                raise
            except Exception as exc:
                # Everything rolled back; record the failed try like any other and decide as usual.
                start = services.step_begin(**claim)
                if start.action != "proceed":
                    raise
                return _failed(task, agent, start, exc, incoming, envelope, step_key)
        else:
            start = services.step_begin(**claim)
    except Run.DoesNotExist as exc:
        _dead_letter(task, incoming, "unknown_run", exc, envelope, step_key)
        raise InvalidEnvelope(f"no run {envelope.run_id}.") from exc
    if start.action in ("skip", "duplicate"):
        what = "skipped" if start.action == "skip" else "duplicate dropped"
        logger.info("step %s: %s", what, start.reason)
        # Ignore, not a result: in a chord, a result would count as this branch's output and let a
        # duplicate chord join without it. The message is acknowledged; nothing follows from it.
        raise Ignore()
    if start.action == "busy":
        logger.info("step in progress elsewhere; retrying in %.1fs", start.retry_in)
        raise task.retry(countdown=start.retry_in)
    if start.action == "recorded":
        logger.info("step already done; returning its recorded output")
        return _follow(task, start.recorded)
    trace_set(attempt=start.attempt or None)
    if start.action == "exhausted":
        error = PermanentError(f"{agent_name} died mid-step on every one of {start.attempt} tries.")
        services.step_fail(start=start, error=error, will_retry=False)
        _dead_letter(task, incoming, "attempts_exhausted", error, envelope, step_key)
        raise error
    if start.action == "done":
        return _completed(task, start.recorded, started)

    if agent.queue == Queue.LLM:
        # The LLM call can take seconds: the database connection goes back (to the pool) meanwhile,
        # so that many threads waiting on LLMs need few connections.
        connection.close()
    try:
        result, after, control = _handle(agent, envelope)
    except Exception as exc:  # noqa: BLE001  (classified by _failed: retried, escalated, or dead-lettered and re-raised)
        return _failed(task, agent, start, exc, incoming, envelope, step_key)
    try:
        recorded = services.step_succeed(start=start, result=result, envelope=after, control=control)
    except INFRASTRUCTURE_TRANSIENT as exc:
        # The work is done but could not be recorded (a database blip): a failed try like any other.
        return _failed(task, agent, start, exc, incoming, envelope, step_key)
    return _completed(task, recorded, started)


def _handle(agent: Any, envelope: Envelope) -> tuple[AgentResult, Envelope, str]:
    result = agent.handle(envelope)
    after, control = envelope_after(envelope, agent.name, result)
    return result, after, control


def _completed(task: Task, recorded: dict[str, Any], started: float) -> Any:
    logger.info(
        "step completed",
        extra={"duration_ms": round((time.monotonic() - started) * 1000, 1), "status": recorded["control"]},
    )
    return _follow(task, recorded)


def _failed(
    task: Task,
    agent: Any,
    start: services.StepStart,
    exc: Exception,
    incoming: Any,
    envelope: Envelope,
    step_key: str,
) -> Any:
    """A try failed: retry it, hand the run to a person, or dead-letter the message."""
    if isinstance(exc, (TransientError, *INFRASTRUCTURE_TRANSIENT)):
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        _retry_or_fail(task, agent.max_retries, start, exc, retry_after)
        _dead_letter(task, incoming, "retries_exhausted", exc, envelope, step_key)
        raise PermanentError(f"{agent.name} gave up after {start.attempt} attempts: {exc}") from exc
    if isinstance(exc, RunHalted):
        # Not a fault of this message (e.g. the LLM's circuit is open): a person takes over, no retries pile up.
        services.step_fail(start=start, error=exc, will_retry=False, envelope=envelope)
        logger.warning("run halted by %s: %s", agent.name, exc.message)
        return _stop(task, envelope.to_dict())
    # Anything else is permanent: retrying the same input cannot fix it.
    services.step_fail(start=start, error=exc, will_retry=False)
    _dead_letter(task, incoming, "permanent_error", exc, envelope, step_key)
    raise exc


def _retry_or_fail(
    task: Task, max_retries: int, start: services.StepStart, exc: BaseException, retry_after: float | None
) -> None:
    """Schedule a retry (raises celery's Retry) or, when retries are used up, record the failure and return."""
    tries = start.attempt - start.retry_base
    will_retry = tries <= max_retries
    services.step_fail(start=start, error=exc, will_retry=will_retry)
    if not will_retry:
        logger.error("step failed after %d attempts: %s", tries, exc)
        return
    countdown = retry_countdown(tries, retry_after)
    logger.warning("transient failure (attempt %d), retrying in %.1fs: %s", tries, countdown, exc)
    raise task.retry(countdown=countdown, exc=exc)


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
    from orchestration.pipeline import canvas_for

    envelope = recorded["envelope"]
    control = recorded["control"]
    if control == "stop":
        return _stop(task, envelope)
    if control == "replace":
        # The slip changed: the rest of the run is recompiled from it, replacing
        # whatever the old canvas still had queued after this task.
        task.request.chain = None
        return task.replace(canvas_for(Envelope.from_dict(envelope)))
    return envelope


def _stop(task: Task, envelope: dict[str, Any]) -> dict[str, Any]:
    """End the flow here: the chain's remaining tasks are not sent."""
    task.request.chain = None
    return envelope


__all__ = ["agent_execute", "envelope_after", "envelope_receive", "retry_countdown"]
