"""Worker liveness, from inside each worker: its heartbeat row, and the loss of a pool process.

A worker's main process writes its `WorkerBeat` row every WORKER_BEAT_SECONDS from a small thread: the process ids
that execute its tasks, and the messages it holds (running, reserved, or waiting for a retry's countdown) as run and
step. The supervisor reads the rows (`orchestration.recovery`): a row that stops moving is a dead worker whose work is
resumed from the database within seconds, and a process id that leaves a live worker's row is a pool child that died.

A prefork pool child that dies mid-task (killed, crashed, out of memory) is seen at once by its main process: Celery
raises WorkerLostError there and, with `reject_on_worker_lost`, hands the message back to the broker. `StepRequest`
records the lost try on its step first (`recovery.step_lost`), so the message's next delivery takes the step over
at once, and a message that kills its process every time is given up after STEP_MAX_LOST losses instead of looping
(Celery's warning about `reject_on_worker_lost`).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import signals
from celery.worker import state as worker_state
from celery.worker.request import Request
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models.functions import Now
from django.utils import timezone

from agents.registry import agents_all
from orchestration import recovery
from orchestration.models import WorkerBeat
from orchestration.routing import AGENT_TASK_PREFIX

logger = logging.getLogger(__name__)


def request_step(request: Any) -> tuple[str, str] | None:
    """The run id and step key an agent task's request is for; None for other tasks or a malformed message."""
    target = recovery.message_step(getattr(request, "task_name", "") or "", getattr(request, "args", None))
    return (target[1], target[2]) if target is not None else None


class StepRequest(Request):
    """Celery's request, recording a try lost with its pool process before Celery hands the message back."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> None:
        exc = getattr(exc_info.exception, "exc", exc_info.exception)
        lost = isinstance(exc, WorkerLostError) or (
            isinstance(exc, SystemExit)
            and not (getattr(self, "_already_cancelled", False) or getattr(self, "_already_revoked", False))
        )
        if lost:
            self._record_loss(exc)
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def _record_loss(self, exc: BaseException) -> None:
        target = request_step(self)
        agent_name = (self.task_name or "").removeprefix(AGENT_TASK_PREFIX)
        if target is None or agent_name not in agents_all():
            return
        run_id, key = target
        try:
            recovery.step_lost(
                run_id=run_id,
                key=key,
                agent=agents_all()[agent_name],
                worker=f"{self.hostname}:{self.worker_pid}",
                task_id=self.id,
                message=self.args[0] if self.args else None,
                error=f"the worker process died: {exc!r}"[:500],
            )
        except DatabaseError:
            # The database is away: the supervisor finds the lost try from the worker's row later.
            logger.warning("could not record a lost try of step %s", key, exc_info=True)
            connection.close()


class WorkerBeater(threading.Thread):
    """The thread that keeps a worker's `WorkerBeat` row up to date (see the module's docstring)."""

    def __init__(self, consumer: Any) -> None:
        super().__init__(name="switchboard-worker-beat", daemon=True)
        self.consumer = consumer
        self.name_key = f"{consumer.hostname}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.started_at = timezone.now()
        self.stopping = threading.Event()
        self._steps: dict[str, tuple[str, str] | None] = {}

    def run(self) -> None:
        interval = settings.WORKER_BEAT_SECONDS
        while True:
            try:
                self.beat()
            except DatabaseError:
                logger.warning("worker heartbeat not written (database unavailable)")
                connection.close()
            except Exception:  # the heartbeat must outlive any one bad beat: a silent worker is taken for dead
                logger.exception("worker heartbeat failed; trying again")
            if self.stopping.wait(interval):
                break
        try:
            WorkerBeat.objects.filter(name=self.name_key).delete()  # a clean stop: not a dead worker
        except DatabaseError:
            logger.warning("worker heartbeat row not removed at shutdown")
        finally:
            connection.close()

    def beat(self) -> None:
        fields = {"pids": self.pids(), "held": self.held(), "beat_at": Now(), "host_beat_at": timezone.now()}
        fields["gone_at"] = None
        if not WorkerBeat.objects.filter(name=self.name_key).update(**fields):
            WorkerBeat.objects.update_or_create(
                name=self.name_key,
                defaults={**fields, "node": self.consumer.hostname, "started_at": self.started_at},
            )

    def pids(self) -> list[int]:
        """The pool's child processes (prefork), or this process (threads, solo)."""
        info = getattr(self.consumer.pool, "info", None) or {}
        processes = info.get("processes") if isinstance(info, dict) else None
        return [int(pid) for pid in processes] if processes else [os.getpid()]

    def held(self) -> list[dict[str, Any]]:
        """The agent messages this worker holds: running or reserved (and any waiting for a countdown)."""
        requests = _snapshot(worker_state.reserved_requests) + _snapshot(worker_state.active_requests)
        timer = getattr(self.consumer, "timer", None)
        for waiting in _snapshot(getattr(getattr(timer, "schedule", None), "queue", [])):
            args = getattr(getattr(waiting, "entry", None), "args", None) or ()
            if args and isinstance(args[0], Request):
                requests.append(args[0])
        held, seen = [], set()
        for request in requests:
            if request.id in seen:
                continue
            seen.add(request.id)
            if request.id not in self._steps:
                self._steps[request.id] = request_step(request)
            target = self._steps[request.id]
            if target is not None:
                pid = getattr(request, "worker_pid", None)
                held.append({"run": target[0], "step": target[1], "task": request.id, "pid": pid})
        if len(self._steps) > 4 * max(len(seen), 64):
            self._steps = {key: value for key, value in self._steps.items() if key in seen}
        return held

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


def _snapshot(items: Any) -> list[Any]:
    """A copy of a collection another thread may change meanwhile (the worker's event loop)."""
    for _ in range(5):
        try:
            return list(items)
        except RuntimeError:  # changed size during iteration: try again
            continue
    return []


_beater: WorkerBeater | None = None


@signals.worker_ready.connect
def _beat_start(sender: Any = None, **kwargs: Any) -> None:
    global _beater
    if settings.WORKER_BEAT_SECONDS <= 0 or sender is None:
        return
    _beater = WorkerBeater(sender)
    try:
        # The first beat before the worker takes a message (this handler runs before its event loop does): a worker
        # that dies on its very first message is still known, and taken for dead.
        _beater.beat()
    except DatabaseError:
        logger.warning("worker heartbeat not written at start (database unavailable)")
    finally:
        connection.close()  # the main thread's: the beats go on in their own thread, with its own
    _beater.start()


@signals.worker_shutdown.connect
def _beat_stop(**kwargs: Any) -> None:
    if _beater is not None:
        _beater.stop()
