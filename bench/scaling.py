"""The capacity model (docs/scaling.md): from measured per-conversation costs (bench/cost.py) to capacity and sizing.

Pure functions: no I/O but `main`, which reads a cost run's JSON and prints the model. The model is CPU time: a
conversation costs so many CPU-ms in the web server and workers (which scale out: more hosts), in PostgreSQL (one
primary: scales up, to a point) and in Redis (executes commands on one thread: one core). Capacity is cores over
cost; the first resource to saturate as a deployment grows is the singleton with the lowest ceiling.

Usage: python -m bench.scaling [bench/results/cost.json]
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class ConversationCost:
    """What one conversation costs, measured (CPU in ms; the rest counts)."""

    web_cpu_ms: float
    worker_cpu_ms: float
    postgres_cpu_ms: float  # backends serving the web server and the workers, and the background processes
    redis_cpu_ms: float
    statements: float
    redis_commands: float
    stored_bytes: float = 0.0  # row data written (Run, Step, StepAttempt, Message, Conversation), no indexes

    @property
    def app_cpu_ms(self) -> float:
        return self.web_cpu_ms + self.worker_cpu_ms

    @property
    def total_cpu_ms(self) -> float:
        return self.app_cpu_ms + self.postgres_cpu_ms + self.redis_cpu_ms

    @classmethod
    def from_cost(cls, cost: dict[str, Any]) -> ConversationCost:
        """From `bench.cost.bench_cost`'s result (its Switchboard side)."""
        ours = cost["switchboard"]
        cpu = ours["cpu_ms"]
        return cls(
            web_cpu_ms=cpu["front"],
            worker_cpu_ms=cpu["workers"],
            postgres_cpu_ms=cpu["postgres (web)"] + cpu["postgres (workers)"] + cpu["postgres (background)"],
            redis_cpu_ms=cpu["redis"],
            statements=ours["statements"]["total"],
            redis_commands=ours["redis_commands"],
            stored_bytes=sum(table["bytes"] for table in ours.get("stored", {}).values()),
        )


@dataclass(frozen=True)
class Assumptions:
    """What the model assumes rather than measures (docs/scaling.md says why each)."""

    peak_factor: float = 3.0  # the busiest hour's rate over the day's average rate
    utilisation: float = 0.65  # the share of each core planned to be busy at peak (headroom for bursts, failover)
    host_cores: int = 16  # cores of a worker host
    postgres_max_cores: int = 64  # the largest single primary considered
    redis_max_cores: float = 1.0  # Redis runs commands on one thread
    connections_per_app_core: float = 2.0  # a prefork child's persistent connection, pools of thread workers/web
    direct_connections_max: int = 300  # above this, PgBouncer (transaction pooling) in front of PostgreSQL
    retention_days: int = 30  # steps and attempts kept online, then their partitions dropped
    storage_overhead: float = 2.5  # indexes, page fill, dead tuples and TOAST over the rows' own bytes


def conversations_per_day_per_core(cost: ConversationCost) -> float:
    """Conversations a day per core when every process shares the cores (one machine, as the bench runs)."""
    return SECONDS_PER_DAY * 1000 / cost.total_cpu_ms


def predicted_throughput(cpu_ms_per_conversation: float, cores: float) -> float:
    """Conversations per second that `cores` fully busy can serve at that cost (CPU-bound)."""
    return cores * 1000 / cpu_ms_per_conversation


def ceilings(cost: ConversationCost, assumptions: Assumptions) -> dict[str, float]:
    """Conversations per second (at planned utilisation) each non-scale-out resource allows."""
    return {
        "redis": assumptions.utilisation * assumptions.redis_max_cores * 1000 / cost.redis_cpu_ms,
        "postgres": assumptions.utilisation * assumptions.postgres_max_cores * 1000 / cost.postgres_cpu_ms,
    }


def first_to_saturate(cost: ConversationCost, assumptions: Assumptions) -> str:
    """The resource that saturates first as worker hosts are added: the singleton with the lowest ceiling."""
    limits = ceilings(cost, assumptions)
    return min(limits, key=lambda name: limits[name])


