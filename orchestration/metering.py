"""Counting what happens to runs, steps, reviews and dead letters (`project.metrics`), once it is committed.

Each function is called where the event is recorded, inside its transaction; the count is taken after the commit
(`transaction.on_commit`), so a rolled-back attempt counts nothing. A replay's run is not a customer's: its runs are
not counted (its steps and LLM calls are: they are real work and real spend).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from django.db import transaction

from orchestration.models import Run
from project import metrics
from project.errors import PollLater, RunHalted


def _after_commit(update: Callable[[], object]) -> None:
    """Count once the transaction commits; robust: the callbacks registered after it (a run's dispatch) run anyway."""
    transaction.on_commit(lambda: metrics.count(update), robust=True)


def run_started(run: Run) -> None:
    if run.replay_of_id is None:
        _after_commit(lambda: metrics.RUNS_STARTED.inc())


def run_finished(run: Run) -> None:
    """A run ended (completed, failed, timed out, cancelled); a completed one's reply time is observed."""
    if run.replay_of_id is not None:
        return
    status, reason = str(run.status), run.reason
    seconds = (run.finished_at - run.created_at).total_seconds() if run.finished_at else None

    def count() -> None:
        metrics.RUNS_FINISHED.labels(status=status, reason=reason).inc()
        if status == Run.Status.COMPLETED and seconds is not None:
            metrics.REPLY_SECONDS.observe(seconds)

    _after_commit(count)


def run_escalated(run: Run, *, reason: str) -> None:
    if run.replay_of_id is None:
        _after_commit(lambda: metrics.RUNS_ESCALATED.labels(reason=reason).inc())


class StepOutcome(StrEnum):
    """How a step's try ended: the `outcome` label of `switchboard_step_attempts_total`."""

    SUCCEEDED = "succeeded"
    RETRIED = "retried"
    POLLED = "polled"
    POSTPONED = "postponed"
    HALTED = "halted"
    FAILED = "failed"


def step_tried(*, agent: str, outcome: StepOutcome, seconds: float | None = None) -> None:
    """A step's try ended (counted at once: the wrapper calls it after the try's record committed)."""
    metrics.count(lambda: metrics.STEP_ATTEMPTS.labels(agent=agent, outcome=outcome).inc())
    if seconds is not None:
        metrics.count(lambda: metrics.STEP_SECONDS.labels(agent=agent).observe(seconds))


def step_failed(*, agent: str, retry_in: float | None, postponed: bool, error: BaseException) -> None:
    """A step's try ended without a result and was recorded: polled (a remote task is asked again later: the normal
    course), postponed (no fault: a breaker is open), retried, halted (to a person) or failed."""
    if isinstance(error, PollLater):
        outcome = StepOutcome.POLLED
    elif postponed:
        outcome = StepOutcome.POSTPONED
    elif retry_in is not None:
        outcome = StepOutcome.RETRIED
    elif isinstance(error, RunHalted):
        outcome = StepOutcome.HALTED
    else:
        outcome = StepOutcome.FAILED
    step_tried(agent=agent, outcome=outcome)


def review_decided(*, kind: str) -> None:
    _after_commit(lambda: metrics.REVIEW_DECISIONS.labels(kind=kind).inc())


def dead_lettered(*, reason: str) -> None:
    _after_commit(lambda: metrics.DEAD_LETTERS.labels(reason=reason).inc())


def recovered(*, cause: str, runs: int) -> None:
    metrics.count(lambda: metrics.RECOVERIES.labels(cause=cause).inc(runs))
