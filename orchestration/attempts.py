"""A try of a step: the claimed try (`Attempt`), what the task wrapper does with a delivery (`StepStart`), what a try
keeps on its step for the next (`AttemptMemo`, the agents' `StepMemo`), and the attempt rows (one `StepAttempt` per
try).

`orchestration.steps` makes these; `orchestration.runner` switches on `StepStart` with `typing.assert_never`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestration.claims import Busy, Duplicate, Exhausted, Recorded, Skip
from orchestration.models import Step, StepAttempt
from project.errors import PermanentError


class MemoLost(PermanentError):
    """This try no longer holds its step (another delivery took it over, or the step ended): it may not write the
    step's memo, nor act on what it would have written."""

    code = "memo_lost"


def step_key(hop: int, agent_name: str) -> str:
    """A step's key within its run: the same for every delivery of the same message."""
    return f"{hop:03d}.{agent_name}"


@dataclass(frozen=True)
class Attempt:
    """One claimed try of a step: what its end is recorded on."""

    run_id: str
    step_id: int | None
    """None for an atomic agent's new step: it is written once, with its result."""
    attempt_id: int | None
    """The StepAttempt row (None likewise)."""
    number: int
    """1 for the first try."""
    started_at: datetime
    retry_base: int
    """Tries made before the last dead-letter replay: retries are counted from here."""
    task_id: str
    worker: str

    @property
    def tries(self) -> int:
        """Tries since the last dead-letter replay, this one included."""
        return self.number - self.retry_base


@dataclass(frozen=True)
class Proceed:
    """Run the agent; record the try's end on `attempt`."""

    attempt: Attempt


@dataclass(frozen=True)
class Done:
    """The agent ran and its result is recorded (`step_run_atomic`)."""

    output: dict[str, Any]
    attempt: int
    """The number of the try that did it."""


#: What a delivery does, as the task wrapper sees it (for `Exhausted`, it then gives the step up: `step_give_up`).
StepStart = Proceed | Done | Recorded | Skip | Duplicate | Busy | Exhausted


class AtomicTryFailed(Exception):
    """An atomic agent raised: its writes and its claim were rolled back; the caller records the failure of
    `attempt` (`step_fail` writes its rows) as for any other try."""

    def __init__(self, attempt: Attempt, error: Exception) -> None:
        super().__init__(str(error))
        self.attempt = attempt
        self.error = error


def exhausted_error(agent_name: str, attempts: int) -> PermanentError:
    """Why a step whose every try died mid-step was given up (its step's error and the dead letter's)."""
    return PermanentError(f"{agent_name} died mid-step on every one of {attempts} tries.")


@dataclass(frozen=True)
class AttemptMemo:
    """A leased try's `agents.base.StepMemo`: the step record's `memo`, written only while the try holds the step.

    Each `put` is one conditional UPDATE, committed at once (the try holds no transaction while its agent runs): the
    step must still be running this try. A delivery that took the step over (the lease ran out, the worker was taken
    for dead) bumped its attempt number first, so the old try's write matches nothing and raises `MemoLost`."""

    attempt: Attempt

    @property
    def key(self) -> str:
        return Step.objects.filter(id=self._step_id).values_list("key", flat=True).get()

    def get(self) -> dict[str, Any]:
        return dict(Step.objects.filter(id=self._step_id).values_list("memo", flat=True).get() or {})

    def put(self, data: dict[str, Any]) -> None:
        holding = Step.objects.filter(id=self._step_id, status=Step.Status.RUNNING, attempt=self.attempt.number)
        if not holding.update(memo=data):
            raise MemoLost(f"try {self.attempt.number} of step {self.attempt.step_id} no longer holds its step.")

    @property
    def _step_id(self) -> int:
        if self.attempt.step_id is None:
            raise AssertionError("a leased try's step is written when it starts")
        return self.attempt.step_id


@dataclass(frozen=True)
class NoMemo:
    """An atomic try's `agents.base.StepMemo`: its step is written once, with its result, so it keeps nothing."""

    key: str

    def get(self) -> dict[str, Any]:
        return {}

    def put(self, data: dict[str, Any]) -> None:
        raise PermanentError("an atomic agent keeps nothing across tries (its step is written once, with its result).")


# --- Attempt rows --------------------------------------------------------------------------


def attempt_create(
    step: Step, attempt: Attempt, status: StepAttempt.Status, now: datetime, error: BaseException | None = None
) -> None:
    """The attempt row of an atomic try, written once, as it ended."""
    StepAttempt.objects.create(
        step=step,
        number=attempt.number,
        status=status,
        task_id=attempt.task_id,
        worker=attempt.worker,
        started_at=attempt.started_at,
        finished_at=now,
        duration_ms=ms(now - attempt.started_at),
        error_type=type(error).__name__ if error is not None else "",
        error=str(error)[:4000] if error is not None else "",
    )


def attempt_finish(attempt: Attempt, status: str, now: datetime, error: BaseException | None = None) -> None:
    """End a leased try's attempt row (written when it started)."""
    if attempt.attempt_id is None:
        raise AssertionError("an atomic try's row is written once, as it ends (attempt_create)")
    fields: dict[str, Any] = {"status": status, "finished_at": now, "duration_ms": ms(now - attempt.started_at)}
    if error is not None:
        fields.update(error_type=type(error).__name__, error=str(error)[:4000])
    StepAttempt.objects.filter(id=attempt.attempt_id).update(**fields)


def error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def ms(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds() * 1000))
