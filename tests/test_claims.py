"""The step claim, as a table: every branch of `claim_decide`, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest

from orchestration.claims import (
    Busy,
    ClaimAgain,
    ClaimDecision,
    ClaimNew,
    Duplicate,
    Exhausted,
    Halt,
    Recorded,
    Skip,
    StepState,
    claim_decide,
)
from orchestration.models import Run, Step
from project.errors import BudgetExceeded

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIVE = NOW + timedelta(seconds=30)
EXPIRED = NOW - timedelta(seconds=1)
GUARD = BudgetExceeded("hops: step 9 would exceed the limit of 8.", code="budget_hops")
OUTPUT = {"envelope": {"v": 1}, "control": "continue"}
MAX_RETRIES = 3
ME, OTHER = "task-me", "task-other"


def step(status: str, *, lease: datetime | None = None, attempt: int = 1, base: int = 0, holder: str | None = None):
    return StepState(
        status=Step.Status(status),
        lease_expires_at=lease,
        attempt=attempt,
        retry_base=base,
        holder_task_id=holder,
        output=OUTPUT if status == "completed" else None,
    )


CASES = [
    # (why, run status, step, guard, expected)
    ("a new step", "running", None, None, ClaimNew()),
    ("the run's first step", "queued", None, None, ClaimNew()),
    ("a guard stops a new step", "running", None, GUARD, Halt(error=GUARD)),
    ("a guard does not matter once the step exists", "running", step("completed"), GUARD, Recorded(OUTPUT)),
    ("a done step returns its record", "running", step("completed"), None, Recorded(output=OUTPUT)),
    ("a step failed for good", "running", step("failed"), None, Skip(reason="step failed permanently")),
    ("a stopped run", "awaiting_review", None, None, Skip(reason="run is awaiting_review")),
    ("a stopped run, its step done", "timed_out", step("completed"), None, Skip(reason="run is timed_out")),
    ("a finished run", "completed", step("running", lease=LIVE, holder=ME), None, Skip(reason="run is completed")),
    (
        "another message holds the step",
        "running",
        step("running", lease=LIVE, holder=OTHER),
        None,
        Duplicate(holder_task_id=OTHER),
    ),
    (
        "the same message while its lease runs",
        "running",
        step("running", lease=LIVE, holder=ME),
        None,
        Busy(),
    ),
    ("a live lease with no try marked running", "running", step("running", lease=LIVE), None, Busy()),
    (
        "the lease ran out: take it over",
        "running",
        step("running", lease=EXPIRED, holder=OTHER),
        None,
        ClaimAgain(attempt=2),
    ),
    ("a lease ending now has ended", "running", step("running", lease=NOW, holder=OTHER), None, ClaimAgain(attempt=2)),
    ("waiting to retry", "running", step("retrying", attempt=2), None, ClaimAgain(attempt=3)),
    (
        "the last allowed try",
        "running",
        step("retrying", attempt=MAX_RETRIES),
        None,
        ClaimAgain(attempt=MAX_RETRIES + 1),
    ),
    (
        "every try died",
        "running",
        step("running", lease=EXPIRED, attempt=MAX_RETRIES + 1),
        None,
        Exhausted(attempts=MAX_RETRIES + 1),
    ),
    (
        "tries counted since the last replay",
        "running",
        step("retrying", attempt=5, base=4),
        None,
        ClaimAgain(attempt=6),
    ),
    (
        "replayed, and every try since died",
        "running",
        step("running", lease=EXPIRED, attempt=8, base=4),
        None,
        Exhausted(attempts=8),
    ),
]


@pytest.mark.parametrize(("why", "run_status", "state", "guard", "expected"), CASES, ids=[c[0] for c in CASES])
def test_claim(why: str, run_status: str, state: StepState | None, guard, expected: ClaimDecision) -> None:
    decision = claim_decide(
        run_status=run_status, step=state, guard=guard, now=NOW, task_id=ME, max_retries=MAX_RETRIES
    )
    assert decision == expected, why


def test_the_table_covers_every_decision_and_run_status() -> None:
    assert {type(case[-1]) for case in CASES} == set(get_args(ClaimDecision))
    assert {case[1] for case in CASES} | {"failed", "cancelled"} == set(Run.Status.values)


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_no_delivery_works_on_a_run_that_has_ended(status: str) -> None:
    for state in (None, step("running", lease=EXPIRED), step("retrying")):
        assert claim_decide(
            run_status=status, step=state, guard=None, now=NOW, task_id=ME, max_retries=MAX_RETRIES
        ) == Skip(reason=f"run is {status}")
