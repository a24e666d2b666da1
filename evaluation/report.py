"""The evaluation's report: pass rates per check (with Wilson 95% intervals) and per case, tokens, cost and latency;
as JSON (the file `manage.py eval --report` writes and `--baseline` reads), and compared with a baseline report.

A regression is beyond noise when:
- a check's pass rate fell and its confidence interval no longer overlaps the baseline's;
- with a deterministic provider (`offline`) on both sides, any case that passed in the baseline now fails (one
  deterministic failure is not noise);
- the cost, or the tokens, of the cases both reports ran went up by more than the tolerance (a fraction).
Latency is reported, never compared: it measures the machine as much as the system.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from evaluation.cases import GoldenCase
from evaluation.checks import Check, CheckResult

#: The providers whose answers are the same for the same input: a case's failure is never noise.
DETERMINISTIC_PROVIDERS = ("offline",)
#: z for a 95% confidence interval.
Z_95 = 1.96


@dataclass
class CheckStats:
    """One check over every case (and repeat) that states it."""

    passed: int
    """Executions where it held."""
    total: int
    """Executions where it was checked."""
    low: float = 0.0
    """Lower end of the Wilson 95% interval of the pass rate."""
    high: float = 1.0
    """Upper end of that interval."""

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 1.0


@dataclass
class CaseSummary:
    """One case over its repeats."""

    title: str
    """The case's title."""
    runs: int
    """How many times it ran (`--repeat`)."""
    passes: int
    """How many of those passed every check."""
    failed: dict[str, str] = field(default_factory=dict)
    """Failed checks (of the last failing repeat), with what happened."""
    tokens: int = 0
    """Tokens per repeat (mean, rounded)."""
    cost_usd: str = "0"
    """Cost per repeat (mean), US dollars, as a decimal string."""
    latency_ms: list[int] = field(default_factory=list)
    """Every run's latency (all turns, all repeats)."""

    @property
    def passed(self) -> bool:
        return self.passes == self.runs


@dataclass
class Report:
    """The whole evaluation."""

    provider: str
    """LLM_PROVIDER the runs used."""
    model: str
    """LLM_MODEL (the offline model's name with the offline provider)."""
    repeat: int
    """Runs per case."""
    database: str
    """The database's vendor (postgresql, sqlite): their searches rank passages differently at the margin."""
    checks: dict[str, CheckStats]
    """Per check, in `Check` order."""
    cases: dict[str, CaseSummary]
    """Per case id, in the order run."""
    tokens: int = 0
    """Tokens of all cases (one repeat's worth: means summed)."""
    cost_usd: str = "0"
    """Cost of all cases (one repeat's worth), US dollars."""
    latency_p50_ms: int = 0
    """Median run latency."""
    latency_p95_ms: int = 0
    """95th-percentile run latency."""

    @property
    def deterministic(self) -> bool:
        return self.provider in DETERMINISTIC_PROVIDERS

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["deterministic"] = self.deterministic
        for name, stats in self.checks.items():
            data["checks"][name]["rate"] = round(stats.rate, 4)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        fields = {key: data[key] for key in ("provider", "model", "repeat", "database", "tokens", "cost_usd")}
        return cls(
            **fields,
            latency_p50_ms=data.get("latency_p50_ms", 0),
            latency_p95_ms=data.get("latency_p95_ms", 0),
            checks={name: CheckStats(**_known(CheckStats, s)) for name, s in data["checks"].items()},
            cases={case_id: CaseSummary(**_known(CaseSummary, s)) for case_id, s in data["cases"].items()},
        )


def _known(kind: Any, data: dict[str, Any]) -> dict[str, Any]:
    names = kind.__dataclass_fields__
    return {key: value for key, value in data.items() if key in names}


