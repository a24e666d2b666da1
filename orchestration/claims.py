"""The step claim as a pure function: what one delivery of an agent message may do with its step.

Every delivery of an agent message (first send, redelivery after a crash, a duplicate, a retry) asks
`claim_decide` under the run's row lock. It is a function of the facts alone — the run's status, the step's
state (if the step exists), the guard a new step would break, the time, this delivery's task id and the agent's
retry limit — so every branch is tested on its own (tests/test_claims.py). `orchestration.steps` loads the facts,
calls it and applies the decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestration.models import Run, Step
from project.errors import RunHalted


@dataclass(frozen=True)
class StepState:
    """What the claim needs to know of an existing step."""

    status: Step.Status
    """Its status (running, retrying, completed, failed)."""
    lease_expires_at: datetime | None
    """While a try is under way, no other delivery may start one before this."""
    attempt: int
    """Tries made so far."""
    retry_base: int
    """Tries made before the last dead-letter replay: retries are counted from here."""
    holder_task_id: str | None
    """The task id of the try still marked running, if any."""
    output: Any = None
    """The recorded result of a completed step."""


# --- Decisions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimNew:
    """No step yet and no guard stands in the way: create it, with attempt 1, and run the agent."""


@dataclass(frozen=True)
class ClaimAgain:
    """The step exists but nobody is on it (its lease ran out, or it is waiting to retry): take it over with a new
    attempt (tries still marked running are abandoned) and run the agent."""

    attempt: int
    """The number of the new attempt."""


@dataclass(frozen=True)
class Recorded:
    """The step is done: return its recorded output (an idempotent receiver) and continue as it did."""

    output: Any
    """The step's recorded output: {"envelope": ..., "control": ...}."""


@dataclass(frozen=True)
class Skip:
    """Do nothing and acknowledge the message: the run is not active, or the step failed for good."""

    reason: str


@dataclass(frozen=True)
class Halt:
    """A guard stops the run before this new step (deadline, budget, loop): the run goes to a person."""

    error: RunHalted


@dataclass(frozen=True)
class Duplicate:
    """Another message for this step is under way (a re-dispatch, a duplicate send): drop this one. The holder
    carries the flow on; if it dies, its own message is redelivered."""

    holder_task_id: str


@dataclass(frozen=True)
class Busy:
    """This same message is under way while its lease runs (the broker handed a copy back while the first still
    runs, or its worker died and the message came back before the loss was recorded): drop this copy. A live holder
    finishes the step; a dead one's loss is recorded by its worker or the supervisor, which resumes the step."""


@dataclass(frozen=True)
class Exhausted:
    """Every try so far died mid-step (the lease ran out each time): give up; the message goes to the dead letters."""

    attempts: int
    """Tries made."""


ClaimDecision = ClaimNew | ClaimAgain | Recorded | Skip | Halt | Duplicate | Busy | Exhausted


def claim_decide(
    *,
    run_status: str,
    step: StepState | None,
    guard: RunHalted | None,
    now: datetime,
    task_id: str,
    max_retries: int,
) -> ClaimDecision:
    """What this delivery does with its step.

    `guard` is what a new step would break (`budgets.guard_check`); it matters only when there is no step yet.
    `max_retries` is the agent's: a step whose tries since `retry_base` exceed it is exhausted.
    """
    if run_status not in Run.ACTIVE:
        return Skip(reason=f"run is {run_status}")
    if step is None:
        return Halt(error=guard) if guard is not None else ClaimNew()
    if step.status == Step.Status.COMPLETED:
        return Recorded(output=step.output)
    if step.status == Step.Status.FAILED:
        return Skip(reason="step failed permanently")
    if step.status == Step.Status.RUNNING and step.lease_expires_at is not None and step.lease_expires_at > now:
        if step.holder_task_id is not None and step.holder_task_id != task_id:
            return Duplicate(holder_task_id=step.holder_task_id)
        return Busy()
    if step.attempt - step.retry_base > max_retries:
        return Exhausted(attempts=step.attempt)
    return ClaimAgain(attempt=step.attempt + 1)