def sizing(conversations_per_day: float, cost: ConversationCost, assumptions: Assumptions) -> dict[str, Any]:
    """What a deployment serving `conversations_per_day` needs at its peak hour."""
    average = conversations_per_day / SECONDS_PER_DAY
    peak = average * assumptions.peak_factor
    app_cores = peak * cost.app_cpu_ms / 1000 / assumptions.utilisation
    postgres_cores = peak * cost.postgres_cpu_ms / 1000 / assumptions.utilisation
    redis_cores = peak * cost.redis_cpu_ms / 1000 / assumptions.utilisation
    connections = math.ceil(app_cores * assumptions.connections_per_app_core)
    stored_per_day = conversations_per_day * cost.stored_bytes * assumptions.storage_overhead
    return {
        "conversations_per_day": conversations_per_day,
        "average_per_s": average,
        "peak_per_s": peak,
        "app_cores": app_cores,
        "worker_hosts": max(1, math.ceil(app_cores / assumptions.host_cores)),
        "postgres_cores": postgres_cores,
        "postgres_fits_one_primary": postgres_cores <= assumptions.postgres_max_cores,
        "redis_cores": redis_cores,
        "redis_fits_one_instance": redis_cores <= assumptions.redis_max_cores,
        "statements_per_s_peak": peak * cost.statements,
        "redis_commands_per_s_peak": peak * cost.redis_commands,
        "postgres_connections": connections,
        "pgbouncer": connections > assumptions.direct_connections_max,
        "stored_gb_per_day": stored_per_day / 1e9,
        "stored_gb_retained": stored_per_day * assumptions.retention_days / 1e9,
    }


def model(cost: ConversationCost, assumptions: Assumptions | None = None) -> dict[str, Any]:
    """Everything docs/scaling.md reports, from one cost."""
    assumptions = assumptions or Assumptions()
    return {
        "cost": {**asdict(cost), "app_cpu_ms": cost.app_cpu_ms, "total_cpu_ms": cost.total_cpu_ms},
        "assumptions": asdict(assumptions),
        "conversations_per_day_per_core": conversations_per_day_per_core(cost),
        "conversations_per_day_per_app_core": SECONDS_PER_DAY * 1000 / cost.app_cpu_ms,
        "ceilings_per_s": ceilings(cost, assumptions),
        "first_to_saturate": first_to_saturate(cost, assumptions),
        "sizing": {label: sizing(daily, cost, assumptions) for label, daily in (("1M", 1e6), ("50M", 50e6))},
    }


def describe(result: dict[str, Any]) -> str:
    cost, lines = result["cost"], []
    lines.append(
        f"cost per conversation: {cost['total_cpu_ms']:.1f} CPU-ms (web {cost['web_cpu_ms']:.1f}, workers "
        f"{cost['worker_cpu_ms']:.1f}, PostgreSQL {cost['postgres_cpu_ms']:.1f}, Redis {cost['redis_cpu_ms']:.1f}), "
        f"{cost['statements']:.0f} statements, {cost['redis_commands']:.0f} Redis commands, "
        f"{cost['stored_bytes'] / 1000:.1f} kB of rows"
    )
    lines.append(
        f"conversations/day per core (all processes on the same cores): "
        f"{result['conversations_per_day_per_core']:,.0f}; "
        f"per app core: {result['conversations_per_day_per_app_core']:,.0f}"
    )
    limits = ", ".join(f"{name} {value:,.0f}/s" for name, value in result["ceilings_per_s"].items())
    lines.append(f"ceilings of the singletons: {limits}; first to saturate: {result['first_to_saturate']}")
    lines += ["", "| | 1M/day | 50M/day |", "|---|---|---|"]
    small, large = result["sizing"]["1M"], result["sizing"]["50M"]
    for key in small:
        a, b = small[key], large[key]
        cell = (lambda v: f"{v:,.1f}" if isinstance(v, float) else str(v)) if not isinstance(a, bool) else str
        lines.append(f"| {key} | {cell(a)} | {cell(b)} |")
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "cost.json")
    cost = ConversationCost.from_cost(json.loads(path.read_text())["cost"])
    print(describe(model(cost)))


if __name__ == "__main__":
    main()
