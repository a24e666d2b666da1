"""Workers die and messages get lost: nothing is lost for good, nothing is done twice.

These tests start their own workers (no module worker), so each message goes
where the test means it to.
"""

from __future__ import annotations

import threading
import time

import pytest

from conversations.models import Message
from orchestration.models import ReviewItem, Run, Step
from orchestration.supervisor import supervisor_sweep
from tests.conftest import broker_reset, run_wait, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

# Redelivery of a dead worker's messages within seconds instead of an hour.
FAST_REDELIVERY = {
    "BROKER_VISIBILITY_TIMEOUT": "8",
    "BROKER_UNACKED_RESTORE_INTERVAL": "1",
    "BROKER_UNACKED_RESTORE_THROTTLE": "1",
}
SLIP_WITH_SLOW_STEP = ["triage", "sleepy", ["retrieval", "account"], "responder", "validator", "deliver"]


def test_worker_killed_mid_step_the_message_is_redelivered_and_the_run_completes_once(
    worker_factory, start_run
) -> None:
    doomed = worker_factory("doomed", env=FAST_REDELIVERY)
    run = start_run(slip=SLIP_WITH_SLOW_STEP, budget={"deadline_seconds": 60})
    wait_for(lambda: Step.objects.filter(run=run, agent="sleepy", status="running").exists())
    doomed.kill()  # SIGKILL to the worker and its pool: no ack, no cleanup

    worker_factory("rescuer", env=FAST_REDELIVERY)
    run = run_wait(run.id, timeout=60)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert Message.objects.filter(conversation_id=run.conversation_id, role="assistant").count() == 1
    steps = list(Step.objects.filter(run=run))
    assert sorted(s.agent for s in steps) == sorted(
        ["triage", "sleepy", "retrieval", "account", "responder", "validator", "deliver"]
    )
    assert all(s.status == "completed" for s in steps)
    sleepy = next(s for s in steps if s.agent == "sleepy")
    attempts = list(sleepy.attempts.all())
    assert [a.status for a in attempts] == ["abandoned", "succeeded"]
    assert attempts[0].worker.startswith("doomed-") and attempts[1].worker.startswith("rescuer-")


def test_a_lost_message_is_recovered_by_the_supervisor_sweep(worker_factory, start_run) -> None:
    run = start_run()
    broker_reset()  # the run's first message is lost before any worker took it
    rescuer = worker_factory("rescuer", env={"SUPERVISOR_STALL_SECONDS": "0.5"})
    wait_for(lambda: Run.objects.filter(id=run.id, last_progress_at__isnull=False).exists())

    from project.celery import app

    report = app.send_task("supervisor.sweep", queue="default").get(timeout=20)
    assert report["recovered"] == [str(run.id)]
    run = run_wait(run.id)
    assert run.status == "completed" and run.recoveries == 1
    assert Message.objects.filter(conversation_id=run.conversation_id, role="assistant").count() == 1
    assert rescuer.process.poll() is None


def test_a_run_stuck_after_its_recoveries_is_escalated(worker_factory, start_run, settings) -> None:
    run = start_run()
    broker_reset()
    settings.SUPERVISOR_STALL_SECONDS = 0
    Run.objects.filter(id=run.id).update(recoveries=settings.SUPERVISOR_MAX_RECOVERIES)
    report = supervisor_sweep()
    assert report.escalated == [str(run.id)] and report.recovered == []
    run.refresh_from_db()
    assert run.status == "awaiting_review" and run.reason == "stuck"
    assert ReviewItem.objects.get(run=run).reason == "stuck"


def test_concurrent_sweeps_recover_a_stuck_run_once(worker_factory, start_run, settings) -> None:
    run = start_run()
    broker_reset()
    settings.SUPERVISOR_STALL_SECONDS = 1
    time.sleep(1.2)  # the run has made no progress for longer than that
    reports = []
    barrier = threading.Barrier(3)

    def sweep() -> None:
        from django.db import connection

        barrier.wait()
        try:
            reports.append(supervisor_sweep())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(str(run.id) in r.recovered for r in reports) == 1
    run.refresh_from_db()
    assert run.recoveries == 1

    worker_factory("rescuer")
    run = run_wait(run.id)
    assert run.status == "completed"
    assert Message.objects.filter(conversation_id=run.conversation_id, role="assistant").count() == 1
