"""A fake remote A2A agent for tests: a real A2A server on 127.0.0.1, made of the a2a-sdk's own server pieces (its
request handler, in-memory task store, JSON-RPC and HTTP+JSON routes, agent card route) under uvicorn in a thread,
with a trivial, scripted agent executor. It stands in for another agent system (another Switchboard) that a remote
agent step (agents/remote.py) calls over real HTTP.

Controlled from the test: `behaviour` is "answer" (completes at once with `answer`, reporting `spent_tokens` and
`spent_cost` as a Switchboard does), "slow" (works for `slow_seconds`, or until `release()`, then answers), "fail"
(ends failed) or "input" (input-required). Its loop guard refuses, as a Switchboard's does, a request whose path
already holds its `instance_id` or whose hops or budget are spent: the task ends rejected with the reason.

Faults: `fail_next("500", ...)` answers the next A2A requests with those HTTP statuses; `send_delay` holds a
SendMessage's answer after its task exists, `poll_delay` a GetTask's (windows to kill the caller in); `down()` stops
the server (connections are refused) and `up()` starts it again on the same port (its tasks kept, as with a
persistent store; tasks it was working on stay working, as after a crash).

Like a Switchboard it deduplicates by message id: a message id seen before answers with its task, and no second task
starts. Every request is recorded (`requests`: which A2A method, path, headers, body); the token it accepts is
`token` (`Authorization: Token <token>`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import uvicorn
from a2a.helpers import new_task, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentSkill,
    GetTaskRequest,
    Message,
    SendMessageRequest,
    Task,
    TaskState,
)
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agents.a2a_guard import LOOP_GUARD_URI, LoopGuard, LoopGuardInvalid, LoopGuardSpent
from harness.processes import free_port

BINDINGS = {"JSONRPC": "/a2a/jsonrpc", "HTTP+JSON": "/a2a/rest"}
#: The A2A methods of the HTTP+JSON binding, by how their path ends (and the HTTP method).
REST_METHODS = {("message:send", "POST"): "SendMessage", (":cancel", "POST"): "CancelTask", ("", "GET"): "GetTask"}


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    """The A2A method (SendMessage, GetTask, CancelTask), "card" for the agent card."""
    path: str
    """The URL path (which binding)."""
    headers: dict[str, str]
    """Its headers, names in lower case."""
    body: dict[str, Any]
    """Its JSON body ({} for none)."""


class FakeA2A:
    """See the module's docstring. `binding` is the interface the card lists first ("JSONRPC" or "HTTP+JSON")."""

    def __init__(self, *, token: str = "fake-remote-token", instance_id: str = "fake-remote") -> None:
        self.token, self.instance_id = token, instance_id
        self.port = free_port()
        self.binding = "JSONRPC"
        self.store = InMemoryTaskStore()
        self.requests: list[Recorded] = []
        self.tasks_by_message: dict[str, str] = {}
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Default behaviour, no faults, nothing recorded."""
        with self._lock:
            self.behaviour, self.answer = "answer", "Our warranty desk says: the stove is covered for two years."
            self.slow_seconds, self.send_delay, self.poll_delay = 2.0, 0.0, 0.0
            self.released = threading.Event()
            self.spent_tokens, self.spent_cost = 120, "0.004200"
            self.requests.clear()
            self._faults.clear()

    # --- control -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def card_url(self) -> str:
        return f"{self.url}/.well-known/agent-card.json"

    def up(self) -> FakeA2A:
        """Serve (again) on the same port; returns once it accepts connections."""
        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the fake A2A agent did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def down(self) -> None:
        """Stop serving: connections are refused until `up()`."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def release(self) -> None:
        """Let the tasks working ("slow") finish now."""
        self.released.set()

    def fail_next(self, *statuses: str) -> None:
        """Answer the next A2A requests (not the card) with these HTTP statuses ("500", "503", ...)."""
        with self._lock:
            self._faults.extend(statuses)

    def calls(self, method: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method]

    def tasks_started(self) -> int:
        """Tasks the fake started (one per distinct message id)."""
        with self._lock:
            return len(self.tasks_by_message)

    # --- serving -------------------------------------------------------------------------
    def _card(self) -> AgentCard:
        interfaces = [
            AgentInterface(url=self.url + path, protocol_binding=binding, protocol_version="1.0")
            for binding, path in sorted(BINDINGS.items(), key=lambda item: item[0] != self.binding)
        ]
        return AgentCard(
            name="Fake remote desk",
            description="A scripted remote agent for tests.",
            version="1",
            supported_interfaces=interfaces,
            capabilities=AgentCapabilities(streaming=False, extensions=[AgentExtension(uri=LOOP_GUARD_URI)]),
            default_input_modes=["text/plain"],
            default_output_modes=["text/plain"],
            skills=[AgentSkill(id="answer", name="Answer", description="Answers questions.", tags=["test"])],
        )

    async def _card_now(self, card: AgentCard) -> AgentCard:
        return self._card()  # `binding` may have changed since the route was made

    def _app(self) -> Starlette:
        handler = _DedupHandler(self, agent_executor=_Executor(self), task_store=self.store, agent_card=self._card())
        routes = [
            *create_agent_card_routes(self._card(), card_modifier=self._card_now),
            *create_jsonrpc_routes(handler, BINDINGS["JSONRPC"]),
            *create_rest_routes(handler, path_prefix=BINDINGS["HTTP+JSON"]),
        ]
        app = Starlette(routes=routes)
        app.add_middleware(BaseHTTPMiddleware, dispatch=self._middleware)
        return app

    async def _middleware(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Record the request; answer a queued fault or a bad token instead of the A2A server."""
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        with self._lock:
            headers = {name.lower(): value for name, value in request.headers.items()}
            self.requests.append(Recorded(_method(request, body), request.url.path, headers, body))
            fault = self._faults.popleft() if self._faults and request.url.path.startswith("/a2a") else None
        if fault is not None:
            return Response(f"fault {fault}", status_code=int(fault))
        if request.url.path.startswith("/a2a") and request.headers.get("authorization") != f"Token {self.token}":
            return JSONResponse({"error": "bad token"}, status_code=401)
        if self.requests[-1].method == "GetTask":
            await asyncio.sleep(self.poll_delay)
        return await call_next(request)


def _method(request: Request, body: dict[str, Any]) -> str:
    if request.url.path.startswith(BINDINGS["JSONRPC"]):
        return str(body.get("method", ""))
    if request.url.path.startswith(BINDINGS["HTTP+JSON"]):
        tail = request.url.path.removeprefix(BINDINGS["HTTP+JSON"])
        ends = [(end, verb) for end, verb in REST_METHODS if request.method == verb and (not end or tail.endswith(end))]
        return REST_METHODS[ends[0]] if ends else tail
    return "card"


class _DedupHandler(DefaultRequestHandler):
    """The a2a-sdk's request handler, deduplicating by message id as a Switchboard does."""

    def __init__(self, fake: FakeA2A, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fake = fake

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Message | Task:
        message_id = params.message.message_id
        with self.fake._lock:
            known = self.fake.tasks_by_message.get(message_id)
        if known is not None:
            task = await self.on_get_task(GetTaskRequest(id=known), context)
            assert task is not None
            return task
        result = await super().on_message_send(params, context)
        if isinstance(result, Task):
            with self.fake._lock:
                self.fake.tasks_by_message[message_id] = result.id
        await asyncio.sleep(self.fake.send_delay)
        return result


class _Executor(AgentExecutor):
    """Works as the fake's `behaviour` says, after its loop guard."""

    def __init__(self, fake: FakeA2A) -> None:
        self.fake = fake

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        fake = self.fake
        assert context.task_id is not None and context.context_id is not None and context.message is not None
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        refusal = _refusal(context.message, fake.instance_id)
        task = new_task(context.task_id, context.context_id, TaskState.TASK_STATE_WORKING, history=[context.message])
        if refusal is not None:  # refused before any work: the task is born rejected
            task.status.state = TaskState.TASK_STATE_REJECTED
            task.status.message.CopyFrom(_say(updater, refusal))
        await event_queue.enqueue_event(task)
        if refusal is not None:
            return
        if fake.behaviour == "slow":
            deadline = time.monotonic() + fake.slow_seconds
            while time.monotonic() < deadline and not fake.released.is_set():
                await asyncio.sleep(0.05)
        if fake.behaviour == "fail":
            await updater.failed(_say(updater, "the warranty database is unavailable"))
        elif fake.behaviour == "input":
            await updater.requires_input(_say(updater, "Which serial number does the stove have?"))
        else:
            await updater.add_artifact([new_text_part(fake.answer)], name="answer")
            spent = LoopGuardSpent(tokens=fake.spent_tokens, cost_usd=Decimal(fake.spent_cost))
            await updater.update_status(TaskState.TASK_STATE_COMPLETED, metadata=spent.to_metadata())

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None and context.context_id is not None
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def _refusal(message: Message, instance_id: str) -> str | None:
    """Why the loop guard refuses the message ("code: sentence"), or None."""
    try:
        guard = LoopGuard.from_metadata(MessageToDict(message.metadata))
    except LoopGuardInvalid as exc:
        return f"loop_guard_invalid: {exc}"
    refused = guard.refusal(instance_id=instance_id) if guard is not None else None
    return f"{refused[0]}: {refused[1]}" if refused is not None else None


def _say(updater: TaskUpdater, text: str) -> Message:
    return updater.new_agent_message([new_text_part(text)])
