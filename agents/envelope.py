"""The envelope: the one JSON message every agent task takes and returns (version 1).

Agents read it and add to `payload`; the task wrapper in `orchestration` moves
`hop`, `path` and `slip` and keeps `budget` current. `Envelope.from_dict`
rejects anything malformed with `InvalidEnvelope`, so an agent never sees half
a message.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

from agents.payload import Payload
from project.errors import InvalidEnvelope

ENVELOPE_VERSION = 1

#: A routing slip entry: one agent name, or a list of agent names run in parallel.
SlipEntry = str | list[str]


@dataclass(frozen=True)
class Budget:
    """What a run may spend, and what it had spent when this envelope was written."""

    max_tokens: int
    """Total LLM tokens (input + output) the run may use."""
    max_cost_usd: float
    """Total LLM cost in US dollars the run may use."""
    max_hops: int
    """Agent executions the run may make (its path length)."""
    deadline: float
    """Wall-clock deadline, as a Unix timestamp in seconds."""
    tokens_used: int = 0
    """Tokens used so far, as recorded on the run."""
    cost_used_usd: float = 0.0
    """Cost so far, as recorded on the run."""

    @classmethod
    def from_dict(cls, data: Any) -> Budget:
        if not isinstance(data, dict):
            raise InvalidEnvelope("budget must be an object.")
        try:
            budget = cls(
                max_tokens=int(data["max_tokens"]),
                max_cost_usd=float(data["max_cost_usd"]),
                max_hops=int(data["max_hops"]),
                deadline=float(data["deadline"]),
                tokens_used=int(data.get("tokens_used", 0)),
                cost_used_usd=float(data.get("cost_used_usd", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEnvelope(f"budget is malformed: {exc!r}.") from exc
        if budget.max_tokens < 0 or budget.max_cost_usd < 0 or budget.max_hops < 0:
            raise InvalidEnvelope("budget limits must not be negative.")
        return budget


@dataclass(frozen=True)
class Envelope:
    """One run's state as it travels from agent to agent."""

    run_id: str
    """The run this message belongs to (a UUID)."""
    conversation_id: str
    """The conversation the run answers (a UUID)."""
    trace_id: str
    """Trace id shared by the HTTP request, the run, every step and every log line."""
    budget: Budget
    """The run's limits and its spending so far."""
    hop: int = 0
    """How many agent executions led to this message."""
    path: list[str] = field(default_factory=list)
    """Agents visited so far, in order (parallel branches in slip order)."""
    slip: list[SlipEntry] = field(default_factory=list)
    """Routing slip: the agents still to visit; a list entry runs its agents in parallel."""
    payload: Payload = field(default_factory=lambda: Payload())
    """What agents add: message, intent, passages, account facts, draft, verdict, reply (`agents.payload`)."""
    v: int = ENVELOPE_VERSION
    """Envelope schema version."""
    replay: dict[str, Any] | None = None
    """Set only in a replay of a recorded run (`orchestration.replay.ReplayPlan`): which run it replays and what runs
    live. Agents never read it; the task wrapper does. Left out of the JSON when None."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.replay is None:
            del data["replay"]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        """Validate a received envelope; raise InvalidEnvelope saying what is wrong."""
        if not isinstance(data, dict):
            raise InvalidEnvelope(f"envelope must be a JSON object, got {type(data).__name__}.")
        version = data.get("v")
        if version != ENVELOPE_VERSION:
            raise InvalidEnvelope(f"unknown envelope version {version!r}; this worker reads v{ENVELOPE_VERSION}.")
        missing = [name for name in ("run_id", "conversation_id", "trace_id", "budget") if name not in data]
        if missing:
            raise InvalidEnvelope(f"envelope lacks {', '.join(missing)}.")
        for name in ("run_id", "conversation_id", "trace_id"):
            if not isinstance(data[name], str) or not data[name]:
                raise InvalidEnvelope(f"{name} must be a non-empty string.")
        hop = data.get("hop", 0)
        if not isinstance(hop, int) or hop < 0:
            raise InvalidEnvelope("hop must be a non-negative integer.")
        path = data.get("path", [])
        if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
            raise InvalidEnvelope("path must be a list of agent names.")
        slip = data.get("slip", [])
        slip_validate(slip)
        payload = data.get("payload", {})
        if not isinstance(payload, dict):
            raise InvalidEnvelope("payload must be an object.")
        known = {"v", "run_id", "conversation_id", "trace_id", "budget", "hop", "path", "slip", "payload", "replay"}
        unknown = set(data) - known
        if unknown:
            raise InvalidEnvelope(f"envelope has unknown fields {sorted(unknown)}.")
        replay = data.get("replay")
        if replay is not None and not isinstance(replay, dict):
            raise InvalidEnvelope("replay must be an object.")
        return cls(
            run_id=data["run_id"],
            conversation_id=data["conversation_id"],
            trace_id=data["trace_id"],
            budget=Budget.from_dict(data["budget"]),
            hop=hop,
            path=list(path),
            slip=[list(e) if isinstance(e, list) else e for e in slip],
            payload=cast(Payload, dict(payload)),
            replay=replay,
        )

    def evolve(self, **changes: Any) -> Envelope:
        return replace(self, **changes)


def slip_validate(slip: Any) -> None:
    """A slip is a list of agent names and lists of two or more names run in parallel;
    a parallel entry is always followed by one agent that joins the branches."""
    if not isinstance(slip, list):
        raise InvalidEnvelope("slip must be a list.")
    for index, entry in enumerate(slip):
        if isinstance(entry, str) and entry:
            continue
        if isinstance(entry, list) and len(entry) >= 2 and all(isinstance(n, str) and n for n in entry):
            if len(set(entry)) != len(entry):
                raise InvalidEnvelope(f"slip entry {index} names an agent twice.")
            if index + 1 >= len(slip) or not isinstance(slip[index + 1], str):
                raise InvalidEnvelope(f"slip entry {index} runs agents in parallel but no single agent joins them.")
            continue
        raise InvalidEnvelope(f"slip entry {index} must be an agent name or a list of two or more names.")


def envelopes_merge(envelopes: list[Envelope]) -> Envelope:
    """Join the envelopes of parallel branches (a chord's results) into one.

    All branches started from the same envelope; each visited one agent and added
    its own payload keys. The join keeps the branches' order as in the slip.
    """
    if not envelopes:
        raise InvalidEnvelope("cannot join an empty list of envelopes.")
    first = envelopes[0]
    for other in envelopes[1:]:
        if (other.run_id, other.trace_id) != (first.run_id, first.trace_id):
            raise InvalidEnvelope("cannot join envelopes of different runs.")
    common = _common_prefix([e.path for e in envelopes])
    path = list(common)
    payload = Payload()
    for envelope in envelopes:
        path.extend(envelope.path[len(common) :])
        payload.update(envelope.payload)
    group_entry = first.slip[0] if first.slip else None
    if not isinstance(group_entry, list):
        raise InvalidEnvelope("joined envelopes do not come from a parallel slip entry.")
    return first.evolve(
        hop=len(path),
        path=path,
        slip=list(first.slip[1:]),
        payload=payload,
        budget=max(envelopes, key=lambda e: e.budget.tokens_used).budget,
    )


def _common_prefix(paths: list[list[str]]) -> list[str]:
    prefix: list[str] = []
    for names in zip(*paths, strict=False):
        if len(set(names)) != 1:
            break
        prefix.append(names[0])
    return prefix
