"""A run's budgets: its limits, what it has spent, and the guards a new step must pass.

Pure functions over a snapshot of the run (`RunBudget`): no database, no clock of their own. The step claim
(`orchestration.steps`) takes the snapshot under the run's row lock and asks `guard_check`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from agents.envelope import Budget
from orchestration.models import Run
from project.errors import BudgetExceeded, DeadlineExceeded, LoopDetected, RunHalted


def budget_defaults() -> dict[str, Any]:
    """A new run's limits (settings `RUN_*`); `run_start(budget=...)` overrides any of these keys."""
    return {
        "max_tokens": settings.RUN_MAX_TOKENS,
        "max_cost_usd": settings.RUN_MAX_COST_USD,
        "max_hops": settings.RUN_MAX_HOPS,
        "deadline_seconds": settings.RUN_DEADLINE_SECONDS,
        "max_agent_visits": settings.RUN_MAX_AGENT_VISITS,
    }


def budget_limits(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The defaults with `overrides` applied; ValueError naming any unknown key."""
    defaults = budget_defaults()
    unknown = set(overrides or {}) - set(defaults)
    if unknown:
        raise ValueError(f"unknown budget keys {sorted(unknown)}; known: {sorted(defaults)}.")
    return defaults | (overrides or {})


@dataclass(frozen=True)
class RunBudget:
    """A run's limits and spending at one moment, as its row holds them."""

    max_tokens: int
    """LLM tokens (input + output) the run may use."""
    max_cost_usd: Decimal
    """LLM cost in US dollars the run may use."""
    max_hops: int
    """Agent executions the run may make."""
    max_agent_visits: int
    """Times one agent may appear on the run's path."""
    deadline_at: datetime
    """When the run times out."""
    tokens_used: int
    """Tokens spent so far."""
    cost_usd: Decimal
    """Cost so far, in US dollars."""

    @classmethod
    def of(cls, run: Run) -> RunBudget:
        limits = run.budget
        return cls(
            max_tokens=int(limits["max_tokens"]),
            max_cost_usd=Decimal(str(limits["max_cost_usd"])),
            max_hops=int(limits["max_hops"]),
            max_agent_visits=int(limits["max_agent_visits"]),
            deadline_at=run.deadline_at,
            tokens_used=run.tokens_used,
            cost_usd=Decimal(run.cost_usd),
        )


def guard_check(budget: RunBudget, *, hop: int, path: list[str], agent_name: str, now: datetime) -> RunHalted | None:
    """The first guard a new step (number `hop`, of `agent_name` after `path`) would break: deadline, hops, loop,
    tokens, cost — or None when it may run. Spending is checked as it stands before the step."""
    if now >= budget.deadline_at:
        return DeadlineExceeded(f"the run's deadline {budget.deadline_at.isoformat()} has passed.")
    if hop > budget.max_hops:
        return BudgetExceeded(f"hops: step {hop} would exceed the limit of {budget.max_hops}.", code="budget_hops")
    visits = path.count(agent_name)
    if visits >= budget.max_agent_visits:
        cycle = " -> ".join([*path, agent_name])
        return LoopDetected(f"{agent_name} would run {visits + 1} times (limit {budget.max_agent_visits}): {cycle}.")
    if budget.tokens_used > budget.max_tokens:
        return BudgetExceeded(f"tokens: used {budget.tokens_used}, limit {budget.max_tokens}.", code="budget_tokens")
    if budget.cost_usd > budget.max_cost_usd:
        return BudgetExceeded(
            f"cost: used ${budget.cost_usd:.6f}, limit ${budget.max_cost_usd:.6f}.", code="budget_cost"
        )
    return None


def budget_snapshot(run: Run) -> Budget:
    """The run's limits and spending, as carried in the envelope (JSON numbers)."""
    return Budget(
        max_tokens=int(run.budget["max_tokens"]),
        max_cost_usd=float(run.budget["max_cost_usd"]),
        max_hops=int(run.budget["max_hops"]),
        deadline=run.deadline_at.timestamp(),
        tokens_used=run.tokens_used,
        cost_used_usd=float(run.cost_usd),
    )


def budget_for_review_resume(limits: dict[str, Any], *, tokens_used: int, cost_usd: Decimal, hops_used: int) -> dict:
    """A run's limits raised to what it has already spent, and one more visit per agent: a person decided to go on,
    so the guards must not stop their decision."""
    return {
        **limits,
        "max_tokens": max(int(limits["max_tokens"]), tokens_used),
        "max_cost_usd": max(float(limits["max_cost_usd"]), float(cost_usd)),
        "max_hops": max(int(limits["max_hops"]), hops_used + 1),
        "max_agent_visits": int(limits["max_agent_visits"]) + 1,
    }
