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

from agents.envelope import Envelope, SlipEntry, slip_validate
from agents.registry import agent_get
from orchestration.budgets import budget_snapshot
from orchestration.models import Run, Step
from orchestration.routing import agent_task_name
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


def run_dispatch(run: Run, envelope: Envelope | None = None) -> None:
    """Send a run's agents to the broker: from `envelope` (where the supervisor resumes it, `run_resume_envelope`), or
    from its start envelope (a new run, a review decision's resumption, a dead-letter replay).

    Called after the commit that wrote the run, by whoever holds it. Steps already done return their recorded output,
    so the run picks up where it stopped. No message waits for the deadline: the supervisor enforces it from the
    database.
    """
    start = envelope or Envelope.from_dict(run.start_envelope)
    start = start.evolve(budget=budget_snapshot(run))
    # The messages carry the run's trace id, whoever dispatches (a request, the supervisor, a reviewer).
    with trace_context(trace_id=run.trace_id, run_id=str(run.id)):
        canvas_for(start).apply_async()
        logger.info("run dispatched")


def run_resume_envelope(run: Run) -> Envelope:
    """Where to send a run again: the output of its furthest completed step since its last start that hands on
    (not a parallel branch, whose join needs all its branches: the step before the branches hands them on), else its
    start envelope. Compiling the rest of the run from there gives the same step keys as the first time."""
    start = Envelope.from_dict(run.start_envelope)
    done = run.steps.filter(status=Step.Status.COMPLETED, hop__gt=start.hop).order_by("-hop", "-id")
    for step in done.only("agent", "output")[:20]:
        recorded = step.output or {}
        if recorded.get("control") not in (FlowControl.CONTINUE, FlowControl.REPLACE):
            continue
        envelope = Envelope.from_dict(recorded["envelope"])
        head = envelope.slip[0] if envelope.slip else None
        if head is not None and not (isinstance(head, list) and step.agent in head):
            return envelope
    return start
