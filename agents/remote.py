"""Remote A2A agents as steps: another agent system (another Switchboard, a partner's) answers the customer's question
as one step of a run, behind the task wrapper of local agents (docs/a2a.md, "Remote agents as steps"). Each entry of
settings A2A_REMOTE_AGENTS becomes an agent of that name (`remote_agents`); A2A_REMOTE_ROUTES lets the planner use it.

No try waits for the remote's work. The first sends the question with `returnImmediately` (a2a-sdk client, JSON-RPC
or HTTP+JSON as the agent card offers) and gets the remote task back; while it works the try ends with
`RemotePending` (a `PollLater`): the step waits as a due row the supervisor sends again after poll_seconds, using up
no retry, and each later try polls the task once (`GetTask`). Message id and task id live in the step record
(`StepMemo`); the message id, derived from run and step, is written before it is sent, so a try repeated after a
crash sends the same id and the remote (deduplicating by message id) returns the same task, not a second one.
Every request carries the run's W3C `traceparent` and activates our loop guard (`A2A-Extensions`; the `LoopGuard` in
message.metadata); a circuit breaker per remote agent (`a2a:<name>`) pauses calls to one that keeps failing.

The remote task's end decides the step (`RemoteState`): completed -> its text is the answer (`remote_answers`, passed
on by the responder) and what it reports spent (`LoopGuardSpent`) is added to the run; rejected (its loop guard),
input-required, auth-required, or still working after max_polls (cancelled, best effort) -> review with the
remote's reason (`RemoteHalted`); failed, canceled -> a permanent failure with its reason (`RemoteFailed`). HTTP 5xx,
timeouts and refused connections are transient (`RemoteUnavailable`: retries, then review and a dead letter); other
HTTP 4xx and protocol errors are permanent (a configuration to fix).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, ClassVar, assert_never, cast
from urllib.parse import urlsplit

import httpx
from a2a.client import A2ACardResolver, Client, ClientCallContext, ClientConfig, ClientFactory
from a2a.client.errors import A2AClientTimeoutError, AgentCardResolutionError
from a2a.extensions.common import HTTP_EXTENSION_HEADER
from a2a.helpers import get_artifact_text, get_message_text, new_text_part
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskState,
)
from a2a.utils.constants import TransportProtocol
from a2a.utils.errors import A2AError, InternalError
from django.conf import settings
from google.protobuf.json_format import MessageToDict

from agents.a2a_guard import LOOP_GUARD_URI, LoopGuard, LoopGuardInvalid, LoopGuardSpent, refusal_of
from agents.base import MICRO_USD, Agent, AgentResult, Queue, StepMemo, Usage
from agents.envelope import Envelope
from agents.llm.breaker import CircuitBreaker
from agents.payload import RemoteAnswer
from agents.remote_errors import (
    RemoteCircuitOpen,
    RemoteFailed,
    RemoteHalted,
    RemotePending,
    RemoteRefused,
    RemoteUnavailable,
)
from project.errors import PermanentError, SwitchboardError
from project.tracing import traceparent

logger = logging.getLogger(__name__)


class RemoteState(enum.StrEnum):
    """Where a remote task stands, as a step sees it."""

    WORKING = "working"
    """Submitted or working (or a state this client does not know yet): poll again."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    REJECTED = "rejected"
    INPUT_REQUIRED = "input_required"
    AUTH_REQUIRED = "auth_required"


TASK_STATES = {
    TaskState.TASK_STATE_COMPLETED: RemoteState.COMPLETED,
    TaskState.TASK_STATE_FAILED: RemoteState.FAILED,
    TaskState.TASK_STATE_CANCELED: RemoteState.CANCELED,
    TaskState.TASK_STATE_REJECTED: RemoteState.REJECTED,
    TaskState.TASK_STATE_INPUT_REQUIRED: RemoteState.INPUT_REQUIRED,
    TaskState.TASK_STATE_AUTH_REQUIRED: RemoteState.AUTH_REQUIRED,
}


@dataclass(frozen=True)
class RemoteConfig:
    """One remote agent's settings: an entry of A2A_REMOTE_AGENTS, checked by project/settings_a2a.py."""

    name: str
    """The agent's name on routing slips (its task is `agents.<name>`)."""
    card_url: str
    """Where its agent card is (`https://host/.well-known/agent-card.json`)."""
    token: str
    """Sent as `Authorization: Token <token>` ('' sends none); read from the variable `token_env` names."""
    time_limit_seconds: int
    """One try's time limit (a send, or one poll)."""
    request_timeout_seconds: float
    """Each HTTP request's timeout."""
    poll_seconds: float
    """How long a step waits between polls of a working task."""
    max_polls: int
    """Polls after which a task still working is given up (`remote_timed_out`)."""
    max_retries: int
    """Transient failures retried before the run goes to review."""


