"""Dead letters: messages that could not be processed and steps that failed for good.

Redis has no dead-letter queue, so they are rows (`DeadLetter`), listed in
Django admin and by `manage.py deadletters`. Replaying a step's dead letter puts
its run back to running and re-dispatches it: steps already done return their
recorded output, the failed step runs again, nothing is done twice. A dead letter
is replayed at most once; a message that never reached a run is re-sent as is.
"""

from __future__ import annotations

import logging
import traceback as traceback_module
from typing import Any

from django.db import transaction
from django.utils import timezone

from orchestration import metering
from orchestration.models import DeadLetter, Run
from orchestration.pipeline import run_dispatch
from orchestration.runs import run_reopen, step_reopen
from project.celery import app

logger = logging.getLogger(__name__)


def dead_letter_record(
    *,
    task_name: str,
    task_id: str,
    message: Any,
    reason: str,
    error: BaseException,
    run_id: str | None = None,
    step_key: str = "",
    trace_id: str = "",
) -> DeadLetter:
    """Store a dead letter; a redelivery of the same message (task id) stores nothing new."""
    run = Run.objects.filter(id=run_id).first() if run_id else None
    text = "".join(traceback_module.format_exception(error))
    dead_letter, created = DeadLetter.objects.get_or_create(
        task_id=task_id,
        defaults={
            "task_name": task_name,
            "message": _jsonable(message),
            "reason": reason,
            "error": f"{type(error).__name__}: {error}",
            "traceback": text,
            "run": run,
            "step_key": step_key,
            "trace_id": trace_id or (run.trace_id if run else ""),
        },
    )
    if created:
        metering.dead_lettered(reason=reason)
        logger.error(
            "dead letter %s: %s %s: %s",
            dead_letter.id,
            task_name,
            reason,
            error,
            extra={"run_id": run_id or "", "trace_id": dead_letter.trace_id},
        )
    return dead_letter


def dead_letter_replay(dead_letter_id: int) -> str:
    """Replay a dead letter once; returns what was done, in words."""
    with transaction.atomic():
        dead_letter = DeadLetter.objects.select_for_update().filter(id=dead_letter_id).first()
        if dead_letter is None:
            raise DeadLetter.DoesNotExist(f"no dead letter {dead_letter_id}")
        if dead_letter.status == DeadLetter.Status.REPLAYED:
            return f"dead letter {dead_letter.id} was already replayed at {dead_letter.replayed_at:%Y-%m-%d %H:%M:%S}."
        run = Run.objects.select_for_update().filter(id=dead_letter.run_id).first() if dead_letter.run_id else None
        if run is not None and run.status == Run.Status.COMPLETED:
            return f"dead letter {dead_letter.id}: run {run.id} is already completed; nothing to do."
        if run is not None and run.status == Run.Status.CANCELLED:
            return f"dead letter {dead_letter.id}: run {run.id} was cancelled; not replayed."
        if run is not None and run.status not in (Run.Status.FAILED, *Run.ACTIVE):
            return f"dead letter {dead_letter.id}: run {run.id} is {run.status}; a person is handling it, not replayed."
        dead_letter.status = DeadLetter.Status.REPLAYED
        dead_letter.replayed_at = timezone.now()
        dead_letter.replay_count += 1
        dead_letter.save(update_fields=["status", "replayed_at", "replay_count"])
        if run is None:
            name, message = dead_letter.task_name, dead_letter.message
            transaction.on_commit(lambda: _resend(name, message))
            return f"dead letter {dead_letter.id}: message re-sent to {name}."
        step_reopen(run=run, key=dead_letter.step_key)
        run.reason = run.reason_detail = ""  # the failure being replayed no longer stands
        run_reopen(run)
        transaction.on_commit(lambda: run_dispatch(run))
    return f"dead letter {dead_letter.id}: run {run.id} re-dispatched from its recorded steps."


def _resend(task_name: str, message: Any) -> None:
    app.send_task(task_name, args=(message,))


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)
