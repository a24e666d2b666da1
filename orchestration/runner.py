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
from typing import Any

from celery import Task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from agents.base import AgentResult, Outcome
from agents.envelope import Envelope, envelopes_merge
from agents.registry import agent_get
from orchestration import services
from project.errors import InvalidEnvelope, PermanentError, TransientError

logger = logging.getLogger(__name__)

#: Errors of our own infrastructure that may pass (a database or broker blip).
INFRASTRUCTURE_TRANSIENT = (OperationalError, InterfaceError, BrokerOperationalError, RedisConnectionError)


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


def envelope_after(envelope: Envelope, agent_name: str, result: AgentResult) -> tuple[Envelope, str]:
    """The envelope an agent's success produces, and what the flow does next:
    continue (the canvas goes on), replace (the slip changed: recompile) or stop."""
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
    """Run one delivery of an agent message (the body of every agent task)."""
    agent = agent_get(agent_name)
    envelope = envelope_receive(incoming, agent_name)
    log = {"run_id": envelope.run_id, "trace_id": envelope.trace_id, "agent": agent_name}
    start = services.step_begin(
        envelope=envelope,
        agent=agent,
        task_id=task.request.id or "",
        worker=f"{task.request.hostname}:{os.getpid()}",
    )
    if start.action == "skip":
        logger.info("step skipped: %s", start.reason, extra=log)
        return _stop(task, envelope.to_dict())
    if start.action == "busy":
        logger.info("step in progress elsewhere; retrying in %.1fs", start.retry_in, extra=log)
        raise task.retry(countdown=start.retry_in)
    if start.action == "recorded":
        logger.info("step already done; returning its recorded output", extra=log)
        return _follow(task, start.recorded)

    try:
        result = agent.handle(envelope)
        after, control = envelope_after(envelope, agent_name, result)
    except TransientError as exc:
        _retry_or_fail(task, agent.max_retries, start, exc, exc.retry_after, log)
    except INFRASTRUCTURE_TRANSIENT as exc:
        _retry_or_fail(task, agent.max_retries, start, exc, None, log)
    except Exception as exc:
        # Anything else is permanent: retrying the same input cannot fix it.
        services.step_fail(start=start, error=exc, will_retry=False)
        logger.exception("step failed permanently", extra=log)
        return _stop(task, envelope.to_dict())
    recorded = services.step_succeed(start=start, result=result, envelope=after, control=control)
    return _follow(task, recorded)


def _retry_or_fail(
    task: Task, max_retries: int, start: services.StepStart, exc: BaseException, retry_after: float | None, log: dict
) -> None:
    will_retry = start.attempt <= max_retries
    services.step_fail(start=start, error=exc, will_retry=will_retry)
    if not will_retry:
        logger.error("step failed after %d attempts: %s", start.attempt, exc, extra=log)
        raise PermanentError(f"gave up after {start.attempt} attempts: {exc}") from exc
    countdown = retry_countdown(start.attempt, retry_after)
    logger.warning("transient failure (attempt %d), retrying in %.1fs: %s", start.attempt, countdown, exc, extra=log)
    raise task.retry(countdown=countdown, exc=exc)


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
