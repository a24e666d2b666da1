"""Compile a routing slip into a Celery canvas, and dispatch a run's canvas to the broker.

`["triage", "planner"]` becomes `chain(triage, planner)`; a parallel entry and
the agent after it become a chord: `[["retrieval", "account"], "responder", ...]`
is `chain(chord(group(retrieval, account), responder), ...)`. The broker, not a
waiting worker, carries the flow; no task ever waits on another's result.
"""

from __future__ import annotations

import enum
import logging

from celery import chain, chord, group
from celery.canvas import Signature
from django.utils import timezone

from agents.envelope import Envelope, SlipEntry, slip_validate
from agents.registry import agent_get
from orchestration.budgets import budget_snapshot
from orchestration.models import Run
from orchestration.routing import WATCHDOG_TASK, agent_task_name
from project.celery import app
from project.tracing import trace_context

logger = logging.getLogger(__name__)


class FlowControl(enum.StrEnum):
    """What the flow does after a step (recorded with the step's output, so a redelivery does the same)."""

    CONTINUE = "continue"
    """The canvas goes on to the next task it already holds."""
    REPLACE = "replace"
    """The slip changed (a plan, a handoff): the rest of the run is recompiled from it and replaces this task."""
    STOP = "stop"
    """The run's flow ends here (completed, escalated, or the slip ran out): nothing more is sent."""


def agent_signature(agent_name: str) -> Signature:
    """The signature of an agent's task; its queue comes from the router (`orchestration.routing`).
    An unknown name is a KeyError here, before anything is sent that no worker would serve."""
    agent_get(agent_name)
    return app.signature(agent_task_name(agent_name))


def canvas_compile(slip: list[SlipEntry], envelope: Envelope | None = None) -> Signature:
    """The canvas that visits the slip's agents in order; the envelope, if given,
    is bound as the first agents' argument."""
    slip_validate(slip)
    if not slip:
        raise ValueError("cannot compile an empty slip.")
    parts: list[Signature] = []
    index = 0
    while index < len(slip):
        entry = slip[index]
        if isinstance(entry, list):
            join = slip[index + 1]
            assert isinstance(join, str)  # slip_validate: a parallel entry is followed by one agent
            parts.append(chord(group(agent_signature(name) for name in entry), agent_signature(join)))
            index += 2
        else:
            parts.append(agent_signature(entry))
            index += 1
    if envelope is not None:
        parts[0] = _bind(parts[0], envelope)
    return parts[0] if len(parts) == 1 else chain(*parts)


def canvas_for(envelope: Envelope) -> Signature:
    """The canvas for the rest of a run, starting with the envelope."""
    return canvas_compile(envelope.slip, envelope)


def _bind(signature: Signature, envelope: Envelope) -> Signature:
    if isinstance(signature, chord):
        header = group(task.clone(args=(envelope.to_dict(),)) for task in signature.tasks)
        return chord(header, signature.body)
    return signature.clone(args=(envelope.to_dict(),))


def run_dispatch(run: Run) -> None:
    """Send a run's first agents (from its start envelope) to the broker, and its deadline watchdog.

    Called after the commit that wrote the run, by whoever holds it: a new run, the supervisor
    recovering a stuck one, a dead-letter replay, a review decision. Steps already done return their
    recorded output, so the run picks up where it stopped.
    """
    envelope = Envelope.from_dict(run.start_envelope).evolve(budget=budget_snapshot(run))
    # The messages carry the run's trace id, whoever dispatches (a request, the supervisor, a reviewer).
    with trace_context(trace_id=run.trace_id, run_id=str(run.id)):
        canvas_for(envelope).apply_async()
        countdown = max(0.0, (run.deadline_at - timezone.now()).total_seconds()) + 1
        app.send_task(WATCHDOG_TASK, args=(str(run.id),), countdown=countdown)
        logger.info("run dispatched")