@dataclass
class RemoteCall:
    """What a remote step keeps in its step record (`StepMemo`) across its tries."""

    message_id: str
    """The id of the message the step sends: derived from run, step and generation, written before it is sent."""
    generation: int = 0
    """Remote tasks this step saw end without an answer before (a dead-letter replay starts a new one: sending the
    same message id again would only bring back the old task)."""
    task_id: str = ""
    """The remote task, once the remote named it."""
    polls: int = 0
    """GetTask calls made."""
    ended: str = ""
    """The `RemoteState` the task ended in without an answer ('' while it may still answer)."""


def remote_agents() -> list[Agent]:
    """An agent per entry of settings A2A_REMOTE_AGENTS (`agents.registry` registers them with the built-in ones)."""
    return [remote_agent_class(RemoteConfig(name=name, **data))() for name, data in settings.A2A_REMOTE_AGENTS.items()]


def remote_agent_class(config: RemoteConfig) -> type[RemoteAgent]:
    """A `RemoteAgent` subclass for one configuration: name, time limit and retries are class attributes."""
    attributes = {
        "name": config.name,
        "config": config,
        "time_limit": config.time_limit_seconds,
        "max_retries": config.max_retries,
    }
    return cast(type[RemoteAgent], type(f"RemoteAgent_{config.name}", (RemoteAgent,), attributes))


#: Agent cards by URL, with when they were fetched: per process, kept for A2A_CARD_TTL_SECONDS.
_cards: dict[str, tuple[float, AgentCard]] = {}
_cards_lock = threading.Lock()


