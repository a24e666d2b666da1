"""Remote A2A agents as steps, part by part (no worker): settings, the loop guard sent on, trace ids, how a remote
task's state and a failed request become the step's result or error, the step memo, the planner's route, the
responder and the validator's sources. tests/test_a2a_remote.py runs them end to end."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from a2a.client.errors import A2AClientError, A2AClientTimeoutError
from a2a.types.a2a_pb2 import Message, Part, Role, Task, TaskState
from a2a.utils.errors import InternalError, TaskNotFoundError
from django.core.exceptions import ImproperlyConfigured

from agents.a2a_guard import LOOP_GUARD_URI, LoopGuard, LoopGuardInvalid, LoopGuardSpent
from agents.envelope import Budget, Envelope
from agents.grounding import reply_check
from agents.llm.breaker import CircuitBreaker
from agents.planner import with_remote_agent
from agents.registry import agent_get
from agents.remote import (
    RemoteCall,
    RemoteCircuitOpen,
    RemoteConfig,
    RemoteFailed,
    RemoteHalted,
    RemotePending,
    RemoteUnavailable,
    remote_agent_class,
)
from agents.responder import Responder
from conversations.models import Message as ChatMessage
from conversations.services import conversation_create, customer_create, message_create
from orchestration import steps
from orchestration.attempts import AttemptMemo, MemoLost, NoMemo, Proceed
from orchestration.models import Step
from orchestration.runs import run_start
from project.errors import PermanentError
from project.settings_a2a import _remote_agents
from project.tracing import trace_id_w3c, traceparent

CONFIG = RemoteConfig(
    name="desk",
    card_url="http://127.0.0.1:9/.well-known/agent-card.json",  # nothing listens: a cancel is refused at once
    token="t",
    time_limit_seconds=10,
    request_timeout_seconds=1,
    poll_seconds=0.5,
    max_polls=3,
    max_retries=2,
)
DESK = remote_agent_class(CONFIG)()


class Memo:
    """A step memo in memory."""

    key = "004.desk"

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data = dict(data or {})

    def get(self) -> dict[str, Any]:
        return dict(self.data)

    def put(self, data: dict[str, Any]) -> None:
        self.data = dict(data)


def envelope(**payload: Any) -> Envelope:
    budget = Budget(max_tokens=1000, max_cost_usd=0.5, max_hops=20, deadline=time.time() + 60, tokens_used=400)
    return Envelope(
        run_id="r1", conversation_id="c1", trace_id="t1", budget=budget, payload={"message": "hi", **payload}
    )


def task(state: int, text: str = "", **metadata: Any) -> Task:
    reply = Task(id="task-1", context_id="ctx")
    reply.status.state = state  # type: ignore[assignment]
    if text:
        reply.status.message.CopyFrom(Message(message_id="m", role=Role.ROLE_AGENT, parts=[Part(text=text)]))
    reply.metadata.update(metadata)
    return reply


# --- Settings --------------------------------------------------------------------------------------


def test_remote_agents_are_configured_with_defaults_and_their_token_read_from_a_variable(monkeypatch) -> None:
    monkeypatch.setenv("DESK_TOKEN", "s3cret-token")
    agents = _remote_agents(
        json.dumps({"desk": {"card_url": "https://a.example/card.json", "token_env": "DESK_TOKEN"}})
    )
    assert agents["desk"]["token"] == "s3cret-token" and agents["desk"]["max_polls"] == 30
    assert set(agents["desk"]) == {*RemoteConfig.__dataclass_fields__} - {"name"}


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"card_url": "https://a.example/c", "token": "inline"}, "unknown"),  # a secret is never written inline
        ({"card_url": "https://a.example/c", "token_env": "NOT_SET_ANYWHERE"}, "not set"),
        ({"card_url": "ftp://a.example/c"}, "http"),
        ({"card_url": "https://a.example/c", "time_limit_seconds": 5, "request_timeout_seconds": 5}, "3 x"),
        ({"token_env": "HOME"}, "needs card_url"),
    ],
)
def test_a_remote_agent_misconfigured_stops_the_start(config: dict, problem: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=problem):
        _remote_agents(json.dumps({"desk": config}))
    with pytest.raises(ImproperlyConfigured, match="lower-case name"):
        _remote_agents(json.dumps({"Desk!": {"card_url": "https://a.example/c"}}))


# --- The loop guard sent on, trace ids ----------------------------------------------------------------------


def test_the_loop_guard_sent_on_is_one_hop_further_and_the_smaller_budget(settings) -> None:
    settings.A2A_INSTANCE_ID, settings.A2A_MAX_HOPS = "us", 4
    first = DESK.guard(envelope())
    assert (first.hops, first.max_hops, first.path, first.tokens_left) == (1, 4, ["us"], 600)
    assert first.cost_left_usd == Decimal("0.5")
    inbound = LoopGuard(hops=2, max_hops=5, path=["a", "b"], tokens_left=100, cost_left_usd=Decimal("0.9"))
    on = DESK.guard(envelope(loop_guard=inbound.to_metadata()[LOOP_GUARD_URI]))
    assert (on.hops, on.max_hops, on.path, on.tokens_left, on.cost_left_usd) == (3, 5, ["a", "b", "us"], 100, 0.5)
    with pytest.raises(PermanentError, match="malformed"):
        DESK.guard(envelope(loop_guard={"hops": "two", "maxHops": 4}))


def test_the_guard_reads_whole_numbers_that_protobuf_made_floats() -> None:
    # A2A metadata is a protobuf Struct: `"hops": 1` comes back as 1.0. Backward compatible: ints read as before.
    guard = LoopGuard.from_metadata({LOOP_GUARD_URI: {"hops": 2.0, "maxHops": 4, "path": ["a"], "tokensLeft": 9.0}})
    assert guard == LoopGuard(hops=2, max_hops=4, path=["a"], tokens_left=9)
    assert isinstance(guard.hops, int)
    assert LoopGuardSpent.from_metadata({LOOP_GUARD_URI: {"spentTokens": 120.0}}) == LoopGuardSpent(120, Decimal(0))
    with pytest.raises(LoopGuardInvalid):
        LoopGuard.from_metadata({LOOP_GUARD_URI: {"hops": 1.5, "maxHops": 4}})


def test_trace_ids_go_out_as_w3c_trace_ids() -> None:
    assert trace_id_w3c("4bf92f3577b34da6a3ce929d0e0e4736") == "4bf92f3577b34da6a3ce929d0e0e4736"
    derived = trace_id_w3c("req-42")
    assert len(derived) == 32 and int(derived, 16) and derived == trace_id_w3c("req-42") != trace_id_w3c("req-43")
    assert trace_id_w3c("0" * 32) != "0" * 32  # all zeros is no valid trace id
    version, trace, span, flags = traceparent("4bf92f3577b34da6a3ce929d0e0e4736").split("-")
    assert (version, trace, len(span), flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", 16, "01")


# --- A remote task's state -> the step -----------------------------------------------------------------------


def test_a_completed_task_is_the_answer_and_its_spending_the_steps() -> None:
    memo = Memo(RemoteCall(message_id="m1").__dict__)
    done = task(TaskState.TASK_STATE_COMPLETED, "fallback text", **LoopGuardSpent(7, Decimal("0.01")).to_metadata())
    done.artifacts.add().parts.add(text="The answer.")
    result = DESK.outcome(envelope(), done, RemoteCall(message_id="m1"), memo, latency_ms=5)
    assert result.payload["remote_answers"]["desk"] == {
        "text": "The answer.",
        "task_id": "task-1",
        "card_url": CONFIG.card_url,
    }
    assert (result.usage.tokens, result.usage.cost_usd, result.usage.model) == (7, Decimal("0.01"), "a2a:desk")
    assert memo.data["task_id"] == "task-1"  # kept as soon as the remote named it


@pytest.mark.parametrize(
    ("state", "error", "code"),
    [
        (TaskState.TASK_STATE_FAILED, RemoteFailed, "remote_failed"),
        (TaskState.TASK_STATE_CANCELED, RemoteFailed, "remote_failed"),
        (TaskState.TASK_STATE_REJECTED, RemoteHalted, "remote_rejected"),
        (TaskState.TASK_STATE_INPUT_REQUIRED, RemoteHalted, "remote_input_required"),
        (TaskState.TASK_STATE_AUTH_REQUIRED, RemoteHalted, "remote_auth_required"),
    ],
)
def test_a_task_that_ends_without_an_answer_ends_the_step_with_its_reason(state: int, error: type, code: str) -> None:
    memo = Memo()
    call = RemoteCall(message_id="m1", task_id="task-1")
    with pytest.raises(error, match="the reason") as raised:
        DESK.outcome(envelope(), task(state, "the reason"), call, memo, latency_ms=5)
    assert raised.value.code == code
    assert memo.data["ended"]  # a replay of the step starts a new remote task
    assert DESK.call_of(envelope(), memo).message_id != "m1"


def test_a_working_task_is_polled_until_max_polls_then_the_run_goes_to_review() -> None:
    memo, call = Memo(), RemoteCall(message_id="m1", task_id="task-1", polls=2)
    with pytest.raises(RemotePending) as pending:
        DESK.outcome(envelope(), task(TaskState.TASK_STATE_WORKING), call, memo, latency_ms=5)
    assert pending.value.retry_after == CONFIG.poll_seconds
    call.polls = CONFIG.max_polls
    with pytest.raises(RemoteHalted, match="did not finish within 3 polls") as halted:
        DESK.outcome(envelope(), task(TaskState.TASK_STATE_WORKING), call, memo, latency_ms=5)
    assert halted.value.code == "remote_timed_out" and memo.data["ended"] == "working"


def test_the_message_id_is_derived_from_run_and_step_and_kept_before_anything_is_sent() -> None:
    memo = Memo()
    first = DESK.call_of(envelope(), memo)
    assert memo.data["message_id"] == first.message_id  # written before the send
    assert DESK.call_of(envelope(), Memo()).message_id == first.message_id  # a try after a crash: the same id
    assert DESK.call_of(envelope().evolve(run_id="r2"), Memo()).message_id != first.message_id


def status_error(status: int) -> A2AClientError:
    request = httpx.Request("POST", "http://remote/a2a")
    cause = httpx.HTTPStatusError("bad", request=request, response=httpx.Response(status, request=request))
    error = A2AClientError(f"HTTP Error {status}")
    error.__cause__ = cause
    return error


def refused() -> A2AClientError:
    error = A2AClientError("Network communication error")
    error.__cause__ = httpx.ConnectError("Connection refused")
    return error


@pytest.mark.parametrize(
    ("error", "expected", "counts"),
    [
        (status_error(503), RemoteUnavailable, True),
        (refused(), RemoteUnavailable, True),
        (A2AClientTimeoutError("timed out"), RemoteUnavailable, True),
        (InternalError("boom"), RemoteUnavailable, True),
        (status_error(429), RemoteUnavailable, False),
        (status_error(401), RemoteFailed, False),  # a bad token: a configuration to fix
        (TaskNotFoundError(), RemoteFailed, False),
    ],
)
def test_failed_requests_are_transient_or_permanent_and_feed_the_breaker(error, expected, counts) -> None:
    breaker = CircuitBreaker("a2a:test-desk", threshold=1, cooldown=30, open_error=RemoteCircuitOpen)
    breaker.record_success()
    assert isinstance(DESK._failure(error, breaker, probing=False), expected)
    if counts:  # threshold 1: this failure opened it
        with pytest.raises(RemoteCircuitOpen):
            breaker.before_call()
    else:
        assert breaker.before_call() is False
    breaker.record_success()


# --- The step memo ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_memo_is_written_only_by_the_try_that_holds_the_step() -> None:
    customer = customer_create(email="memo@example.com", name="Mo")
    conversation = conversation_create(customer=customer)
    message, _ = message_create(conversation_id=conversation.id, role=ChatMessage.Role.CUSTOMER, content="Hi")
    run = run_start(conversation=conversation, message=message, trace_id="memo-test", slip=["responder"])
    responder = agent_get("responder")
    start = steps.step_begin(envelope=Envelope.from_dict(run.start_envelope), agent=responder, task_id="t", worker="w")
    assert isinstance(start, Proceed)
    memo = AttemptMemo(start.attempt)
    assert (memo.key, memo.get()) == ("001.responder", {})
    memo.put({"message_id": "m1"})
    assert Step.objects.get(run=run).memo == {"message_id": "m1"} == memo.get()
    Step.objects.filter(run=run).update(attempt=2)  # another delivery took the step over
    with pytest.raises(MemoLost):
        memo.put({"message_id": "m2"})
    with pytest.raises(PermanentError):
        NoMemo(key="001.account").put({})


# --- Planner, responder, validator --------------------------------------------------------------------------


def test_the_planner_puts_the_remote_agent_for_the_intent_before_the_responder(settings) -> None:
    settings.A2A_REMOTE_ROUTES = {"warranty": "desk"}
    plan = [["retrieval", "account"], "responder", "validator", "deliver"]
    assert with_remote_agent(plan, intent="warranty") == [["retrieval", "account"], "desk", *plan[1:]]
    assert with_remote_agent(plan, intent="shipping") == plan


def test_the_responder_passes_a_remote_answer_on_and_the_validator_checks_it() -> None:
    answer = {"text": "Standard shipping takes 2 to 4 business days.", "task_id": "t", "card_url": "u"}
    result = Responder().handle(envelope(remote_answers={"desk": answer}))
    assert result.payload["draft"] == answer["text"] and result.usage.tokens == 0  # no model asked
    assert reply_check(answer["text"], {"remote_answers": {"desk": answer}}).reasons == []  # a source
    promise = {**answer, "text": "We will refund you 500 EUR today."}
    reasons = reply_check(promise["text"], {"remote_answers": {"desk": promise}}).reasons
    assert any(reason.startswith("commitment") for reason in reasons)  # a remote answer backs no commitment
