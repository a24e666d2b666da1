"""Workers die, messages get lost, the broker forgets: work resumes within seconds on the default delivery settings
(an hour's visibility timeout), nothing is lost for good, nothing is done twice, and a message that kills its worker
every time is dead-lettered instead of looping.

These tests start their own workers and supervisors, so each message goes where the test means it to.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta

import pytest
import redis
from celery import Celery
from django.conf import settings as django_settings
from django.db import connection

from agents.envelope import Envelope
from conversations.models import Message
from harness.processes import ServerProcess, WorkerProcess, redis_server
from orchestration.deadletters import dead_letter_replay
from orchestration.models import DeadLetter, Run, Step, SupervisorMark, WorkerBeat
from orchestration.supervisor import database_clock, supervisor_tick, ticks_continuous
from tests.agents_for_tests import fault_set
from tests.conftest import WORKER_ENV, broker_reset, run_wait, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

SLEEPY = ["triage", "sleepy", ["retrieval", "account"], "responder", "validator", "deliver"]
SLEEPY_ATOMIC = ["triage", "sleepy_atomic", ["retrieval", "account"], "responder", "validator", "deliver"]
SLEEPY_LONG = ["triage", "sleepy_long", ["retrieval", "account"], "responder", "validator", "deliver"]


def replies(run: Run) -> int:
    return Message.objects.filter(conversation_id=run.conversation_id, role="assistant").count()


def run_status(run: Run) -> str:
    return Run.objects.get(id=run.id).status


def running_step(run: Run, agent: str) -> Step:
    return wait_for(lambda: Step.objects.filter(run=run, agent=agent, status="running").first(), timeout=30)


def pid_of(step: Step) -> int:
    """The process running a step's try (its attempt's worker is "<node>:<pid>")."""
    return int(step.attempts.get(status="running").worker.rpartition(":")[2])


def test_a_worker_killed_mid_step_is_resumed_elsewhere_on_the_default_settings(worker_factory, start_run) -> None:
    # Threads pool: the one process is the worker; killing it loses everything it held. The broker would hand the
    # message back after BROKER_VISIBILITY_TIMEOUT (an hour, the default): the supervisor must not wait for that.
    doomed = worker_factory("doomed", pool="threads", concurrency=4)
    run = start_run(slip=SLEEPY_LONG, budget={"deadline_seconds": 90})
    sleepy = running_step(run, "sleepy_long")
    # Killed once its heartbeat lists the step (the supervisor then finds the try twice: running on the step and in
    # the dead worker's row; it is one lost try).
    wait_for(lambda: held_pid(doomed.hostname, "sleepy_long"), timeout=10)
    doomed.kill()
    killed_at = time.monotonic()

    worker_factory("rescuer")
    run = run_wait(run.id, timeout=60)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert time.monotonic() - killed_at < 60  # not the hour the broker would take
    assert replies(run) == 1
    steps = list(Step.objects.filter(run=run))
    assert sorted(s.agent for s in steps) == sorted(
        ["triage", "sleepy_long", "retrieval", "account", "responder", "validator", "deliver"]
    )
    assert all(s.status == "completed" for s in steps)
    attempts = list(Step.objects.get(id=sleepy.id).attempts.all())
    assert [a.status for a in attempts] == ["abandoned", "succeeded"]
    assert attempts[0].worker.startswith("doomed-") and attempts[1].worker.startswith("rescuer-")
    assert "is gone" in attempts[0].error
    assert Step.objects.get(id=sleepy.id).lost == 1  # one death, one lost try
    assert run.recoveries >= 1
    assert WorkerBeat.objects.get(node=doomed.hostname).gone_at is not None


@pytest.mark.parametrize("slip, agent", [(SLEEPY, "sleepy"), (SLEEPY_ATOMIC, "sleepy_atomic")])
def test_a_pool_process_killed_mid_step_is_taken_over_at_once(worker_factory, start_run, slip, agent) -> None:
    # Prefork: the worker's main process sees its child die, records the lost try and hands the message back at once.
    # No supervisor runs here: the worker alone recovers. An atomic step's try left no row; the loss gives it one.
    worker = worker_factory("survivor", concurrency=1, supervise=False)
    run = start_run(slip=slip, budget={"deadline_seconds": 60})
    if agent == "sleepy":
        child = pid_of(running_step(run, agent))
    else:
        # The atomic try writes nothing until it ends: the worker's heartbeat row says which process runs it.
        child = wait_for(lambda: held_pid(worker.hostname, agent), timeout=30)
    os.kill(child, signal.SIGKILL)

    run = run_wait(run.id, timeout=45)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert replies(run) == 1
    attempts = list(Step.objects.get(run=run, agent=agent).attempts.all())
    assert [a.status for a in attempts] == ["abandoned", "succeeded"]
    assert "worker process died" in attempts[0].error
    assert worker.process.poll() is None


def held_pid(node: str, agent: str) -> int | None:
    """The process of worker `node` executing a step of `agent`, from the worker's heartbeat row."""
    beat = WorkerBeat.objects.filter(node=node).first()
    return next((h["pid"] for h in (beat.held if beat else []) if h["step"].endswith(agent) and h["pid"]), None)