class RemoteAgent(Agent):
    """A remote A2A agent as a step (see the module's docstring); one subclass per configured agent."""

    version = "1"
    queue = Queue.LLM  # a try waits on the network, like an LLM call
    review_when_exhausted = True
    replay_safe = False  # a replay never sends to a partner
    config: ClassVar[RemoteConfig]

    def handle(self, envelope: Envelope) -> AgentResult:
        raise PermanentError(f"{self.name} keeps its remote task in its step record: it runs only as a step.")

    def handle_step(self, envelope: Envelope, memo: StepMemo) -> AgentResult:
        call = self.call_of(envelope, memo)
        breaker = CircuitBreaker(
            f"a2a:{self.name}",
            threshold=settings.A2A_BREAKER_FAILURES,
            cooldown=settings.A2A_BREAKER_COOLDOWN_SECONDS,
            call_seconds=self.config.request_timeout_seconds,
            open_error=RemoteCircuitOpen,
        )
        probing = breaker.before_call()
        if call.task_id:
            call.polls += 1
            memo.put(asdict(call))
        started = time.monotonic()
        try:
            # On a loop of its own: a try is synchronous, and a worker's thread has no loop.
            reply = asyncio.run(self._exchange(envelope, call))
        except (A2AError, httpx.HTTPError, ValueError) as exc:
            raise self._failure(exc, breaker, probing) from exc
        breaker.record_success()
        return self.outcome(envelope, reply, call, memo, latency_ms=int((time.monotonic() - started) * 1000))

    def call_of(self, envelope: Envelope, memo: StepMemo) -> RemoteCall:
        """The step's remote call: the one its tries are on, or a new one (after a task that ended without an answer,
        a new generation), its message id written to the step record before anything is sent."""
        kept = memo.get()
        call = RemoteCall(**kept) if kept else None
        if call is not None and not call.ended:
            return call
        generation = call.generation + 1 if call is not None else 0
        message_id = uuid.uuid5(uuid.NAMESPACE_URL, f"switchboard:{envelope.run_id}:{memo.key}:{generation}")
        call = RemoteCall(message_id=str(message_id), generation=generation)
        memo.put(asdict(call))
        return call

    def outcome(
        self, envelope: Envelope, reply: Task | Message, call: RemoteCall, memo: StepMemo, *, latency_ms: int
    ) -> AgentResult:
        """The step's result from the remote's reply, or the error that ends (or postpones) its try."""
        if isinstance(reply, Message):  # a direct answer, without a task
            return self._answered(get_message_text(reply), task_id="", metadata={}, latency_ms=latency_ms)
        if not call.task_id:
            call.task_id = reply.id
            memo.put(asdict(call))
        state = TASK_STATES.get(reply.status.state, RemoteState.WORKING)
        where = f"{self.name}'s task {reply.id}"
        said = get_message_text(reply.status.message)
        why = said or "no reason given"
        match state:
            case RemoteState.WORKING:
                if call.polls < self.config.max_polls:
                    waited = f"poll {call.polls} of {self.config.max_polls}"
                    raise RemotePending(f"{where} is still working ({waited}).", retry_after=self.config.poll_seconds)
                self._end(call, memo, state)
                self._cancel(envelope, call)
                seconds = self.config.max_polls * self.config.poll_seconds
                raise RemoteHalted(
                    f"{where} did not finish within {call.polls} polls ({seconds:g}s).", code="remote_timed_out"
                )
            case RemoteState.COMPLETED:
                text = "\n".join(filter(None, (get_artifact_text(artifact) for artifact in reply.artifacts)))
                metadata = MessageToDict(reply.metadata)
                return self._answered(text or said, task_id=reply.id, metadata=metadata, latency_ms=latency_ms)
            case RemoteState.FAILED | RemoteState.CANCELED:
                self._end(call, memo, state)
                raise RemoteFailed(f"{where} ended {state.value}: {why}")
            case RemoteState.REJECTED:
                self._end(call, memo, state)
                refusal = refusal_of(MessageToDict(reply.metadata))
                rejected = (
                    f"{self.name} ({self.config.card_url}) rejected the request ({refusal or 'no reason code'}): {why}"
                )
                raise RemoteRefused(rejected, refusal=refusal) if refusal else RemoteHalted(rejected)
            case RemoteState.INPUT_REQUIRED | RemoteState.AUTH_REQUIRED:
                self._end(call, memo, state)
                raise RemoteHalted(f"{where} needs {state.value.split('_')[0]}: {why}", code=f"remote_{state.value}")
            case _:
                assert_never(state)

    def _answered(self, text: str, *, task_id: str, metadata: dict[str, Any], latency_ms: int) -> AgentResult:
        """The result of a remote answer: its text for the responder, what the remote spent for the run's budget."""
        try:
            spent = LoopGuardSpent.from_metadata(metadata)
        except LoopGuardInvalid as exc:
            logger.warning("%s reported its spending malformed (%s): counted as nothing", self.name, exc)
            spent = None
        usage = Usage(model=f"a2a:{self.name}", latency_ms=latency_ms)
        if spent is not None:
            # A remote reports one total of tokens: recorded as input tokens of the step.
            usage.input_tokens, usage.cost_usd = spent.tokens, spent.cost_usd.quantize(MICRO_USD)
        answer = RemoteAnswer(text=text, task_id=task_id, card_url=self.config.card_url)
        return AgentResult(payload={"remote_answers": {self.name: answer}}, usage=usage)

    def _end(self, call: RemoteCall, memo: StepMemo, state: RemoteState) -> None:
        call.ended = state.value
        memo.put(asdict(call))

    def guard(self, envelope: Envelope) -> LoopGuard:
        """The loop guard the message carries: one hop past the request this run serves, what the run may spend."""
        inbound_data = envelope.payload.get("loop_guard")
        try:
            inbound = LoopGuard.from_metadata({LOOP_GUARD_URI: inbound_data}) if inbound_data else None
        except LoopGuardInvalid as exc:
            raise PermanentError(f"the run's inbound loop guard is malformed: {exc}") from exc
        budget = envelope.budget
        cost_left = Decimal(str(budget.max_cost_usd)) - Decimal(str(budget.cost_used_usd))
        return LoopGuard.forward(
            inbound,
            instance_id=settings.A2A_INSTANCE_ID,
            max_hops=settings.A2A_MAX_HOPS,
            tokens_left=budget.max_tokens - budget.tokens_used,
            cost_left_usd=cost_left.quantize(MICRO_USD),
        )

    def message(self, envelope: Envelope, call: RemoteCall) -> Message:
        """The message sent: the customer's question as one text part — what every A2A agent accepts (`text/plain`;
        Switchboard's own card accepts nothing else) — and nothing else of the run (no history, no account facts), with
        the loop guard in its metadata."""
        message = Message(
            message_id=call.message_id,
            role=Role.ROLE_USER,
            parts=[new_text_part(envelope.payload["message"])],
            extensions=[LOOP_GUARD_URI],
        )
        message.metadata.update(self.guard(envelope).to_metadata())
        return message

    async def _exchange(self, envelope: Envelope, call: RemoteCall) -> Task | Message:
        """One request: send the message (no task yet) or get the task."""
        async with _http(self.config, envelope.trace_id) as http:
            client, context = await self._connect(http)
            if call.task_id:
                return await client.get_task(GetTaskRequest(id=call.task_id), context=context)
            request = SendMessageRequest(
                message=self.message(envelope, call),
                configuration=SendMessageConfiguration(return_immediately=True),
            )
            # Not streaming: one reply, a task or a message (the client raises ValueError for anything else).
            (reply,) = [reply async for reply in client.send_message(request, context=context)]
        return reply.task if reply.HasField("task") else reply.message

    async def _connect(self, http: httpx.AsyncClient) -> tuple[Client, ClientCallContext]:
        """An a2a-sdk client over `http` for the binding the agent card offers first among JSON-RPC and HTTP+JSON, and
        the call context that adds the token and activates the loop-guard extension."""
        card = await _card(http, self.config.card_url)
        bindings = [TransportProtocol.JSONRPC.value, TransportProtocol.HTTP_JSON.value]
        factory = ClientFactory(
            ClientConfig(streaming=False, polling=True, httpx_client=http, supported_protocol_bindings=bindings)
        )
        parameters = {HTTP_EXTENSION_HEADER: LOOP_GUARD_URI}
        if self.config.token:
            parameters["Authorization"] = f"Token {self.config.token}"
        context = ClientCallContext(timeout=self.config.request_timeout_seconds, service_parameters=parameters)
        return factory.create(card), context

    def _cancel(self, envelope: Envelope, call: RemoteCall) -> None:
        self.remote_cancel(task_id=call.task_id, trace_id=envelope.trace_id)

    def remote_cancel(self, *, task_id: str, trace_id: str) -> None:
        """Ask the remote to stop a task we gave up on (best effort: it may be gone, or finish anyway)."""

        async def cancel() -> None:
            async with _http(self.config, trace_id) as http:
                client, context = await self._connect(http)
                await client.cancel_task(CancelTaskRequest(id=task_id), context=context)

        try:
            asyncio.run(cancel())
        except (A2AError, httpx.HTTPError, ValueError) as exc:
            logger.info("%s: the remote task %s could not be cancelled: %s", self.name, task_id, exc)

    def _failure(self, exc: Exception, breaker: CircuitBreaker, probing: bool) -> SwitchboardError:
        """The Switchboard error for a failed request, reported to the breaker: the remote being away or failing
        counts against it, a remote that answers (even with an error) does not."""
        cause = exc if isinstance(exc, httpx.HTTPError) else exc.__cause__
        status = exc.status_code if isinstance(exc, AgentCardResolutionError) else None
        if isinstance(cause, httpx.HTTPStatusError):
            status = cause.response.status_code
        where = f"{self.name} ({self.config.card_url})"
        if isinstance(exc, A2AClientTimeoutError) or isinstance(cause, httpx.TimeoutException):
            breaker.record_failure(probing)
            return RemoteUnavailable(f"{where} did not answer within {self.config.request_timeout_seconds:g}s.")
        if status is None and isinstance(cause, httpx.RequestError):
            breaker.record_failure(probing)
            return RemoteUnavailable(f"cannot reach {where}: {type(cause).__name__}: {cause}")
        if (status is not None and (status >= 500 or status == 408)) or isinstance(exc, InternalError):
            breaker.record_failure(probing)
            return RemoteUnavailable(f"{where} failed: HTTP {status or 200}: {exc}")
        breaker.record_success()  # it answered: the request, not the remote, is what is wrong
        if status == 429:
            return RemoteUnavailable(f"{where} is rate-limiting us (HTTP 429).")
        return RemoteFailed(f"{where} refused the request: {type(exc).__name__}: {exc}")


