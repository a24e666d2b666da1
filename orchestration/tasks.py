"""Celery tasks: one thin task per registered agent, and the supervisor's.

Agent tasks share `AgentTask`'s delivery settings and `runner.agent_execute`'s behaviour; an agent module never
touches Celery. Names and queues come from `orchestration.routing`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from celery import Task

from agents.base import Agent
from agents.registry import agents_all
from agents.remote import remote_tasks_cancel
from orchestration import liveness  # noqa: F401  (its worker signals; its StepRequest is named below)
from orchestration.broker_dead_letters import dead_letter_consumer_install
from orchestration.models import Run
from orchestration.routing import HARD_LIMIT_GRACE, REMOTE_CANCEL_TASK, SWEEP_TASK, agent_task_name
from orchestration.runner import agent_execute
from orchestration.supervisor import supervisor_sweep
from project.celery import app


class AgentTask(Task):
    """Delivery settings every agent task shares."""

    # At-least-once: ack after the task ends; requeue if the worker process dies (after recording the lost try on
    # its step, so a message that kills its process every time is given up: orchestration.liveness).
    acks_late = True
    reject_on_worker_lost = True
    Request = "orchestration.liveness:StepRequest"
    # Retries are counted per step in the database (runner), not by Celery.
    max_retries = None
    # Chord joins read the header's results: keep them.
    ignore_result = False
    # Events and Flower show a result's repr; an envelope's ids come first, its payload (customer text) last.
    resultrepr_maxsize = 100


def agent_task_register(agent: Agent) -> None:
    @app.task(
        bind=True,
        base=AgentTask,
        name=agent_task_name(agent.name),
        soft_time_limit=agent.time_limit,
        time_limit=agent.time_limit + HARD_LIMIT_GRACE,
    )
    def agent_task(self: Task, incoming: Any) -> Any:
        return agent_execute(self, incoming, agent.name)


for _agent in agents_all().values():
    agent_task_register(_agent)
dead_letter_consumer_install()


@app.task(name=SWEEP_TASK, acks_late=True)
def supervisor_sweep_task() -> dict[str, object]:
    """Run by beat: one supervisor tick (in case no supervisor process runs) and review deadlines
    (see orchestration.supervisor)."""
    return dataclasses.asdict(supervisor_sweep())


@app.task(name=REMOTE_CANCEL_TASK, acks_late=True, ignore_result=True)
def remote_tasks_cancel_task(run_id: str) -> int:
    """Ask remote A2A agents to stop the tasks a stopped run's steps started (best effort)."""
    run = Run.objects.get(id=run_id)
    steps = list(run.steps.filter(memo__has_key="task_id").values_list("agent", "memo"))
    return remote_tasks_cancel(trace_id=run.trace_id, steps=steps)
