"""Switchboard as an A2A agent, driven by the official a2a-sdk client (not our code) over real HTTP: two web
processes (uvicorn, as `make run` serves), a real worker and supervisor, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import a2a_pb2 as a2a
from django.conf import settings as django_settings

from orchestration.models import Run
from tests.a2a_support import (
    GUARD,
    client_for,
    client_for_url,
    jsonrpc,
    message_params,
    post,
    run,
    switchboard,
    user_message,
    v03_python_make,
)
from tests.conftest import ROOT_DIR as ROOT
from tests.conftest import llm_env

INSTANCE_ID = "switchboard-test-a"

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def a2a_stack(database_url: str, fake_server: Any) -> Iterator[dict[str, Any]]:
    """Two web processes of one Switchboard, a worker and a supervisor; the agents' model is the fake
    OpenAI-compatible server, whose latency a test can raise to keep a run in flight."""
    env = {
        **llm_env(fake_server),
        "A2A_BLOCKING_WAIT_SECONDS": "20",
        "A2A_INSTANCE_ID": INSTANCE_ID,
        "SSE_POLL_SECONDS": "0.5",
    }
    with switchboard(database_url, env, webs=2) as (web, other):
        yield {"url": web.url, "other_url": other.url, "fake": fake_server}


@pytest.fixture(scope="session")
def v03_python() -> str:
    return v03_python_make()


def test_the_card_is_public_and_absolute(a2a_stack) -> None:
    with urllib.request.urlopen(a2a_stack["url"] + "/.well-known/agent-card.json", timeout=10) as response:
        card = json.load(response)
    assert card["name"] == "Switchboard"
    interfaces = {(i["protocolBinding"], i["protocolVersion"]): i["url"] for i in card["supportedInterfaces"]}
    assert interfaces[("JSONRPC", "1.0")] == a2a_stack["url"] + "/a2a/jsonrpc"
    assert interfaces[("HTTP+JSON", "1.0")] == a2a_stack["url"] + "/a2a/rest"
    assert card["capabilities"]["streaming"] is True
    assert card["capabilities"]["extensions"][0]["uri"] == "urn:switchboard:a2a:loop-guard:v1"
    assert {s["id"] for s in card["skills"]} == {"order-status", "refunds", "help-centre"}
    assert card["securitySchemes"]["token"]["httpAuthSecurityScheme"]["scheme"] == "bearer"
    assert card["url"] == a2a_stack["url"] + "/a2a/jsonrpc"  # the v0.3 fields, for v0.3 clients


def test_blocking_send_answers_with_the_reply(a2a_stack, make_customer) -> None:
    _, token = make_customer()

    async def go() -> a2a.Task:
        client = await client_for(a2a_stack["url"], token)
        async with client:
            responses = [
                r
                async for r in client.send_message(
                    a2a.SendMessageRequest(message=user_message("How long does shipping take?"))
                )
            ]
        return responses[-1].task

    task = run(go())
    assert task.status.state == a2a.TASK_STATE_COMPLETED, task
    assert task.artifacts[0].parts[0].text
    assert task.status.message.parts[0].text == task.artifacts[0].parts[0].text
    assert [m.role for m in task.history][:1] == [a2a.ROLE_USER]


@pytest.fixture
def fake_llm(a2a_stack) -> Iterator[Any]:
    """The fake model, quick; a test may slow it (`fake_llm.latency = seconds`)."""
    fake = a2a_stack["fake"]
    fake.latency = 0.0
    yield fake
    fake.latency = 0.0


def test_return_immediately_then_get_task_until_it_ends(a2a_stack, fake_llm, make_customer) -> None:
    _, token = make_customer()
    fake_llm.latency = 0.3

    async def go() -> tuple[a2a.Task, a2a.Task, int]:
        client = await client_for(a2a_stack["url"], token, polling=True)
        async with client:
            request = a2a.SendMessageRequest(message=user_message("How long does shipping take?"))
            first = [r async for r in client.send_message(request)][-1].task
            polls = 0
            task = first
            for _ in range(200):
                if task.status.state in (a2a.TASK_STATE_COMPLETED, a2a.TASK_STATE_FAILED):
                    break
                await asyncio.sleep(0.2)
                polls += 1
                task = await client.get_task(a2a.GetTaskRequest(id=first.id))
        return first, task, polls

    first, last, polls = run(go())
    assert first.status.state in (a2a.TASK_STATE_SUBMITTED, a2a.TASK_STATE_WORKING)
    assert not first.artifacts
    assert polls > 1
    assert last.status.state == a2a.TASK_STATE_COMPLETED and last.artifacts[0].parts[0].text


def test_streaming_and_listing(a2a_stack, fake_llm, make_customer) -> None:
    _, token = make_customer()

    async def go() -> tuple[list[Any], a2a.ListTasksResponse, a2a.ListTasksResponse]:
        client = await client_for(a2a_stack["url"], token, streaming=True)
        async with client:
            events = [
                e
                async for e in client.send_message(
                    a2a.SendMessageRequest(message=user_message("How long does shipping take?"))
                )
            ]
            context_id = events[0].task.context_id
            follow_up = user_message("How long does shipping take?", context_id=context_id)
            more = [e async for e in client.send_message(a2a.SendMessageRequest(message=follow_up))]
            listed = await client.list_tasks(a2a.ListTasksRequest(context_id=context_id, page_size=1))
            rest = await client.list_tasks(
                a2a.ListTasksRequest(context_id=context_id, page_size=1, page_token=listed.next_page_token)
            )
        return events + more, listed, rest

    events, listed, rest = run(go())
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task"
    finals = [e.status_update for e in events if e.WhichOneof("payload") == "status_update"]
    assert [s.status.state for s in finals].count(a2a.TASK_STATE_COMPLETED) == 2
    assert any(e.WhichOneof("payload") == "artifact_update" for e in events)
    assert listed.total_size == 2 and len(listed.tasks) == 1 and listed.next_page_token
    assert len(rest.tasks) == 1 and rest.tasks[0].id != listed.tasks[0].id and not rest.next_page_token


def test_resubscribe_through_another_web_process(a2a_stack, fake_llm, make_customer) -> None:
    """Sent to one web process, followed through another: the task lives in the database, not in a process."""
    _, token = make_customer()
    fake_llm.latency = 0.8

    async def go() -> tuple[a2a.Task, list[Any]]:
        sender = await client_for(a2a_stack["url"], token, polling=True)
        async with sender:
            task = [
                r
                async for r in sender.send_message(
                    a2a.SendMessageRequest(message=user_message("How long does shipping take?"))
                )
            ][-1].task
        async with httpx.AsyncClient(timeout=30) as http:
            card = await A2ACardResolver(http, a2a_stack["url"]).get_agent_card()
        other = client_for_url(a2a_stack["other_url"], token, card)
        async with other:
            events = [e async for e in other.subscribe(a2a.SubscribeToTaskRequest(id=task.id))]
        return task, events

    task, events = run(go())
    assert task.status.state != a2a.TASK_STATE_COMPLETED
    states = [e.status_update.status.state for e in events if e.WhichOneof("payload") == "status_update"]
    assert states[-1] == a2a.TASK_STATE_COMPLETED


def test_isolation_and_bad_input_are_clear_errors_and_store_nothing(a2a_stack, fake_llm, make_customer) -> None:
    url = a2a_stack["url"]
    _, token = make_customer()
    _, other = make_customer()
    task = run(jsonrpc(url, token, "SendMessage", message_params("How long does shipping take?")))
    task_id, context_id = task.json()["result"]["task"]["id"], task.json()["result"]["task"]["contextId"]
    runs_before = Run.objects.count()

    def error(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200, response.text
        return response.json()["error"]

    # Another customer's token: the task does not exist for them, whatever the method.
    assert error(run(jsonrpc(url, other, "GetTask", {"id": task_id})))["code"] == -32001
    assert error(run(jsonrpc(url, other, "CancelTask", {"id": task_id})))["code"] == -32001
    assert run(jsonrpc(url, other, "ListTasks", {"contextId": context_id})).json()["result"]["tasks"] == []
    assert error(run(jsonrpc(url, other, "SendMessage", message_params("hi", contextId=context_id))))["code"] == -32602

    subscribe = {"jsonrpc": "2.0", "id": 1, "method": "SubscribeToTask", "params": {"id": task_id}}
    assert "-32001" in run(post(url + "/a2a/jsonrpc", other, json=subscribe)).text
    # Unknown task, no token, bad token.
    assert error(run(jsonrpc(url, token, "GetTask", {"id": str(uuid.uuid4())})))["code"] == -32001
    assert error(run(jsonrpc(url, token, "GetTask", {"id": "../../etc"})))["code"] == -32001
    assert run(jsonrpc(url, None, "GetTask", {"id": task_id})).status_code == 401
    assert run(jsonrpc(url, "not-a-token", "GetTask", {"id": task_id})).status_code == 401

    # Malformed JSON-RPC, unknown method, bad params, oversized message, non-text parts.
    def raw(body: bytes) -> Any:
        return post(url + "/a2a/jsonrpc", token, content=body, headers={"Content-Type": "application/json"})

    assert error(run(raw(b'{"jsonrpc": "2.0", "id": 1, "method": ')))["code"] == -32700
    assert error(run(raw(b"[1, 2]")))["code"] == -32600
    assert error(run(jsonrpc(url, token, "NoSuchMethod", {})))["code"] == -32601
    assert error(run(jsonrpc(url, token, "SendMessage", {"message": {"role": "ROLE_USER"}})))["code"] in (
        -32602,
        -32600,
    )
    big = run(jsonrpc(url, token, "SendMessage", message_params("x" * 200_000)))
    assert big.status_code == 413 or error(big)["code"] in (-32602, -32600)
    too_long = run(jsonrpc(url, token, "SendMessage", message_params("x" * 20_000)))
    assert error(too_long)["code"] == -32602
    file_part = {"message": {"messageId": "f1", "role": "ROLE_USER", "parts": [{"url": "http://example.invalid/x"}]}}
    assert error(run(jsonrpc(url, token, "SendMessage", file_part)))["code"] == -32005
    # The same messageId: the same task; with other content, an error.
    params = message_params("How long does shipping take?")
    params["configuration"] = {"returnImmediately": True}
    first = run(jsonrpc(url, token, "SendMessage", params)).json()["result"]["task"]
    again = run(jsonrpc(url, token, "SendMessage", params)).json()["result"]["task"]
    assert again["id"] == first["id"] and again["contextId"] == first["contextId"]
    params["message"]["parts"] = [{"text": "Refund everything."}]
    assert "already used" in error(run(jsonrpc(url, token, "SendMessage", params)))["message"]
    assert Run.objects.count() == runs_before + 1  # only the deduplicated message made a run


def test_loop_guard_rejects_and_caps(a2a_stack, fake_llm, make_customer) -> None:
    url = a2a_stack["url"]
    _, token = make_customer()
    # A request from a peer that uses the extension: accepted, its guard kept on the run for onward delegation.
    params = message_params(
        "How long does shipping take?", metadata={GUARD: {"hops": 1, "maxHops": 4, "path": ["peer-a"]}}
    )
    params["configuration"] = {"returnImmediately": True}
    accepted = run(jsonrpc(url, token, "SendMessage", params)).json()["result"]["task"]
    assert Run.objects.get(id=accepted["id"]).a2a_guard == {"hops": 1, "maxHops": 4, "path": ["peer-a"]}
    # A request that already went through this instance: rejected, with the reason; nothing runs.
    looped = message_params("hi again")
    looped["message"]["metadata"] = {GUARD: {"hops": 2, "maxHops": 4, "path": ["peer-a", INSTANCE_ID]}}
    rejected = run(jsonrpc(url, token, "SendMessage", looped)).json()["result"]["task"]
    assert rejected["status"]["state"] == "TASK_STATE_REJECTED"
    assert "not accepted" in rejected["status"]["message"]["parts"][0]["text"]  # a fixed sentence: no path, no hosts
    assert rejected["metadata"][GUARD]["refused"] == "a2a_loop_detected"
    run_ = Run.objects.get(id=rejected["id"])
    assert run_.status == "failed" and run_.reason == "a2a_loop_detected" and not run_.steps.exists()
    hops = message_params("hops")
    hops["message"]["metadata"] = {GUARD: {"hops": 5, "maxHops": 4, "path": ["a", "b", "c", "d"]}}
    assert (
        run(jsonrpc(url, token, "SendMessage", hops)).json()["result"]["task"]["status"]["state"]
        == "TASK_STATE_REJECTED"
    )
    broke = message_params("money")
    broke["message"]["metadata"] = {GUARD: {"hops": 1, "maxHops": 4, "path": ["a"], "costLeftUsd": "0"}}
    assert (
        run(jsonrpc(url, token, "SendMessage", broke)).json()["result"]["task"]["status"]["state"]
        == "TASK_STATE_REJECTED"
    )
    malformed = message_params("bad")
    malformed["message"]["metadata"] = {GUARD: {"hops": "many"}}
    assert run(jsonrpc(url, token, "SendMessage", malformed)).json()["error"]["code"] == -32602
    # A budget left caps the run's own.
    capped = message_params("How long does shipping take?")
    capped["message"]["metadata"] = {
        GUARD: {"hops": 1, "maxHops": 4, "path": ["a"], "tokensLeft": 123, "costLeftUsd": "0.5"}
    }
    capped["configuration"] = {"returnImmediately": True}
    task = run(jsonrpc(url, token, "SendMessage", capped, **{"A2A-Extensions": GUARD})).json()["result"]["task"]
    limits = Run.objects.get(id=task["id"]).budget
    assert limits["max_tokens"] == 123 and limits["max_cost_usd"] == 0.5
    assert task["metadata"][GUARD]["spentTokens"] == 0


def test_traceparent_is_honoured(a2a_stack, fake_llm, make_customer) -> None:
    _, token = make_customer()
    trace_id = uuid.uuid4().hex
    params = message_params("How long does shipping take?")
    params["configuration"] = {"returnImmediately": True}
    task = run(jsonrpc(a2a_stack["url"], token, "SendMessage", params, traceparent=f"00-{trace_id}-{'ab' * 8}-01"))
    assert Run.objects.get(id=task.json()["result"]["task"]["id"]).trace_id == trace_id
    assert task.headers["X-Trace-Id"] == trace_id


def test_a_v03_client_speaks_to_the_same_server(a2a_stack, fake_llm, make_customer, v03_python) -> None:
    """a2a-sdk 0.3 (message/send, tasks/get, message/stream; no A2A-Version header) against the v1.0 server."""
    _, token = make_customer()
    script = ROOT / "harness" / "a2a_v03_client.py"
    done = subprocess.run(
        [v03_python, str(script), a2a_stack["url"], token], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["card"]["url"] == a2a_stack["url"] + "/a2a/jsonrpc" and result["card"]["protocolVersion"] == "0.3"
    assert result["sent"]["kind"] == "task" and result["sent"]["status"]["state"] == "completed"
    assert result["sent"]["artifacts"][0]["parts"][0]["text"]
    assert result["got"]["id"] == result["sent"]["id"] and result["got"]["status"]["state"] == "completed"
    assert result["streamed"][0]["kind"] == "task"
    assert (
        result["streamed"][-1]["kind"] == "status-update" and result["streamed"][-1]["status"]["state"] == "completed"
    )


def test_the_http_json_binding_and_the_extended_card(a2a_stack, fake_llm, make_customer) -> None:
    """The same tasks through the HTTP+JSON (REST) binding, chosen by the client from the card."""
    _, token = make_customer()

    async def go() -> tuple[a2a.Task, a2a.Task, a2a.AgentCard, int]:
        http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        config = ClientConfig(httpx_client=http, streaming=False, supported_protocol_bindings=["HTTP+JSON"])
        client = await create_client(a2a_stack["url"], client_config=config)
        async with client:
            request = a2a.SendMessageRequest(message=user_message("How long does shipping take?"))
            task = [r async for r in client.send_message(request)][-1].task
            got = await client.get_task(a2a.GetTaskRequest(id=task.id))
            extended = await client.get_extended_agent_card(a2a.GetExtendedAgentCardRequest())
        async with httpx.AsyncClient(timeout=30) as anonymous:
            refused = await anonymous.get(a2a_stack["url"] + f"/a2a/rest/tasks/{task.id}")
        return task, got, extended, refused.status_code

    task, got, extended, anonymous_status = run(go())
    assert task.status.state == a2a.TASK_STATE_COMPLETED and got.id == task.id
    assert got.artifacts[0].parts[0].text == task.artifacts[0].parts[0].text
    assert "Your limits" in extended.description
    assert anonymous_status == 401


def test_cancel_mid_run_delivers_nothing_after(a2a_stack, fake_llm, make_customer) -> None:
    _, token = make_customer()
    fake_llm.latency = 1.0

    async def go() -> tuple[a2a.Task, a2a.Task, a2a.Task]:
        client = await client_for(a2a_stack["url"], token, polling=True)
        async with client:
            request = a2a.SendMessageRequest(message=user_message("How long does shipping take?"))
            task = [r async for r in client.send_message(request)][-1].task
            for _ in range(100):
                task = await client.get_task(a2a.GetTaskRequest(id=task.id))
                if task.status.state == a2a.TASK_STATE_WORKING:
                    break
                await asyncio.sleep(0.05)
            cancelled = await client.cancel_task(a2a.CancelTaskRequest(id=task.id))
            again = await client.cancel_task(a2a.CancelTaskRequest(id=task.id))
            await asyncio.sleep(4)  # longer than the steps that were in flight
            after = await client.get_task(a2a.GetTaskRequest(id=task.id))
        return cancelled, again, after

    cancelled, again, after = run(go())
    assert cancelled.status.state == again.status.state == after.status.state == a2a.TASK_STATE_CANCELED
    assert not after.artifacts
    run_ = Run.objects.get(id=cancelled.id)
    assert run_.status == "cancelled"
    replies = run_.conversation.messages.filter(role="assistant")
    assert not replies.exists()
    # A task that has ended cannot be cancelled.
    done = run(jsonrpc(a2a_stack["url"], token, "SendMessage", message_params("How long does shipping take?")))
    done_id = done.json()["result"]["task"]["id"]
    assert run(jsonrpc(a2a_stack["url"], token, "CancelTask", {"id": done_id})).json()["error"]["code"] == -32002


def test_the_rest_apis_message_throttle_counts_a2a_messages(a2a_stack, fake_llm, make_customer) -> None:
    """One counter per customer, whichever interface the messages come through."""
    customer, token = make_customer()
    counter = redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])
    key = f"switchboard:throttle_message_{customer.user.pk}"
    counter.set(key, 20, ex=60)  # THROTTLE_MESSAGE_RATE's 20/min used up (through the REST API, say)
    refused = run(jsonrpc(a2a_stack["url"], token, "SendMessage", message_params("How long does shipping take?")))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    v03 = run(
        jsonrpc(
            a2a_stack["url"],
            token,
            "message/send",
            {"message": {"messageId": "m", "role": "user", "parts": [{"kind": "text", "text": "hi"}]}},
            version="",
        )
    )
    assert v03.status_code == 429

    rest = post(a2a_stack["url"] + "/a2a/rest/message:send", token, json=message_params("How long does shipping?"))
    assert run(rest).status_code == 429
    assert not Run.objects.filter(conversation__customer=customer).exists()
    counter.delete(key)
    reads = run(jsonrpc(a2a_stack["url"], token, "ListTasks", {}))  # not a message: not counted
    assert reads.status_code == 200