def wilson(passed: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a pass rate (0 to 1 when nothing was checked)."""
    if total == 0:
        return 0.0, 1.0
    rate = passed / total
    denominator = 1 + z * z / total
    centre = (rate + z * z / (2 * total)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, round(centre - half, 4)), min(1.0, round(centre + half, 4))


def percentile(values: list[int], fraction: float) -> int:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class Execution:
    """One run of one case: its checks and what it spent."""

    case: GoldenCase
    """The case."""
    results: list[CheckResult]
    """Its checks."""
    tokens: int
    """Tokens of its runs."""
    cost_usd: Decimal
    """Cost of its runs."""
    latencies_ms: list[int]
    """Each run's latency."""


def report_build(executions: list[Execution], *, provider: str, model: str, repeat: int, database: str) -> Report:
    """The report of all executions (each case `repeat` times)."""
    checks = {check.value: CheckStats(passed=0, total=0) for check in Check}
    cases: dict[str, CaseSummary] = {}
    spent: dict[str, tuple[int, Decimal]] = {}
    for execution in executions:
        summary = cases.setdefault(execution.case.id, CaseSummary(title=execution.case.title, runs=0, passes=0))
        summary.runs += 1
        failed = {r.check.value: r.detail for r in execution.results if not r.passed}
        summary.passes += not failed
        summary.failed = failed or summary.failed
        summary.latency_ms += execution.latencies_ms
        tokens, cost = spent.get(execution.case.id, (0, Decimal("0")))
        spent[execution.case.id] = (tokens + execution.tokens, cost + execution.cost_usd)
        for result in execution.results:
            stats = checks[result.check.value]
            stats.total += 1
            stats.passed += result.passed
    for case_id, summary in cases.items():
        tokens, cost = spent[case_id]
        summary.tokens = round(tokens / summary.runs)
        summary.cost_usd = str((cost / summary.runs).quantize(Decimal("0.000001")))
    for stats in checks.values():
        stats.low, stats.high = wilson(stats.passed, stats.total)
    latencies = [ms for summary in cases.values() for ms in summary.latency_ms]
    return Report(
        provider=provider,
        model=model,
        repeat=repeat,
        database=database,
        checks={name: stats for name, stats in checks.items() if stats.total},
        cases=cases,
        tokens=sum(summary.tokens for summary in cases.values()),
        cost_usd=str(sum((Decimal(summary.cost_usd) for summary in cases.values()), Decimal("0"))),
        latency_p50_ms=percentile(latencies, 0.50),
        latency_p95_ms=percentile(latencies, 0.95),
    )


def regressions(report: Report, baseline: Report, *, cost_tolerance: float) -> list[str]:
    """What got worse beyond noise (sentences naming the check or case); empty when nothing did."""
    found = []
    for name, stats in report.checks.items():
        before = baseline.checks.get(name)
        if before is not None and stats.rate < before.rate and stats.high < before.low:
            found.append(
                f"check {name}: pass rate {stats.rate:.0%} [{stats.low:.2f}, {stats.high:.2f}] is below the "
                f"baseline's {before.rate:.0%} [{before.low:.2f}, {before.high:.2f}] beyond noise."
            )
    common = [case_id for case_id in report.cases if case_id in baseline.cases]
    if report.deterministic and baseline.deterministic:
        for case_id in common:
            now, was = report.cases[case_id], baseline.cases[case_id]
            if was.passed and not now.passed:
                failed = "; ".join(f"{check}: {detail}" for check, detail in now.failed.items())
                found.append(f"case {case_id}: passed in the baseline, fails now ({failed}).")
    for measure in ("cost_usd", "tokens"):
        now_total = sum(Decimal(str(getattr(report.cases[c], measure))) for c in common)
        before_total = sum(Decimal(str(getattr(baseline.cases[c], measure))) for c in common)
        if now_total > before_total * Decimal(str(1 + cost_tolerance)) and now_total > before_total:
            found.append(
                f"{measure}: {now_total} for the {len(common)} cases both ran, up from {before_total} "
                f"(more than {cost_tolerance:.0%})."
            )
    return found


def baseline_notes(report: Report, baseline: Report) -> list[str]:
    """What changed without being a regression: new cases, cases gone, cases fixed."""
    notes = [f"new case {c} (not in the baseline)" for c in report.cases if c not in baseline.cases]
    missing = [c for c in baseline.cases if c not in report.cases]
    if missing:
        notes.append(f"{len(missing)} case(s) of the baseline were not run (e.g. {', '.join(missing[:3])})")
    notes += [
        f"case {c} fails in the baseline and passes now"
        for c, summary in report.cases.items()
        if c in baseline.cases and summary.passed and not baseline.cases[c].passed
    ]
    return notes
