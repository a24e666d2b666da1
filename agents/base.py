"""The agent interface and what an agent returns."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Protocol

from agents.envelope import Envelope, SlipEntry
from agents.payload import Payload


class Queue(enum.StrEnum):
    """Where an agent's task is served."""

    LLM = "llm"
    """Agents that wait on an LLM: served by a pool with many calls in flight."""
    DEFAULT = "default"
    """Short, CPU-light agents and bookkeeping."""


#: Costs are kept to the millionth of a US dollar (the steps' and runs' `cost_usd` columns).
MICRO_USD = Decimal("0.000001")


class Outcome(enum.StrEnum):
    """What the run does after this agent."""

    CONTINUE = "continue"
    """Go on to the next agent on the slip."""
    COMPLETE = "complete"
    """The run is done (the reply was delivered)."""
    ESCALATE = "escalate"
    """Stop and hand the run to a person (with `reason`)."""


@dataclass
class Usage:
    """What one agent execution spent on the LLM."""

    input_tokens: int = 0
    """Prompt tokens, summed over the agent's LLM calls."""
    output_tokens: int = 0
    """Completion tokens, summed over the agent's LLM calls."""
    cost_usd: Decimal = Decimal(0)
    """Cost in US dollars from the price table, to the millionth (`MICRO_USD`), as steps store it."""
    model: str = ""
    """Model of the last call ('' when the agent made none)."""
    prompt_version: str = ""
    """Prompt name and version of the last call, e.g. 'triage@1'."""
    latency_ms: int = 0
    """Time spent waiting on the LLM, in milliseconds."""

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class AgentResult:
    """What an agent hands back to the task wrapper."""

    payload: Payload = field(default_factory=lambda: Payload())
    """Keys to add to (or replace in) the envelope's payload (`agents.payload` says who may write which)."""
    usage: Usage = field(default_factory=Usage)
    """LLM spending of this execution, added to the run's budget."""
    outcome: Outcome = Outcome.CONTINUE
    """Continue, complete the run, or escalate it to a person."""
    reason: str = ""
    """Why the run escalates (a short code), when outcome is ESCALATE."""
    slip: list[SlipEntry] | None = None
    """A new routing slip for the rest of the run (the planner writes one)."""
    handoff: list[SlipEntry] | None = None
    """Agents to visit next, before the rest of the slip (an agent handing work on)."""


class StepMemo(Protocol):
    """What one step keeps across its tries (the step record's `memo`), given to `Agent.handle_step` by the task
    wrapper: for an agent whose work outlives one try (a remote agent's task, polled on later tries)."""

    @property
    def key(self) -> str:
        """The step's key within its run ("<hop>.<agent>"): the same for every try and delivery of the step."""
        ...

    def get(self) -> dict[str, Any]:
        """What the step's tries wrote so far ({} at first)."""
        ...

    def put(self, data: dict[str, Any]) -> None:
        """Replace it; committed when this returns. Raises `PermanentError` when this try no longer holds the step
        (another delivery took it over): the caller must not act on the world then."""
        ...


class Agent:
    """Base of every agent: a name, a version, a queue and `handle`.

    `handle` must be thread-safe and keep no state between calls: agents are
    served from thread pools and their messages may be delivered twice.
    """

    name: ClassVar[str]
    """Stable name; the Celery task is `agents.<name>`."""
    version: ClassVar[str] = "1"
    """Bumped when behaviour changes; recorded on every step."""
    queue: ClassVar[Queue] = Queue.DEFAULT
    """The Celery queue that serves this agent."""
    max_retries: ClassVar[int] = 3
    """Transient failures retried this many times before the message is dead-lettered."""
    time_limit: ClassVar[int] = 60
    """Seconds one try may take; no other delivery of the message starts a try meanwhile."""
    atomic: ClassVar[bool] = False
    """A short agent that only uses the database: it runs inside one transaction with its step record
    (fewer round trips, and its writes commit exactly once with the step). Never for an agent that
    waits on the network or may run long: the run's row stays locked while it runs."""
    writes_database: ClassVar[bool] = True
    """For an `atomic` agent: whether `handle` may write to the database. One that only reads (False) runs with no
    transaction held and its step is recorded by one statement when nothing is unusual
    (`orchestration.fast_steps`); running it a second time, as the locked path then does, must be harmless."""
    review_when_exhausted: ClassVar[bool] = False
    """When transient failures outlast `max_retries`, hand the run to a person (a review item, the last error's code
    as its reason) instead of failing it; the message is dead-lettered either way. For an agent whose failure leaves
    the customer's question unanswered but answerable by a person (a remote agent that is down)."""

    replay_safe: ClassVar[bool] = True
    """Whether the agent may run in a replay of a recorded run (`orchestration.replay_steps`): it acts on nothing
    outside Switchboard, or a replay simulates what it does (deliver). Not a remote A2A agent: it would send to a
    partner, so a replay that needs it to run stops there."""

    def handle(self, envelope: Envelope) -> AgentResult:
        raise NotImplementedError

    def handle_step(self, envelope: Envelope, memo: StepMemo) -> AgentResult:
        """What the task wrapper calls: `handle`, for agents that keep nothing across tries. An agent whose work
        outlives a try overrides it and keeps its state in `memo` (not for `atomic` agents)."""
        return self.handle(envelope)
