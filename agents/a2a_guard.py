"""Our A2A extension: one loop guard and one budget across agent systems (docs/a2a.md).

A2A carries no hop count, no path and no budget, so two systems that delegate to each other can loop forever and
spend without limit. Every A2A message Switchboard sends carries, in `message.metadata[LOOP_GUARD_URI]`, a
`LoopGuard`: how many systems the request has crossed, which ones (stable instance ids, settings `A2A_INSTANCE_ID`),
and what the whole request may still spend. A receiving Switchboard refuses a request whose path already holds
itself or whose hops or budget are spent (the task ends `rejected`, with the reason), caps its own run's budget by
what is left, and reports what it spent in the task's metadata under the same key (`LoopGuardSpent`).

The extension is declared in the agent card's `capabilities.extensions` (not required: a peer that does not know
it can still call us; its requests count as the first hop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard

LOOP_GUARD_URI = "urn:switchboard:a2a:loop-guard:v1"
"""The extension's identifier (a URN: it names the contract, it is not fetched)."""

MAX_PATH = 32
"""A path longer than this is refused as malformed whatever the hop limit says: it bounds what we store."""


#: The reasons a receiver refuses a request for (its run's `reason`; the A2A task ends `rejected`).
REFUSAL_CODES = ("a2a_loop_detected", "a2a_hop_limit", "a2a_budget_spent")


class LoopGuardInvalid(ValueError):
    """The extension's metadata is there but malformed."""


