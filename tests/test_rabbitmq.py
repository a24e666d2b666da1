"""Switchboard on RabbitMQ: quorum queues with a delivery limit, a dead worker's messages back at once, and the
broker's dead letters in ours. Each test module (or test) gets its own vhost (`rabbitmqctl add_vhost`); the result
backend stays the tests' Redis.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from harness.processes import ROOT, SupervisorProcess, WorkerProcess, web_server
from orchestration.models import DeadLetter, Step
from tests.agents_for_tests import fault_set
from tests.conftest import WORKER_ENV, run_wait, wait_for
from tests.http import ApiClient

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.fault,
    pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="RabbitMQ (rabbitmqctl) is not installed here"),
]


SLEEPY = ["triage", "sleepy", ["retrieval", "account"], "responder", "validator", "deliver"]


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60).stdout


def vhost_env(vhost: str, **extra: str) -> dict[str, str]:
    """Settings for processes on RabbitMQ vhost `vhost` (the result backend stays the tests' Redis)."""
    return {
        **WORKER_ENV,
        "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "CELERY_RESULT_BACKEND": settings.REDIS_URL,
        **extra,
    }


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"switchboard_test_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    rabbitmqctl("delete_vhost", name)


def run_start_in(env: dict[str, str], database_url: str, slip: list[Any], customer_email: str) -> str:
    """Start a run with `slip` the way the API does, from a process whose broker is `env`'s (the test process's own
    Celery app talks to Redis); returns the run's id."""
    code = f"""
from django.db import transaction
from conversations.models import Customer, Message
from conversations.services import conversation_create, message_create
from orchestration.runs import run_start
customer = Customer.objects.get(user__email={customer_email!r})
with transaction.atomic():
    conversation = conversation_create(customer=customer)
    message, _ = message_create(
        conversation_id=conversation.id, role=Message.Role.CUSTOMER, content="How long does shipping take?"
    )
    run = run_start(conversation=conversation, message=message, trace_id="amqp" + conversation.id.hex[:28],
                    slip={json.dumps(slip)}, budget={{"deadline_seconds": 90}})
print(run.id)
"""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**os.environ, **env, "DATABASE_URL": database_url},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.strip().splitlines()[-1]


def test_runs_complete_on_quorum_queues_with_a_delivery_limit(vhost, database_url, make_customer) -> None:
    env = vhost_env(vhost)
    web = web_server(database_url, env=env).start()
    worker = WorkerProcess(database_url, name="amqp", env=env).start()
    supervisor = SupervisorProcess(database_url, env=env).start()
    try:
        _, token = make_customer()
        api = ApiClient(web.url + "/api/v1", token)
        conversation = api.post("/conversations/").json
        posted = api.post(f"/conversations/{conversation['id']}/messages/", {"content": "How long does shipping take?"})
        run = run_wait(posted.json["run"]["id"], timeout=60)
        assert run.status == "completed", (run.reason, run.reason_detail)
    finally:
        supervisor.stop()
        worker.stop()
        web.stop()
    queues = {
        line.split("\t")[0]: line
        for line in rabbitmqctl("list_queues", "-p", vhost, "name", "type", "arguments", "--quiet").splitlines()
    }
    for name in ("default", "llm"):
        assert "quorum" in queues[name] and "x-delivery-limit" in queues[name], queues
    assert "switchboard.dead" in queues


def test_a_worker_killed_mid_step_on_rabbitmq_is_resumed(vhost, database_url, make_customer) -> None:
    env = vhost_env(vhost)
    customer, _ = make_customer()
    doomed = WorkerProcess(database_url, name="amqp-doomed", env=env, pool="threads", concurrency=4).start()
    supervisor = SupervisorProcess(database_url, env=env).start()
    rescuer = None
    try:
        run_id = run_start_in(env, database_url, SLEEPY, customer.user.email)
        sleepy = wait_for(
            lambda: Step.objects.filter(run_id=run_id, agent="sleepy", status="running").first(), timeout=30
        )
        doomed.kill()
        rescuer = WorkerProcess(database_url, name="amqp-rescuer", env=env).start()
        run = run_wait(run_id, timeout=60)
        assert run.status == "completed", (run.reason, run.reason_detail)
        attempts = list(Step.objects.get(id=sleepy.id).attempts.all())
        assert [a.status for a in attempts] == ["abandoned", "succeeded"]
    finally:
        if rescuer is not None:
            rescuer.stop()
        supervisor.stop()
        doomed.stop()


def test_a_message_past_the_delivery_limit_lands_in_our_dead_letters(vhost, database_url, make_customer) -> None:
    # The database's own cap is lifted here, so that only the broker's delivery limit can stop the poison.
    env = vhost_env(vhost, STEP_MAX_LOST="100", BROKER_DELIVERY_LIMIT="1")
    customer, _ = make_customer()
    fault_set("poison_atomic", True)
    worker = WorkerProcess(database_url, name="amqp-victim", env=env, concurrency=1).start()
    try:
        run_id = run_start_in(env, database_url, ["triage", "poison_atomic", "deliver"], customer.user.email)
        letter = wait_for(lambda: DeadLetter.objects.filter(run_id=run_id).first(), timeout=60)
    finally:
        fault_set("poison_atomic", False)
        worker.stop()
    assert letter.reason == "delivery_limit"
    assert "RabbitMQ dead-lettered the message" in letter.error and "delivery_limit" in letter.error
    assert letter.message and letter.message["run_id"] == run_id
    run = run_wait(run_id, timeout=10, statuses=("failed",))
    assert run.reason == "agent_failed"
    step = Step.objects.get(run_id=run_id, agent="poison_atomic")
    assert step.status == "failed" and step.lost == 2  # delivered twice (limit 1), lost twice, then the broker gave up
    assert json.loads(json.dumps(letter.message))  # stored as JSON
