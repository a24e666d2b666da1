"""Celery task routing (installed as `task_routes`): each agent's task goes to its agent's queue."""

from __future__ import annotations

from typing import Any


def route_for_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict | None:
    if name.startswith("agents."):
        from agents.registry import agents_all

        agent = agents_all().get(name.removeprefix("agents."))
        if agent is not None:
            return {"queue": agent.queue.value}
    return None
