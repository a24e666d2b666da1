"""Recording what a step asked the outside world, and answering a replay from that record.

While an agent handles a step, the task wrapper holds a `Tape` in a context variable: the LLM seam, the commerce
backend and the MCP client write each call to it (`record`), and the wrapper stores the tape on the step
(`orchestration.recordings`). A replay of the run (`orchestration.replay`) holds a tape that also carries the
original step's calls: a call whose request was recorded is answered from the record (`answer`), anything else is
asked live — except side effects, which a replay never performs.

Everything recorded is scrubbed as log lines are (`project.tracing.secrets_mask`, credential-named keys masked) and
made JSON-safe (decimals and dates as strings). The tape lives in one thread's context: every LLM worker thread, and
every step, has its own.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from project.tracing import known_secrets, secrets_mask

#: Keys whose values are credentials wherever they appear in a recorded request or answer.
CREDENTIAL_KEYS = frozenset({"authorization", "api_key", "apikey", "password", "secret", "token", "x-api-key"})
REDACTED = "[redacted]"


class Kind(enum.StrEnum):
    """What a recorded call is."""

    LLM = "llm"
    """One completion as the agent got it (after any repair round): what a replay answers the agent with."""
    LLM_CALL = "llm_call"
    """One request to the model's server: the rendered request (messages, tools, response format, model, parameters),
    the raw response, usage and latency."""
    COMMERCE = "commerce"
    """One read of the shop (orders of a customer), or a refund it executed."""
    MCP = "mcp"
    """One MCP tool call and its answer."""
    RESULT = "result"
    """What the agent returned (payload written, outcome, slip), with a digest of the envelope it was given."""


class Recorded(enum.StrEnum):
    """What the recorded run had at a replay's step."""

    RECORDED = "recorded"
    """A successful try, with its calls."""
    UNRECORDED = "unrecorded"
    """A step that ended without a result (failed, halted), or whose recording is gone."""
    ABSENT = "absent"
    """No such step: the replay took another path."""


@dataclass
class Call:
    """One recorded call of a step's try."""

    kind: Kind
    """What was called."""
    name: str
    """Which: the prompt (`triage@1`), the model, the shop operation (`orders_get`), the MCP tool, the agent."""
    request: Any
    """What was asked, JSON-safe and scrubbed (a digest where the full request is recorded beside it)."""
    response: Any
    """What came back, JSON-safe and scrubbed (None when the call failed)."""
    error: str = ""
    """Why the call failed ('' when it answered)."""
    model: str = ""
    """The model that answered (LLM calls)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: int = 0
    """Time spent waiting for the answer."""


@dataclass
class Replaying:
    """What a replay's step answers from, and what it runs live."""

    recorded: list[Call]
    """The original step's calls (its successful try's), in order (filled by the task wrapper before the step runs)."""
    live_llm: bool
    """Whether this step's LLM completions go to the model even when a recording answers them (the agent was named
    to run live, or its prompt or model changed)."""
    model: str = ""
    """The model live completions use ('' for the configured one)."""
    prompts: dict[str, Any] = field(default_factory=dict)
    """Prompts (`agents.llm.base.Prompt`) live completions use instead of the agent's own, by prompt name."""
    as_of: datetime | None = None
    """The original run's start: the ledger is read as it was then (what was refunded before that run)."""
    step: Recorded = Recorded.RECORDED
    """What the recorded run had at this step."""
    used: set[int] = field(default_factory=set)
    """Recorded calls already given as answers (each answers once)."""


@dataclass
class Tape:
    """The calls of one try of one step."""

    calls: list[Call] = field(default_factory=list)
    """What this try asked, in order."""
    replaying: Replaying | None = None
    """Set in a replay: the original step's record."""


_tape: ContextVar[Tape | None] = ContextVar("switchboard_tape", default=None)


def enabled() -> bool:
    """Whether steps record their calls (LLM_RECORD_DAYS > 0)."""
    return settings.LLM_RECORD_DAYS > 0


@contextmanager
def using(tape: Tape | None) -> Iterator[Tape | None]:
    """Record into `tape` (None: record nothing) while the block runs."""
    token = _tape.set(tape)
    try:
        yield tape
    finally:
        _tape.reset(token)


def current() -> Tape | None:
    return _tape.get()


def replaying() -> Replaying | None:
    """The replay's record, when the current step is part of a replay."""
    tape = _tape.get()
    return tape.replaying if tape is not None else None


def jsonable(value: Any) -> Any:
    """`value` as JSON: decimals and dates as strings, tuples and sets as lists, dataclasses as their fields."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is not None:
        return {name: jsonable(getattr(value, name)) for name in fields}
    return str(value)


def scrub(value: Any, secrets: tuple[str, ...] | None = None) -> Any:
    """A JSON value with secrets masked as in log lines, and the values of credential-named keys replaced."""
    secrets = known_secrets() if secrets is None else secrets
    if isinstance(value, dict):
        return {
            k: REDACTED if k.lower() in CREDENTIAL_KEYS and v not in (None, "") else scrub(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, str):
        return secrets_mask(value, secrets)
    return value


def canonical(value: Any) -> str:
    """One text per JSON value: what requests are compared by."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def digest(value: Any) -> str:
    """A short fingerprint of a JSON value (scrubbed first, as it is recorded)."""
    return hashlib.sha256(canonical(scrub(jsonable(value))).encode()).hexdigest()[:32]


def record(
    kind: Kind,
    name: str,
    *,
    request: Any,
    response: Any,
    error: str = "",
    model: str = "",
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost_usd: Decimal = Decimal(0),
    latency_ms: int = 0,
    scrubbed: bool = True,
) -> None:
    """Add a call to the current tape (nothing when no step records), scrubbed unless told (`scrubbed=False`: for what
    is stored unscrubbed elsewhere already, an agent's result)."""
    tape = _tape.get()
    if tape is None:
        return
    secrets = known_secrets() if scrubbed else ()
    clean = (lambda value: scrub(jsonable(value), secrets)) if scrubbed else jsonable
    tape.calls.append(
        Call(
            kind=kind,
            name=name,
            request=clean(request),
            response=clean(response),
            error=secrets_mask(error, secrets) if scrubbed else error,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_usd,
            latency_ms=latency_ms,
        )
    )


MISSING: Any = object()
"""What `answer` returns when nothing recorded answers the request."""


def answer(kind: Kind, name: str, request: Any) -> Any:
    """In a replay, the recorded answer to this call (the first not given yet whose kind, name and request are the
    recorded ones), recorded again on the replay's own tape; else MISSING (not replaying, or the request differs)."""
    call = recorded_call(kind, name, request)
    return MISSING if call is None else call.response


def recorded_call(kind: Kind, name: str, request: Any) -> Call | None:
    """Like `answer`, the whole recorded call (usage and model too), or None."""
    tape = _tape.get()
    if tape is None or tape.replaying is None:
        return None
    wanted = {canonical(jsonable(request)), canonical(scrub(jsonable(request)))}
    replay = tape.replaying
    for index, call in enumerate(replay.recorded):
        if index in replay.used or call.kind != kind or call.name != name or call.error:
            continue
        if canonical(call.request) in wanted:
            replay.used.add(index)
            tape.calls.append(call)
            return call
    return None
