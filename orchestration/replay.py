"""Replaying recorded runs through the real pipeline, with chosen agents, prompts or a model changed.

`replay_start` copies the recorded run's conversation up to its message into a throwaway conversation (never shown to
the customer: `Conversation.replay_of`) and starts a run on it that names the recorded one (`Run.replay_of`) and
carries the plan in its envelope: the Celery workers run it as any run, each step answered from the record or run
live (`orchestration.replay_steps`), reviews answered with the recorded decisions (`orchestration.replay_reviews`),
deliver simulating instead of refunding or replying. `replay_wait` waits for the replays to end (the caller is a
command, never a task).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from django.db import transaction

from agents.base import Agent
from agents.llm.base import Prompt
from agents.registry import agent_version_get, agents_all, prompt_get
from conversations.models import Conversation, Message
from orchestration.cancel import run_cancel
from orchestration.models import Run, Step, StepCall
from orchestration.replay_plan import ReplayPlan
from orchestration.runs import HISTORY_TURNS, run_start
from project.errors import InvalidInput, NotCancelable, NotFound
from project.ids import uuid_or_none
from project.recording import Kind

#: How often `replay_wait` looks at the replays' statuses.
POLL_SECONDS = 0.2


def name_version(text: str, what: str) -> tuple[str, str]:
    """'responder@3' as ('responder', '3'), or InvalidInput."""
    name, at, version = text.partition("@")
    if not at or not name or not version:
        raise InvalidInput(f"{what} must be NAME@VERSION (e.g. responder@3), not {text!r}.")
    return name, version


def replay_plan_for(
    original: Run, *, agents: Sequence[str] = (), prompts: Sequence[str] = (), model: str = ""
) -> ReplayPlan:
    """What runs live in a replay of `original`: the named agent versions; the agents whose prompt is named (their own
    version, with that prompt); with a model and nothing else named, every agent that asks a model."""
    live: dict[str, str] = {}
    for text in agents:
        name, version = name_version(text, "--agent")
        try:
            live[name] = agent_version_get(name, version).version
        except KeyError as exc:
            raise InvalidInput(str(exc.args[0])) from exc
    chosen: dict[str, str] = {}
    for text in prompts:
        name, version = name_version(text, "--prompt")
        try:
            prompt_get(name, version)
        except KeyError as exc:
            raise InvalidInput(str(exc.args[0])) from exc
        users = [agent for agent in agents_all().values() if _prompt_name(agent) == name]
        if not users:
            raise InvalidInput(f"no agent completes the prompt {name!r}.")
        chosen[name] = version
        for user in users:
            live.setdefault(user.name, user.version)
    if model and not agents and not prompts:
        for agent in agents_all().values():
            if _prompt_name(agent):
                live.setdefault(agent.name, agent.version)
    return ReplayPlan(
        of=str(original.id), live=live, prompts=chosen, model=model, as_of=original.created_at.isoformat()
    )


def _prompt_name(agent: Agent) -> str:
    """The name of the prompt an agent completes ('' for an agent that asks no model)."""
    prompt = getattr(agent, "prompt", None)
    return prompt.name if isinstance(prompt, Prompt) else ""


def run_recorded(run_id: object) -> Run:
    """A finished run with a recording, which a replay may start from; else NotFound or InvalidInput saying why."""
    run_uuid = uuid_or_none(run_id)
    run = (
        Run.objects.select_related("conversation", "trigger_message").filter(id=run_uuid).first() if run_uuid else None
    )
    if run is None:
        raise NotFound(f"No run {run_id}.")
    if run.replay_of_id is not None:
        raise InvalidInput(f"run {run.id} is itself a replay (of {run.replay_of_id}); replay that run instead.")
    if run.status not in Run.TERMINAL and run.status != Run.Status.AWAITING_REVIEW:
        raise InvalidInput(f"run {run.id} is {run.status}: only a run that has stopped can be replayed.")
    if not StepCall.objects.filter(run=run, kind=Kind.RESULT).exists():
        raise InvalidInput(
            f"run {run.id} has no recording: recorded runs are kept LLM_RECORD_DAYS days, and none are when it is 0."
        )
    return run


def replay_start(*, original: Run, plan: ReplayPlan) -> Run:
    """Start a replay of `original` (checked by `run_recorded`); its workers pick it up after commit."""
    with transaction.atomic():
        copy = Conversation.objects.create(
            customer_id=original.conversation.customer_id, replay_of=original.conversation
        )
        trigger = original.trigger_message
        earlier = Message.objects.filter(conversation_id=original.conversation_id, created_at__lte=trigger.created_at)
        messages = list(earlier.exclude(id=trigger.id).order_by("-created_at", "-id")[:HISTORY_TURNS])[::-1]
        copies = [Message(conversation=copy, role=m.role, content=m.content) for m in [*messages, trigger]]
        Message.objects.bulk_create(copies)
        for made, source in zip(copies, [*messages, trigger], strict=True):
            made.created_at = source.created_at  # the same order, the same history
        Message.objects.bulk_update(copies, ["created_at"])
        return run_start(
            conversation=copy,
            message=copies[-1],
            trace_id=uuid.uuid4().hex,
            budget=dict(original.budget),
            a2a_guard=original.a2a_guard,
            replay_of=original,
            replay=plan.to_dict(),
        )


def replay_wait(run_ids: Iterable[str], *, timeout: float) -> bool:
    """Wait until every replay has stopped (completed, failed, timed out, or waiting for a review the record does not
    answer); False if some had not within `timeout` seconds."""
    pending = set(run_ids)
    deadline = time.monotonic() + timeout
    while pending:
        active = Run.objects.filter(id__in=pending, status__in=Run.ACTIVE).values_list("id", flat=True)
        pending = {str(run_id) for run_id in active}
        if not pending:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def runs_to_replay(*, since: datetime, filters: dict[str, str], limit: int) -> list[Run]:
    """Recorded, stopped, original runs started since `since`, newest first, matching every filter: intent (what
    triage recorded), status, reason, review (yes: the run went to a person; no: it did not)."""
    runs = Run.objects.filter(created_at__gte=since, replay_of=None, calls__kind=Kind.RESULT).distinct()
    runs = runs.exclude(status__in=Run.ACTIVE)
    for name, value in filters.items():
        match name:
            case "intent":
                triaged = Step.objects.filter(
                    run__in=runs, agent="triage", status=Step.Status.COMPLETED, output__envelope__payload__intent=value
                )
                runs = runs.filter(id__in=triaged.values("run_id"))
            case "status":
                runs = runs.filter(status=value)
            case "reason":
                runs = runs.filter(reason=value)
            case "review":
                if value not in ("yes", "no"):
                    raise InvalidInput("--filter review= takes yes or no.")
                reviewed = runs.filter(review_items__isnull=False)
                runs = reviewed if value == "yes" else runs.exclude(id__in=reviewed.values("id"))
            case _:
                raise InvalidInput(f"unknown filter {name!r}: use intent=, status=, reason= or review=.")
    return list(runs.select_related("conversation", "trigger_message").order_by("-created_at")[:limit])


def replays_cancel(run_ids: Iterable[str]) -> int:
    """Cancel the replays still active (waited for too long); how many were."""
    still = Run.objects.filter(id__in=list(run_ids), status__in=Run.ACTIVE)
    active = [str(run_id) for run_id in still.values_list("id", flat=True)]
    for run_id in active:
        with contextlib.suppress(NotCancelable):  # it finished meanwhile
            run_cancel(run_id=run_id)
    return len(active)
