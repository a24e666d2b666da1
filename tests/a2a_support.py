"""What the A2A tests share: the a2a-sdk client made for a token, raw JSON-RPC calls (for what a well-behaved client
never sends), messages, and a virtualenv with the v0.3 SDK."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from a2a.client import ClientConfig, ClientFactory, create_client
from a2a.types import a2a_pb2 as a2a

from harness.processes import ServerProcess, SupervisorProcess, WorkerProcess, free_port, web_server
from tests.conftest import ROOT_DIR as ROOT
from tests.conftest import WORKER_ENV, broker_reset

GUARD = "urn:switchboard:a2a:loop-guard:v1"


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


async def jsonrpc(
    url: str, token: str | None, method: str, params: Any, *, version: str = "1.0", **headers: str
) -> httpx.Response:
    """A raw JSON-RPC call (for what a well-behaved client never sends)."""
    sent = {"A2A-Version": version, **headers} if version else dict(headers)
    if token:
        sent["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            url + "/a2a/jsonrpc", json={"jsonrpc": "2.0", "id": 7, "method": method, "params": params}, headers=sent
        )


async def post(url: str, token: str | None, *, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    """A raw POST (`json=` or `content=`) with the token and `A2A-Version: 1.0`."""
    sent = {"A2A-Version": "1.0", **({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(url, headers=sent, **body)


def message_params(text: str, **extra: Any) -> dict[str, Any]:
    message = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"text": text}], **extra}
    return {"message": message}


def client_for_url(url: str, token: str, card: Any) -> Any:
    """A client for a card whose interfaces are pointed at `url` (another web process of the same deployment)."""
    patched = a2a.AgentCard()
    patched.CopyFrom(card)
    for interface in patched.supported_interfaces:
        interface.url = interface.url.replace(interface.url.split("/a2a/")[0], url)
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return ClientFactory(ClientConfig(httpx_client=http, streaming=True)).create(patched)


V03_SDK = "a2a-sdk==0.3.26"


def v03_python_make() -> str:
    """The python of a virtualenv with the v0.3 a2a-sdk (made once, kept in .run/ for the next test session)."""
    venv = ROOT / ".run" / "a2a-sdk-0.3"
    python = venv / "bin" / "python"
    stamp = venv / "installed.txt"
    if not (python.exists() and stamp.exists() and stamp.read_text() == V03_SDK):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "-q", V03_SDK], check=True, timeout=600)
        stamp.write_text(V03_SDK)
    return str(python)


@contextmanager
def switchboard(
    database_url: str, env: dict[str, str], *, webs: int = 1, name: str = "a2a", port: int | None = None
) -> Iterator[list[ServerProcess]]:
    """One Switchboard: `webs` web processes (the first at PUBLIC_BASE_URL, which this sets: on `port`, else a free
    one), a worker and a supervisor, on `database_url` (and `env`'s REDIS_URL, if any); yields the web processes."""
    if "REDIS_URL" not in env:
        broker_reset()
    port = port or free_port()
    env = {**WORKER_ENV, **env, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    servers = [web_server(database_url, env=env, port=port).start()]
    servers += [web_server(database_url, env=env).start() for _ in range(webs - 1)]
    worker = WorkerProcess(database_url, name=name, env=env).start()
    supervisor = SupervisorProcess(database_url, env=env).start()
    try:
        yield servers
    finally:
        supervisor.stop()
        worker.stop()
        for server in servers:
            server.stop()