@dataclass(frozen=True)
class LoopGuard:
    """What a delegated request carries across systems."""

    hops: int
    """Systems crossed so far: the first sender's request arrives with 1."""
    max_hops: int
    """The most systems the request may cross, set by the first sender; a receiver at `hops > max_hops` refuses."""
    path: list[str] = field(default_factory=list)
    """Instance ids of the systems the request went through, first sender first (this receiver not yet in it)."""
    tokens_left: int | None = None
    """LLM tokens the request may still spend, over every system after this point; None: not limited."""
    cost_left_usd: Decimal | None = None
    """Cost in US dollars the request may still spend; None: not limited."""

    def to_json(self) -> dict[str, Any]:
        """The extension's object (what goes under LOOP_GUARD_URI)."""
        data: dict[str, Any] = {"hops": self.hops, "maxHops": self.max_hops, "path": list(self.path)}
        if self.tokens_left is not None:
            data["tokensLeft"] = self.tokens_left
        if self.cost_left_usd is not None:
            data["costLeftUsd"] = str(self.cost_left_usd)
        return data

    def to_metadata(self) -> dict[str, Any]:
        return {LOOP_GUARD_URI: self.to_json()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> LoopGuard | None:
        """The guard in a message's metadata; None if the sender did not use the extension."""
        data = _whole_numbers((metadata or {}).get(LOOP_GUARD_URI))
        if data is None:
            return None
        if not isinstance(data, dict):
            raise LoopGuardInvalid("the loop-guard metadata must be an object.")
        hops, max_hops, path = data.get("hops"), data.get("maxHops"), data.get("path", [])
        if not _count(hops) or not _count(max_hops):
            raise LoopGuardInvalid("hops and maxHops must be whole numbers from 0.")
        if not isinstance(path, list) or len(path) > MAX_PATH or not all(_instance_id(p) for p in path):
            raise LoopGuardInvalid(f"path must be a list of at most {MAX_PATH} instance ids.")
        tokens = data.get("tokensLeft")
        if tokens is not None and not _count(abs(tokens) if isinstance(tokens, int) else tokens):
            raise LoopGuardInvalid("tokensLeft must be a whole number.")
        cost = _decimal(data.get("costLeftUsd"))
        return cls(hops=hops, max_hops=max_hops, path=list(path), tokens_left=tokens, cost_left_usd=cost)

    @classmethod
    def forward(
        cls,
        inbound: LoopGuard | None,
        *,
        instance_id: str,
        max_hops: int,
        tokens_left: int | None,
        cost_left_usd: Decimal | None,
    ) -> LoopGuard:
        """What a system sends when it delegates (a remote agent step, `agents.remote`): one hop more than the request
        it is serving arrived with (`inbound`; None when the request started here: the first hop), itself added to the
        path, the first sender's `maxHops` (`max_hops` when it is the first sender), and the smaller of what the
        inbound request and its own run may still spend (never below zero)."""
        if inbound is not None:
            tokens_left = _least(inbound.tokens_left, tokens_left)
            cost_left_usd = _least(inbound.cost_left_usd, cost_left_usd)
        return cls(
            hops=inbound.hops + 1 if inbound is not None else 1,
            max_hops=inbound.max_hops if inbound is not None else max_hops,
            path=[*(inbound.path if inbound is not None else []), instance_id],
            tokens_left=max(tokens_left, 0) if tokens_left is not None else None,
            cost_left_usd=max(cost_left_usd, Decimal(0)) if cost_left_usd is not None else None,
        )

    def refusal(self, *, instance_id: str) -> tuple[str, str] | None:
        """Why a receiver with this instance id refuses the request: (reason code, sentence), or None. The codes are
        `REFUSAL_CODES`; the sentence names instance ids only (no content)."""
        if instance_id in self.path:
            return "a2a_loop_detected", f"this request already went through {instance_id}: {' -> '.join(self.path)}."
        if self.hops > self.max_hops:
            return "a2a_hop_limit", f"the request crossed {self.hops} systems; its limit is {self.max_hops}."
        if self.tokens_left is not None and self.tokens_left <= 0:
            return "a2a_budget_spent", "the request has no tokens left to spend."
        if self.cost_left_usd is not None and self.cost_left_usd <= 0:
            return "a2a_budget_spent", "the request has no budget left to spend."
        return None


@dataclass(frozen=True)
class LoopGuardSpent:
    """What a receiver reports in the task's metadata: what it spent on the request."""

    tokens: int
    """LLM tokens its run used."""
    cost_usd: Decimal
    """Its run's LLM cost in US dollars."""

    def to_metadata(self) -> dict[str, Any]:
        return {LOOP_GUARD_URI: {"spentTokens": self.tokens, "spentCostUsd": str(self.cost_usd)}}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> LoopGuardSpent | None:
        data = _whole_numbers((metadata or {}).get(LOOP_GUARD_URI))
        if not isinstance(data, dict) or "spentTokens" not in data:
            return None
        tokens, cost = data.get("spentTokens"), _decimal(data.get("spentCostUsd", "0"))
        if not _count(tokens) or cost is None or cost < 0:
            raise LoopGuardInvalid("spentTokens and spentCostUsd must be amounts from 0.")
        return cls(tokens=tokens, cost_usd=cost)


def _whole_numbers(data: Any) -> Any:
    """Metadata travels as a protobuf Struct, whose numbers are doubles: 2 arrives as 2.0. Whole doubles back to int."""
    if isinstance(data, dict):
        return {key: _whole_numbers(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_whole_numbers(value) for value in data]
    if isinstance(data, float) and data.is_integer():
        return int(data)
    return data


def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1_000_000_000


def _instance_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 100 and value.isprintable()


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise LoopGuardInvalid("an amount must be a decimal string.")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise LoopGuardInvalid(f"{value!r} is not an amount.") from exc
    if not amount.is_finite() or abs(amount) > 1_000_000:
        raise LoopGuardInvalid(f"{value!r} is not an amount.")
    return amount


def _least(first: Any, second: Any) -> Any:
    """The smaller of two limits, where None is no limit."""
    if first is None or second is None:
        return second if first is None else first
    return min(first, second)


def refusal_of(metadata: dict[str, Any] | None) -> str | None:
    """The loop guard's reason code a rejected task carries in its metadata (`{"refused": code}` under our key), if
    it is one of ours."""
    data = (metadata or {}).get(LOOP_GUARD_URI)
    code = data.get("refused") if isinstance(data, dict) else None
    return code if code in REFUSAL_CODES else None
