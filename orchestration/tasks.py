"""Celery tasks: one thin task per registered agent, named `agents.<name>`.

They all share `AgentTask`'s delivery settings and `runner.agent_execute`'s
behaviour; an agent module never touches Celery.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from agents.base import Agent
from agents.registry import agents_all
from orchestration.runner import agent_execute
from project.celery import app


class AgentTask(Task):
    """Delivery settings every agent task shares."""

    # At-least-once: ack after the task ends; requeue if the worker process dies.
    acks_late = True
    reject_on_worker_lost = True
    # Retries are counted per step in the database (runner), not by Celery.
    max_retries = None
    # Chord joins read the header's results: keep them.
    ignore_result = False


def agent_task_register(agent: Agent) -> Task:
    @app.task(bind=True, base=AgentTask, name=f"agents.{agent.name}", queue=agent.queue.value)
    def agent_task(self: Task, incoming: Any) -> Any:
        return agent_execute(self, incoming, agent.name)

    return agent_task


AGENT_TASKS: dict[str, Task] = {name: agent_task_register(agent) for name, agent in agents_all().items()}
