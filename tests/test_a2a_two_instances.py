"""Two Switchboards that share nothing but HTTP (their own databases, their own Redis, their own workers), each the
other's remote A2A agent: a delegated step answers the customer with one trace id in both systems' records, a loop
1 -> 2 -> 1 is stopped by our extension with a clear reason on both sides, and a peer that goes down mid-call ends
in retries and then review, never a hung run."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from conversations.services import customer_create
from harness.fake_openai import SHIPPING_ANSWERS
from harness.postgres import database_create, database_drop
from harness.processes import free_port, redis_server
from orchestration.models import Run
from tests.a2a_support import jsonrpc, message_params, run, switchboard
from tests.conftest import ROOT_DIR, llm_env, run_wait, wait_for

pytestmark = [pytest.mark.e2e]

ONE, TWO = "switchboard-one", "switchboard-two"
#: Instance two's token at instance one (made again for each test: instance one's database is flushed after each).
TOKEN_AT_ONE = "a2a0two0at0one0" + "0" * 25
REMOTE = {"time_limit_seconds": 9, "request_timeout_seconds": 3, "poll_seconds": 0.3, "max_polls": 40, "max_retries": 2}


def manage(database_url: str, redis_url: str, *args: str) -> str:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def peer_storage(database_url: str) -> Iterator[tuple[str, str]]:
    """Instance two's own database (migrated) and its own Redis server."""
    redis = redis_server().start()
    redis_url = f"redis://127.0.0.1:{redis.port}/0"
    name = f"peer_{uuid.uuid4().hex[:8]}"
    if database_url.startswith("sqlite"):
        peer_url = f"sqlite:///{ROOT_DIR / '.run' / (name + '.sqlite3')}"
    else:
        peer_url = database_create(database_url, name)
    manage(peer_url, redis_url, "migrate", "--noinput")
    yield peer_url, redis_url
    if not database_url.startswith("sqlite"):
        database_drop(database_url, name)
    redis.stop()


@pytest.fixture(scope="module")
def pair(database_url: str, peer_storage: tuple[str, str], fake_server: Any) -> Iterator[dict[str, Any]]:
    """Instance one (the test database, the offline model; shipping and returns questions go to two) and instance two
    (its own storage, the fake OpenAI-compatible model, whose answers and latency a test sets; returns questions go
    back to one: a loop)."""
    peer_url, peer_redis = peer_storage
    token_at_two = manage(peer_url, peer_redis, "create_customer", "one@example.com", "--name", "Instance one")
    token_at_two = token_at_two.strip().split()[-1]
    port_one, port_two = free_port(), free_port()
    remote = lambda port: {"card_url": f"http://127.0.0.1:{port}/.well-known/agent-card.json", **REMOTE}  # noqa: E731
    env_one = {
        "A2A_INSTANCE_ID": ONE,
        "A2A_REMOTE_AGENTS": json.dumps({"two": {**remote(port_two), "token_env": "TWO_TOKEN"}}),
        "A2A_REMOTE_ROUTES": "shipping=two,returns=two",
        "TWO_TOKEN": token_at_two,
    }
    env_two = {
        "A2A_INSTANCE_ID": TWO,
        "A2A_REMOTE_AGENTS": json.dumps({"one": {**remote(port_one), "token_env": "ONE_TOKEN"}}),
        "A2A_REMOTE_ROUTES": "returns=one",
        "ONE_TOKEN": TOKEN_AT_ONE,
        "REDIS_URL": peer_redis,
        **llm_env(fake_server),
    }
    with (
        switchboard(peer_url, env_two, name="two", port=port_two) as (web_two,),
        switchboard(database_url, env_one, name="one", port=port_one) as (web_one,),
    ):
        yield {
            "one": web_one.url,
            "two": web_two,
            "peer_url": peer_url,
            "peer_redis": peer_redis,
            "fake": fake_server,
        }


@pytest.fixture
def fake_two(pair: dict[str, Any]) -> Iterator[Any]:
    """Instance two's model: the shipping answers, quick (a test may change both)."""
    fake = pair["fake"]
    fake.answers, fake.latency = dict(SHIPPING_ANSWERS), 0.0
    yield fake
    fake.answers, fake.latency = dict(SHIPPING_ANSWERS), 0.0


@pytest.fixture
def peer_login(pair: dict[str, Any], transactional_db: Any) -> None:
    """Instance two's customer account at instance one (the token instance two's settings name)."""
    customer = customer_create(email="two@example.com", name="Instance two")
    Token.objects.create(user=customer.user, key=TOKEN_AT_ONE)


