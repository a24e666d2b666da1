"""What a replay run carries in its envelope (`Envelope.replay`): which run it replays and what runs live."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from project.errors import InvalidEnvelope


@dataclass(frozen=True)
class ReplayPlan:
    """A replay's instructions to the task wrapper (`orchestration.replay_steps`)."""

    of: str
    """The recorded run replayed (its id)."""
    live: dict[str, str] = field(default_factory=dict)
    """Agents that run live, by name, with the version to run (`--agent NAME@VERSION`, or the agent's own version when
    its prompt or model changed). Every other agent answers from its recording."""
    prompts: dict[str, str] = field(default_factory=dict)
    """Prompt versions live agents complete instead of their own, by prompt name (`--prompt NAME@VERSION`)."""
    model: str = ""
    """The model live agents use ('' for the configured one: `--model`)."""
    as_of: str = ""
    """When the replayed run started (ISO 8601): the ledger is read as it was then."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplayPlan:
        try:
            plan = cls(
                of=str(data["of"]),
                live={str(k): str(v) for k, v in dict(data.get("live") or {}).items()},
                prompts={str(k): str(v) for k, v in dict(data.get("prompts") or {}).items()},
                model=str(data.get("model") or ""),
                as_of=str(data.get("as_of") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEnvelope(f"replay plan is malformed: {exc!r}.") from exc
        return plan

    @property
    def as_of_time(self) -> datetime | None:
        return datetime.fromisoformat(self.as_of) if self.as_of else None