@pytest.mark.parametrize("agent", ["poison", "poison_atomic"])
def test_a_message_that_kills_its_process_every_time_is_dead_lettered(worker_factory, start_run, agent) -> None:
    fault_set(agent, True)
    try:
        worker = worker_factory("victim", concurrency=1, supervise=False)
        run = start_run(slip=["triage", agent, *SLEEPY[2:]], budget={"deadline_seconds": 90})
        run = run_wait(run.id, timeout=60, statuses=("failed", "completed", "timed_out"))
    finally:
        fault_set(agent, False)
    assert run.status == "failed" and run.reason == "agent_failed", (run.reason, run.reason_detail)
    step = Step.objects.get(run=run, agent=agent)
    assert step.status == "failed" and step.lost == django_settings.STEP_MAX_LOST + 1
    assert step.attempts.count() == django_settings.STEP_MAX_LOST + 1  # bounded: no delivery after it was given up
    letter = DeadLetter.objects.get(run=run)
    assert letter.reason == "worker_lost" and letter.step_key == step.key
    assert "poison" in letter.error and "worker process died" in letter.error  # the evidence: each lost try
    assert letter.message and letter.message["run_id"] == str(run.id)
    assert worker.process.poll() is None  # the worker lives on, serving others
    time.sleep(2)
    assert step.attempts.count() == django_settings.STEP_MAX_LOST + 1
    # Replayed once the cause is fixed, the step gets its STEP_MAX_LOST again, and the run completes.
    assert "re-dispatched" in dead_letter_replay(letter.id)
    run = run_wait(run.id, timeout=40, statuses=("completed", "failed"))
    assert run.status == "completed", (run.reason, run.reason_detail)


def test_a_poison_message_on_a_worker_that_dies_whole_is_given_up_by_the_supervisor(
    worker_factory, supervisor_factory, start_run
) -> None:
    # Threads pool: the poison takes the whole worker down; every new worker picks the step up and dies in turn,
    # until the supervisor has seen STEP_MAX_LOST + 1 losses.
    fault_set("poison", True)
    supervisor_factory(env={"WORKER_DEAD_SECONDS": "2"})  # quicker to call each crashed worker dead
    try:
        run = start_run(slip=["triage", "poison", "deliver"], budget={"deadline_seconds": 120})
        for _ in range(django_settings.STEP_MAX_LOST + 3):
            crasher = worker_factory(
                "crasher", pool="threads", concurrency=2, supervise=False, env={"WORKER_DEAD_SECONDS": "2"}
            )
            wait_for(lambda w=crasher: w.process.poll() is not None or run_status(run) == "failed", timeout=40)
            if run_status(run) == "failed":
                break
            # The supervisor finds it dead before the next one starts.
            wait_for(lambda w=crasher: WorkerBeat.objects.filter(node=w.hostname, gone_at__isnull=False).exists())
        run = run_wait(run.id, timeout=30, statuses=("failed",))
    finally:
        fault_set("poison", False)
    step = Step.objects.get(run=run, agent="poison")
    assert step.status == "failed" and step.lost == django_settings.STEP_MAX_LOST + 1
    assert DeadLetter.objects.get(run=run).reason == "worker_lost"


def test_a_run_past_its_deadline_is_timed_out_from_the_database(supervisor_factory, start_run) -> None:
    # No worker and no message: nothing but the database knows the run.
    run = start_run(budget={"deadline_seconds": 2})
    broker_reset()
    supervisor_factory()
    run = run_wait(run.id, timeout=20, statuses=("timed_out",))
    assert run.reason == "timed_out"
    assert run.review_items.get().reason == "timed_out"


def test_a_message_lost_outside_any_worker_is_recovered_as_a_stalled_run(worker_factory, start_run) -> None:
    run = start_run()
    broker_reset()  # the run's first message is lost before any worker took it (a web process killed after commit)
    worker_factory("rescuer", env={"SUPERVISOR_STALL_SECONDS": "1"})
    run = run_wait(run.id, timeout=30)
    assert run.status == "completed" and run.recoveries >= 1
    assert replies(run) == 1


def test_the_broker_losing_its_data_resumes_every_run(worker_factory, supervisor_factory, start_run) -> None:
    # The stall check is slowed down here so that only the broker's epoch can explain the recovery.
    supervisor_factory(env={"SUPERVISOR_STALL_SECONDS": "300", "SUPERVISOR_STALL_BUSY_SECONDS": "300"})
    time.sleep(2)  # the supervisor has seen this Redis
    runs = [start_run() for _ in range(3)]
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).flushdb()  # as a restart without persistence would
    worker_factory("after-restart", supervise=False)
    for run in runs:
        run = run_wait(run.id, timeout=40)
        assert run.status == "completed" and run.recoveries >= 1
        assert replies(run) == 1


