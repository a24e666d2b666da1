"""Switchboard as an A2A agent, driven by the official a2a-sdk client (not our code) over real HTTP: two web
processes (uvicorn, as `make run` serves), a real worker and supervisor, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import a2a_pb2 as a2a

from harness.processes import SupervisorProcess, WorkerProcess, free_port, web_server
from tests.conftest import WORKER_ENV, broker_reset

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def a2a_stack(database_url: str) -> Iterator[dict[str, Any]]:
    """Two web processes behind one PUBLIC_BASE_URL (the first's), a worker and a supervisor."""
    broker_reset()
    port = free_port()
    env = {**WORKER_ENV, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "A2A_BLOCKING_WAIT_SECONDS": "20"}
    first = web_server(database_url, env=env, port=port).start()
    second = web_server(database_url, env=env).start()
    worker = WorkerProcess(database_url, name="a2a", env=env).start()
    supervisor = SupervisorProcess(database_url, env=env).start()
    yield {"url": first.url, "other_url": second.url}
    supervisor.stop()
    worker.stop()
    second.stop()
    first.stop()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def user_message(text: str, *, context_id: str = "", message_id: str | None = None) -> a2a.Message:
    return a2a.Message(
        message_id=message_id or uuid.uuid4().hex,
        context_id=context_id,
        role=a2a.ROLE_USER,
        parts=[a2a.Part(text=text)],
    )


async def client_for(url: str, token: str, *, streaming: bool = False, polling: bool = False) -> Any:
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return await create_client(url, client_config=ClientConfig(httpx_client=http, streaming=streaming, polling=polling))


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
