"""Compile a routing slip into a Celery canvas.

`["triage", "planner"]` becomes `chain(triage, planner)`; a parallel entry and
the agent after it become a chord: `[["retrieval", "account"], "responder", ...]`
is `chain(chord(group(retrieval, account), responder), ...)`. The broker, not a
waiting worker, carries the flow; no task ever waits on another's result.
"""

from __future__ import annotations

from celery import chain, chord, group
from celery.canvas import Signature

from agents.envelope import Envelope, SlipEntry, slip_validate
from agents.registry import agent_get
from project.celery import app


def task_name(agent_name: str) -> str:
    return f"agents.{agent_name}"


def agent_signature(agent_name: str) -> Signature:
    agent = agent_get(agent_name)
    return app.signature(task_name(agent.name), queue=agent.queue.value)


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