def test_concurrent_ticks_resume_a_run_once(worker_factory, start_run, settings) -> None:
    run = start_run()
    broker_reset()
    settings.SUPERVISOR_STALL_SECONDS = 1
    settings.SUPERVISOR_STALL_BUSY_SECONDS = 1
    time.sleep(1.2)  # the run has made no progress for longer than that
    reports = []
    barrier = threading.Barrier(3)

    def tick() -> None:
        barrier.wait()
        try:
            reports.append(supervisor_tick())
        finally:
            connection.close()

    threads = [threading.Thread(target=tick) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(str(run.id) in r.redispatched.get("stalled", []) for r in reports) == 1
    run.refresh_from_db()
    assert run.recoveries == 1

    worker_factory("rescuer", supervise=False)
    run = run_wait(run.id)
    assert run.status == "completed"
    assert replies(run) == 1


def test_database_connections_cut_mid_run_cost_nothing(worker_factory, start_run) -> None:
    # Every connection to the database but the test's own is terminated while a step runs (a failover, a proxy
    # restart): the workers and the supervisor reconnect, the step's result is recorded, the run completes once.
    worker_factory("steady")
    run = start_run(slip=SLEEPY, budget={"deadline_seconds": 60})
    running_step(run, "sleepy")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1
    pool = getattr(connection, "pool", None)
    if pool is not None:
        pool.check()  # this process's idle pooled connections were cut too: replace them before the next test
    run = run_wait(run.id, timeout=45)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert replies(run) == 1
    assert Step.objects.get(run=run, agent="sleepy").attempt == 1  # recorded by the try that ran it


def test_a_redis_restart_with_tasks_in_flight_does_not_stop_the_worker(database_url, start_run) -> None:
    # kombu's Redis channel, closing after its connection was lost, used to crash the worker (project/broker.py):
    # under honcho (`make run`) one process exiting stops them all.
    server = redis_server().start()
    url = f"redis://127.0.0.1:{server.port}/0"
    env = {**WORKER_ENV, "REDIS_URL": url, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url, "CACHE_URL": url}
    worker = WorkerProcess(database_url, name="outlives-redis", env=env, pool="threads", concurrency=2).start()
    sender = Celery(broker=url)
    try:
        first = start_run()
        envelope = Envelope.from_dict(first.start_envelope).evolve(slip=["sleepy"]).to_dict()
        sender.send_task("agents.sleepy", args=(envelope,), queue="default")
        running_step(first, "sleepy")
        server.kill()  # Redis dies with the task unacknowledged: no persistence
        server = ServerProcess(server.args, port=server.port, name="redis").start()
        time.sleep(3)  # the worker notices, closes its channel, reconnects
        assert worker.process.poll() is None, worker.log_tail()
        second = start_run()
        envelope = Envelope.from_dict(second.start_envelope).evolve(slip=["sleepy"]).to_dict()
        sender.send_task("agents.sleepy", args=(envelope,), queue="default")
        wait_for(lambda: Step.objects.filter(run=second, agent="sleepy", status="completed").exists(), timeout=40)
        assert "Unrecoverable error" not in worker.log_text()
    finally:
        worker.stop()
        server.stop()


def test_a_try_past_its_lease_is_taken_over_and_done_once(worker_factory, start_run) -> None:
    # A thread pool enforces no time limit: a try that runs past its lease (the agent's time limit) is abandoned by
    # the supervisor and the step taken over; the late first try, when it ends, finds the step done.
    fault_set("stall", True, times=1)
    worker_factory("patient", pool="threads", concurrency=4)
    run = start_run(slip=["triage", "stall", ["retrieval", "account"], "responder", "validator", "deliver"])
    run = run_wait(run.id, timeout=45)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert replies(run) == 1
    stall = Step.objects.get(run=run, agent="stall")
    attempts = list(stall.attempts.all())
    assert [a.status for a in attempts] == ["abandoned", "succeeded"]
    assert "lease expired" in attempts[0].error
    time.sleep(4)  # the first try ends now, late: nothing changes
    assert [a.status for a in stall.attempts.all()] == ["abandoned", "succeeded"]
    assert replies(run) == 1 and Step.objects.filter(run=run, agent="stall").count() == 1


def test_no_worker_is_taken_for_dead_right_after_the_database_was_away(transactional_db) -> None:
    # While the database is away nobody can beat; once it is back, workers need WORKER_DEAD_SECONDS to beat again.
    now = database_clock()
    before = {"tick": now - timedelta(seconds=30), "ticking_since": now - timedelta(hours=1)}
    for name, value in before.items():
        SupervisorMark.objects.update_or_create(name=name, defaults={"value": value.isoformat()})
    ticks = [now + timedelta(seconds=second) for second in range(int(django_settings.WORKER_DEAD_SECONDS) + 1)]
    continuous = [ticks_continuous(tick) for tick in ticks]  # a tick a second from `now`, after a 30 s gap
    assert continuous == [False] * (len(ticks) - 1) + [True]
