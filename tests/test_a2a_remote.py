"""Remote A2A agents as steps (agents/remote.py): real Celery workers and the supervisor, PostgreSQL, Redis, and a fake
remote A2A agent (harness/fake_a2a.py: the a2a-sdk's own server) over real HTTP.

The workers know one remote agent, `desk`, which A2A_REMOTE_ROUTES puts on the slip for shipping questions (the
default message), just before the responder.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import transaction

from agents.a2a_guard import LOOP_GUARD_URI, LoopGuard
from conversations.models import Message
from conversations.services import conversation_create, message_create
from harness.fake_a2a import BINDINGS, FakeA2A, Recorded
from harness.processes import SupervisorProcess, WorkerProcess
from orchestration.cancel import run_cancel
from orchestration.models import DeadLetter, ReviewItem, Run, Step
from orchestration.runs import run_start
from tests.conftest import WORKER_ENV, broker_reset, run_wait, wait_for

pytestmark = [pytest.mark.e2e]

FAKE = FakeA2A(instance_id="fake-remote")
INSTANCE_ID = "switchboard-under-test"
DESK = {
    "card_url": FAKE.card_url,
    "token_env": "DESK_TOKEN",
    "time_limit_seconds": 10,
    "request_timeout_seconds": 3,
    "poll_seconds": 0.5,
    "max_polls": 12,
    "max_retries": 2,
}
REMOTE_ENV = {
    "A2A_REMOTE_AGENTS": json.dumps({"desk": DESK}),
    "DESK_TOKEN": FAKE.token,
    "A2A_REMOTE_ROUTES": "shipping=desk",
    "A2A_INSTANCE_ID": INSTANCE_ID,
    "A2A_CARD_TTL_SECONDS": "0",  # the tests switch the card's binding
}
ANSWER = "Our partner desk says: standard shipping takes 2 to 4 business days."


@pytest.fixture(scope="module")
def remote_stack(database_url: str) -> Iterator[WorkerProcess]:
    """The fake remote agent, a worker (prefork, both queues) and the supervisor that know it, for the module."""
    FAKE.up()
    broker_reset()
    env = {**WORKER_ENV, **REMOTE_ENV}
    worker = WorkerProcess(database_url, name="remote", env=env).start()
    supervisor = SupervisorProcess(database_url, env=env).start()
    yield worker
    supervisor.stop()
    worker.stop()
    FAKE.down()


@pytest.fixture
def fake(remote_stack: WorkerProcess) -> Iterator[FakeA2A]:
    """The fake remote agent, up, answering at once, with nothing recorded; its breaker closed."""
    FAKE.reset()
    FAKE.answer, FAKE.binding = ANSWER, "JSONRPC"
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    for key in client.scan_iter("switchboard:breaker:a2a:*"):
        client.delete(key)
    yield FAKE
    if FAKE._server is None:
        FAKE.up()


def run_with(customer: Any, *, trace_id: str, guard: LoopGuard | None = None) -> Run:
    """Start a run for the default shipping question, as an A2A request carrying `guard` would."""
    with transaction.atomic():
        conversation = conversation_create(customer=customer)
        message, _ = message_create(
            conversation_id=conversation.id, role=Message.Role.CUSTOMER, content="How long does shipping take?"
        )
        return run_start(
            conversation=conversation,
            message=message,
            trace_id=trace_id,
            a2a_guard=guard.to_json() if guard is not None else None,
        )


def sent_message(request: Recorded) -> dict[str, Any]:
    """The A2A message of a recorded SendMessage, for either binding."""
    return request.body["params"]["message"] if "params" in request.body else request.body["message"]


def replies(run: Run) -> list[str]:
    return list(
        Message.objects.filter(conversation_id=run.conversation_id, role="assistant").values_list("content", flat=True)
    )


def desk_step(run: Run) -> Step:
    return Step.objects.get(run=run, agent="desk")


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
def test_a_remote_agent_on_the_slip_answers_the_customer(fake, make_customer, binding) -> None:
    fake.binding = binding
    trace_id = uuid.uuid4().hex
    run = run_wait(run_with(make_customer()[0], trace_id=trace_id).id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert replies(run) == [ANSWER]  # the responder passed the remote answer on; the validator let it through
    plan = Step.objects.get(run=run, agent="planner").output["envelope"]["payload"]["plan"]
    assert plan == [["retrieval", "account"], "desk", "responder", "validator", "deliver"]

    (send,) = fake.calls("SendMessage")
    assert send.path.startswith(BINDINGS[binding])
    assert send.headers["authorization"] == f"Token {fake.token}"
    assert LOOP_GUARD_URI in send.headers["a2a-extensions"]
    message = sent_message(send)
    assert message["parts"][0]["text"] == "How long does shipping take?"
    assert len(message["parts"]) == 1  # the question only: nothing else of the run leaves
    for request in fake.requests:  # the card, the message, any poll: one trace
        assert request.headers["traceparent"].split("-")[1] == trace_id

    # What the run may still spend went with the request; what the remote spent came back into the run.
    step = desk_step(run)
    before = Step.objects.filter(run=run, hop__lt=step.hop)
    guard = message["metadata"][LOOP_GUARD_URI]
    assert (guard["hops"], guard["maxHops"], guard["path"]) == (1, 4, [INSTANCE_ID])
    assert guard["tokensLeft"] == 20000 - sum(s.tokens for s in before)
    assert abs(Decimal(guard["costLeftUsd"]) - (Decimal("0.5") - sum(s.cost_usd for s in before))) < Decimal("1e-5")
    assert (step.status, step.tokens, step.cost_usd, step.model) == ("completed", 120, Decimal("0.0042"), "a2a:desk")
    assert run.tokens_used == sum(s.tokens for s in Step.objects.filter(run=run))
    assert run.cost_usd == sum(s.cost_usd for s in Step.objects.filter(run=run))
    assert step.memo["task_id"] == fake.tasks_by_message[message["messageId"]]


def test_the_loop_guard_goes_one_hop_further_than_the_request_the_run_serves(fake, make_customer) -> None:
    inbound = LoopGuard(hops=2, max_hops=6, path=["shop-a", "shop-b"], tokens_left=5000, cost_left_usd=Decimal("0.2"))
    run = run_wait(run_with(make_customer()[0], trace_id="from-a-partner", guard=inbound).id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    guard = sent_message(fake.calls("SendMessage")[0])["metadata"][LOOP_GUARD_URI]
    assert (guard["hops"], guard["maxHops"], guard["path"]) == (3, 6, ["shop-a", "shop-b", INSTANCE_ID])
    assert guard["tokensLeft"] == 5000  # the inbound request's budget is the smaller one
    assert Decimal(guard["costLeftUsd"]) <= Decimal("0.2")
    # A trace id that is no W3C trace id is sent as a stable one derived from it.
    sent = {request.headers["traceparent"].split("-")[1] for request in fake.requests}
    assert len(sent) == 1 and len(sent.pop()) == 32


def test_a_slow_remote_task_is_polled_by_separate_tries_that_use_up_no_retry(fake, make_customer) -> None:
    fake.behaviour, fake.slow_seconds = "slow", 2.5
    trace_id = uuid.uuid4().hex
    run = run_wait(run_with(make_customer()[0], trace_id=trace_id).id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert replies(run) == [ANSWER]

    step = desk_step(run)
    attempts = list(step.attempts.all())
    polls = fake.calls("GetTask")
    assert len(fake.calls("SendMessage")) == 1 and len(polls) >= 3
    assert step.memo["polls"] == len(polls) == len(attempts) - 1  # one GetTask per try after the send
    assert [a.error_type for a in attempts] == ["RemotePending"] * (len(attempts) - 1) + [""]
    assert attempts[-1].status == "succeeded"
    # No try waited for the remote: each took one request, not the 2.5 s the task worked.
    assert all(a.duration_ms < 1500 for a in attempts), [a.duration_ms for a in attempts]
    assert step.attempt - step.retry_base == 1  # waiting used up no retry
    assert {request.headers["traceparent"].split("-")[1] for request in fake.requests} == {trace_id}


def test_a_run_cancelled_while_the_remote_works_asks_the_remote_to_stop(fake, make_customer) -> None:
    fake.behaviour, fake.slow_seconds = "slow", 6.0
    customer = make_customer()[0]
    run = run_with(customer, trace_id=uuid.uuid4().hex)
    wait_for(lambda: fake.calls("GetTask"), timeout=20)  # sent, and being followed
    run_cancel(run_id=run.id, customer=customer)
    cancel = wait_for(lambda: fake.calls("CancelTask"), timeout=20)
    step = desk_step(run)
    assert step.status == "failed" and len(cancel) == 1
    assert step.memo["task_id"] in json.dumps(cancel[0].body) + cancel[0].path
    assert replies(Run.objects.get(id=run.id)) == []


def test_a_request_the_remote_rejects_as_a_loop_goes_to_review_with_the_reason(fake, make_customer) -> None:
    # The request came from the fake remote itself: sending it back there is a loop, and its guard says so.
    inbound = LoopGuard(hops=1, max_hops=4, path=["fake-remote"])
    run = run_wait(run_with(make_customer()[0], trace_id=uuid.uuid4().hex, guard=inbound).id)
    assert run.status == "awaiting_review" and run.reason == "remote_rejected"
    assert "loop_detected" in run.reason_detail and f"fake-remote -> {INSTANCE_ID}" in run.reason_detail
    item = ReviewItem.objects.get(run=run, status="open")
    assert item.reason == "remote_rejected" and "loop_detected" in item.detail
    step = desk_step(run)
    assert step.status == "failed" and "rejected the request" in step.error
    assert step.memo["ended"] == "rejected" and replies(run) == []


def test_a_remote_that_goes_down_mid_call_is_retried_then_the_run_goes_to_review(fake, make_customer) -> None:
    fake.behaviour, fake.slow_seconds = "slow", 30
    run = run_with(make_customer()[0], trace_id=uuid.uuid4().hex)
    wait_for(lambda: fake.calls("GetTask"), timeout=20)  # the task is under way, and polled
    fake.down()
    run = run_wait(run.id, timeout=30)
    assert run.status == "awaiting_review" and run.reason == "remote_unavailable", (run.status, run.reason)
    assert "RemoteUnavailable: cannot reach desk" in run.reason_detail
    attempts = list(desk_step(run).attempts.all())
    # Polls, then the first try and max_retries=2 retries that could not reach it: the last one ends in review.
    errors = [a.error_type for a in attempts]
    assert errors[-3:] == ["RemoteUnavailable", "RemoteUnavailable", "RunHalted"], errors
    assert set(errors[:-3]) == {"RemotePending"} and "RemoteUnavailable: cannot reach" in attempts[-1].error
    assert DeadLetter.objects.get(run=run).reason == "retries_exhausted"
    assert ReviewItem.objects.get(run=run).status == "open"


def test_a_worker_killed_mid_send_and_mid_poll_resumes_with_one_remote_task(fake, remote_stack, make_customer) -> None:
    # Killed once while its message is answered (the remote has started the task) and once while it polls; the
    # remote task works until the test lets it finish.
    fake.behaviour, fake.slow_seconds, fake.send_delay = "slow", 60, 1.5
    started = fake.tasks_started()
    run = run_with(make_customer()[0], trace_id=uuid.uuid4().hex)
    wait_for(lambda: fake.calls("SendMessage"), timeout=20)
    kill_the_try(run)
    wait_for(lambda: len(fake.calls("SendMessage")) == 2, timeout=20)  # sent again by the next delivery
    fake.poll_delay = 1.5
    wait_for(lambda: fake.calls("GetTask"), timeout=20)
    kill_the_try(run)
    fake.poll_delay = 0.0
    fake.release()

    run = run_wait(run.id, timeout=40)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert replies(run) == [ANSWER]
    sends = fake.calls("SendMessage")
    assert len(sends) == 2 and len({sent_message(s)["messageId"] for s in sends}) == 1  # the same message id
    assert fake.tasks_started() == started + 1  # one remote task: the remote deduplicated the second send
    step = desk_step(run)
    statuses = [a.status for a in step.attempts.all()]
    assert statuses.count("abandoned") == 2 and statuses[-1] == "succeeded" and step.lost == 2
    assert remote_stack.process is not None and remote_stack.process.poll() is None  # the pool replaced its children


def kill_the_try(run: Run) -> None:
    """SIGKILL the pool process running the run's `desk` step."""
    step = wait_for(lambda: Step.objects.filter(run=run, agent="desk", status="running").first())
    os.kill(int(step.attempts.get(status="running").worker.rpartition(":")[2]), signal.SIGKILL)