def _http(config: RemoteConfig, trace_id: str) -> httpx.AsyncClient:
    """An HTTP client for one exchange: every request carries the run's traceparent and times out after
    request_timeout_seconds."""
    return httpx.AsyncClient(timeout=config.request_timeout_seconds, headers={"traceparent": traceparent(trace_id)})


async def _card(http: httpx.AsyncClient, url: str) -> AgentCard:
    """The agent card at `url`, fetched at most once per A2A_CARD_TTL_SECONDS in this process."""
    with _cards_lock:
        cached = _cards.get(url)
    if cached is not None and time.monotonic() - cached[0] < settings.A2A_CARD_TTL_SECONDS:
        return cached[1]
    parts = urlsplit(url)
    card = await A2ACardResolver(http, f"{parts.scheme}://{parts.netloc}", agent_card_path=parts.path).get_agent_card()
    with _cards_lock:
        _cards[url] = (time.monotonic(), card)
    return card


def remote_tasks_cancel(*, trace_id: str, steps: list[tuple[str, dict[str, Any]]]) -> int:
    """Ask remotes to stop the tasks these steps (agent name, step memo) started and did not see end: the run they
    served was cancelled or timed out. Best effort; returns how many were asked."""
    agents = {agent.name: agent for agent in remote_agents()}
    asked = 0
    for name, memo in steps:
        agent = agents.get(name)
        call = RemoteCall(**memo) if memo else None
        if isinstance(agent, RemoteAgent) and call is not None and call.task_id and not call.ended:
            agent.remote_cancel(task_id=call.task_id, trace_id=trace_id)
            asked += 1
    return asked
