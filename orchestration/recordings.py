"""Steps' recordings: storing a try's tape (`project.recording`), reading a run's back, and their retention.

A try's calls are written in one statement after the try is recorded (succeeded or failed); a recording that cannot
be written is logged and the run goes on (the record serves replays, never the run itself). The supervisor's sweep
deletes recordings older than LLM_RECORD_DAYS.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from agents.base import AgentResult, Outcome, Usage
from agents.envelope import Envelope
from orchestration.models import StepCall
from project import recording
from project.recording import Call, Kind, Tape

logger = logging.getLogger(__name__)

#: Payload keys that name the run's own records (a review item's id): left out of the input digest, so that a replay,
#: whose records are its own, is given "the same input" as the recorded run.
DIGEST_IGNORES = frozenset({"review_item_id"})
#: Recordings deleted per statement by the retention sweep (bounded: the sweep runs beside the supervisor's tick).
EXPIRE_BATCH = 5000


def input_digest(envelope: Envelope) -> str:
    """A fingerprint of what an agent is given: where it is in the run and the payload it reads."""
    payload = {k: v for k, v in envelope.payload.items() if k not in DIGEST_IGNORES}
    return recording.digest({"hop": envelope.hop, "path": envelope.path, "slip": envelope.slip, "payload": payload})


def result_json(result: AgentResult) -> dict[str, Any]:
    """What an agent returned, as its recording keeps it."""
    usage = result.usage
    return {
        "payload": dict(result.payload),
        "outcome": result.outcome.value,
        "reason": result.reason,
        "slip": result.slip,
        "handoff": result.handoff,
        "usage": {"model": usage.model, "prompt_version": usage.prompt_version, "latency_ms": usage.latency_ms},
    }


def result_from_call(call: Call) -> AgentResult:
    """The agent's result as recorded (usage included)."""
    data = call.response
    usage = Usage(
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        cost_usd=Decimal(call.cost_usd),
        model=data["usage"]["model"],
        prompt_version=data["usage"]["prompt_version"],
        latency_ms=data["usage"]["latency_ms"],
    )
    return AgentResult(
        payload=data["payload"],
        usage=usage,
        outcome=Outcome(data["outcome"]),
        reason=data["reason"],
        slip=data["slip"],
        handoff=data["handoff"],
    )


def result_record(agent_name: str, version: str, envelope: Envelope, result: AgentResult) -> None:
    """Record what the agent returned, with the digest of what it was given."""
    usage = result.usage
    recording.record(
        Kind.RESULT,
        agent_name,
        request={"input": input_digest(envelope), "version": version},
        response=result_json(result),
        model=usage.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
        latency_ms=usage.latency_ms,
    )


def tape_save(*, run_id: str, key: str, attempt: int, tape: Tape | None) -> None:
    """Store a try's calls (one statement); nothing to store, nothing written."""
    if tape is None or not tape.calls:
        return
    rows = [
        StepCall(
            run_id=run_id,
            step_key=key,
            attempt=attempt,
            seq=seq,
            kind=call.kind.value,
            name=call.name[:200],
            request=call.request,
            response=call.response,
            error=call.error,
            model=call.model[:100],
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cost_usd=Decimal(call.cost_usd),
            latency_ms=call.latency_ms,
        )
        for seq, call in enumerate(tape.calls)
    ]
    try:
        StepCall.objects.bulk_create(rows)
    except DatabaseError as exc:
        logger.warning("the step's recording was not stored (%d calls): %s", len(rows), exc)
    tape.calls.clear()  # stored once, however often the caller asks


def call_of(row: StepCall) -> Call:
    return Call(
        kind=Kind(row.kind),
        name=row.name,
        request=row.request,
        response=row.response,
        error=row.error,
        model=row.model,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cost_usd=row.cost_usd,
        latency_ms=row.latency_ms,
    )


def step_calls(*, run_id: str, key: str) -> list[Call]:
    """The calls of the step's try that produced its result (the last try with one), else of its last try."""
    rows = list(StepCall.objects.filter(run_id=run_id, step_key=key).order_by("attempt", "seq"))
    done = [row.attempt for row in rows if row.kind == Kind.RESULT]
    chosen = done[-1] if done else (rows[-1].attempt if rows else None)
    return [call_of(row) for row in rows if row.attempt == chosen]


def run_calls(run_id: str) -> list[StepCall]:
    """Every recorded call of a run, step by step, try by try."""
    return list(StepCall.objects.filter(run_id=run_id).order_by("id"))


def recordings_expire(now: datetime | None = None) -> int:
    """Delete recordings older than LLM_RECORD_DAYS (all of them when it is 0), a bounded batch per call."""
    now = now or timezone.now()
    old = StepCall.objects.all()
    if settings.LLM_RECORD_DAYS > 0:
        old = old.filter(created_at__lt=now - timedelta(days=settings.LLM_RECORD_DAYS))
    ids = list(old.order_by("id").values_list("id", flat=True)[:EXPIRE_BATCH])
    return StepCall.objects.filter(id__in=ids).delete()[0] if ids else 0
