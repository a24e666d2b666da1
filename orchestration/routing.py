"""Task names, queues and time limits, in one place.

An agent's task is named `agents.<agent name>` and served from its agent's queue (`Agent.queue`); the supervisor's
tasks go to the default queue. Celery asks `route_for_task` (installed as `task_routes` in project/celery.py) for
every message sent — canvas signatures, `Task.replace`, retries and `send_task` alike — so no caller sets a queue.
"""

from __future__ import annotations

from typing import Any

from agents.registry import agents_all

AGENT_TASK_PREFIX = "agents."
#: Run by beat every SUPERVISOR_SWEEP_SECONDS (the schedule in project/celery.py names it too).
SWEEP_TASK = "supervisor.sweep"
#: Sent after a run with remote A2A steps in flight is cancelled or times out: ask the remotes to stop.
REMOTE_CANCEL_TASK = "remote.cancel"


#: Seconds between a try's soft time limit (an exception in the agent) and its hard one (the process is killed).
HARD_LIMIT_GRACE = 10


def agent_task_name(agent_name: str) -> str:
    """The Celery task name of an agent."""
    return f"{AGENT_TASK_PREFIX}{agent_name}"


def route_for_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> dict[str, str] | None:
    """The queue for an agent's task; None (the default queue, `task_default_queue`) for everything else."""
    if name.startswith(AGENT_TASK_PREFIX):
        agent = agents_all().get(name.removeprefix(AGENT_TASK_PREFIX))
        if agent is not None:
            return {"queue": agent.queue.value}
    return None