def peer_runs(pair: dict[str, Any]) -> list[dict[str, Any]]:
    """Instance two's runs (its own database), newest first, as `manage.py trace` would find them."""
    script = (
        "import json; from orchestration.models import Run; print(json.dumps([{'id': str(r.id), 'status': r.status, "
        "'reason': r.reason, 'detail': r.reason_detail, 'trace_id': r.trace_id, 'guard': r.a2a_guard} "
        "for r in Run.objects.order_by('-created_at')[:20]]))"
    )
    return json.loads(manage(pair["peer_url"], pair["peer_redis"], "shell", "-c", script).strip().splitlines()[-1])


def test_a_delegated_step_answers_with_one_trace_in_both_systems(pair, fake_two, peer_login, make_customer) -> None:
    _, token = make_customer()
    trace_id = uuid.uuid4().hex
    params = message_params("How long does shipping take?")
    answer = run(jsonrpc(pair["one"], token, "SendMessage", params, traceparent=f"00-{trace_id}-{'cd' * 8}-01"))
    task = answer.json()["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED", task
    assert "business days" in task["artifacts"][0]["parts"][0]["text"]
    mine = Run.objects.get(id=task["id"])
    assert mine.trace_id == trace_id
    assert mine.steps.filter(agent="two", status="completed").exists()
    theirs = [r for r in peer_runs(pair) if r["trace_id"] == trace_id]
    assert len(theirs) == 1 and theirs[0]["status"] == "completed"
    assert theirs[0]["guard"]["path"] == [ONE] and theirs[0]["guard"]["hops"] == 1


def test_a_delegation_loop_is_stopped_with_the_reason_on_both_sides(pair, fake_two, peer_login, make_customer) -> None:
    customer, token = make_customer()
    fake_two.answers["triage"] = {"intent": "returns", "confidence": 0.9, "order_ids": []}
    params = message_params("I want to return my jacket, how do returns work?")
    params["configuration"] = {"returnImmediately": True}
    task = run(jsonrpc(pair["one"], token, "SendMessage", params)).json()["result"]["task"]
    mine = run_wait(task["id"], timeout=60)
    assert mine.status == "awaiting_review" and mine.reason == "remote_rejected"
    assert "a2a_loop_detected" in mine.reason_detail
    # Instance one refused its own request coming back (1 -> 2 -> 1), as the extension says...
    refused = Run.objects.exclude(conversation__customer=customer).get(trace_id=mine.trace_id)
    assert refused.status == "failed" and refused.reason == "a2a_loop_detected" and not refused.steps.exists()
    # ...and instance two, serving one's request, ended refused in turn (no review there), with the path.
    theirs = [r for r in peer_runs(pair) if r["trace_id"] == mine.trace_id]
    assert len(theirs) == 1 and theirs[0]["status"] == "failed" and theirs[0]["reason"] == "a2a_loop_detected"
    assert "a2a_loop_detected" in theirs[0]["detail"]
    assert ONE in refused.reason_detail and TWO in refused.reason_detail  # the refusing side names the path (staff)
    assert not Run.objects.filter(status__in=Run.ACTIVE).exists()
    assert not [r for r in peer_runs(pair) if r["status"] in ("queued", "running")]


def test_a_peer_that_goes_down_mid_call_ends_in_retries_then_review(pair, fake_two, peer_login, make_customer) -> None:
    """Instance two's web process stops while one's step follows its task: retries, then review — not a hung run."""
    _, token = make_customer()
    fake_two.latency = 1.5  # instance two's run takes a while: the call is in flight when two goes down
    params = message_params("How long does shipping take?")
    params["configuration"] = {"returnImmediately": True}
    task = run(jsonrpc(pair["one"], token, "SendMessage", params)).json()["result"]["task"]
    mine = Run.objects.get(id=task["id"])
    wait_for(lambda: mine.steps.filter(agent="two").exclude(memo={}).exists(), timeout=30)
    web_two = pair["two"]
    web_two.stop()
    try:
        mine = run_wait(mine.id, timeout=90)
    finally:
        web_two.start()
    assert mine.status == "awaiting_review", (mine.status, mine.reason, mine.reason_detail)
    step = mine.steps.get(agent="two")
    assert step.attempt >= 2 and step.status == "failed"
