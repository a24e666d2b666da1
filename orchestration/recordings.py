"""Steps' recordings: storing a try's tape (`project.recording`), reading a run's back, and their retention.

A try's calls are written in one statement after the try is recorded (succeeded or failed); a recording that cannot
be written is logged and the run goes on (the record serves replays, never the run itself). The supervisor's sweep
deletes recordings older than LLM_RECORD_DAYS, and replays' throwaway conversations.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from agents.base import AgentResult, Outcome, Usage
from agents.envelope import Envelope
from agents.payload import Payload
from conversations.models import Conversation
from orchestration.models import Step, StepAttempt, StepCall
from project import recording
from project.recording import Call, Kind, Tape

logger = logging.getLogger(__name__)

#: Payload keys that name the run's own records (a review item's id): left out of the input digest, so that a replay,
#: whose records are its own, is given "the same input" as the recorded run.
DIGEST_IGNORES = frozenset({"review_item_id"})
#: Recordings deleted per statement by the retention sweep (bounded: the sweep runs beside the supervisor's tick).
EXPIRE_BATCH = 5000
#: A replay's throwaway records (conversation copy, run, steps) are kept at least this long, for its report.
REPLAYS_KEPT = timedelta(days=1)


def input_digest(envelope: Envelope) -> str:
    """A fingerprint of what an agent is given: where it is in the run and the payload it reads."""
    payload = {k: v for k, v in envelope.payload.items() if k not in DIGEST_IGNORES}
    return recording.digest({"hop": envelope.hop, "path": envelope.path, "slip": envelope.slip, "payload": payload})


def result_json(result: AgentResult) -> dict[str, Any]:
    """What an agent returned, as its recording keeps it: the payload as JSON text, in its own key order (PostgreSQL's
    jsonb reorders an object's keys; a replay hands the payload on exactly as the agent wrote it)."""
    usage = result.usage
    return {
        "payload": json.dumps(dict(result.payload), ensure_ascii=False),
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
        payload=cast(Payload, result_payload(call.response)),
        usage=usage,
        outcome=Outcome(data["outcome"]),
        reason=data["reason"],
        slip=data["slip"],
        handoff=data["handoff"],
    )


def result_payload(response: Any) -> dict[str, Any]:
    """The payload a recorded result wrote."""
    payload = (response or {}).get("payload") or "{}"
    return cast(dict[str, Any], json.loads(payload) if isinstance(payload, str) else payload)


def result_record(agent_name: str, version: str, envelope: Envelope, result: AgentResult) -> None:
    """Record what the agent returned, with the digest of what it was given: unscrubbed, as the step's own output
    holds it (scrubbing it would hand a replay something else than the agent wrote)."""
    usage = result.usage
    recording.record(
        Kind.RESULT,
        agent_name,
        scrubbed=False,
        request={"input": input_digest(envelope), "version": version},
        response=result_json(result),
        model=usage.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
        latency_ms=usage.latency_ms,
    )


#: The columns a try's calls are written to, in the order of `_row`.
COLUMNS = (
    "run_id",
    "step_key",
    "attempt",
    "seq",
    "kind",
    "name",
    "request",
    "response",
    "error",
    "model",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "created_at",
)


def tape_save(*, run_id: str, key: str, attempt: int, tape: Tape | None) -> None:
    """Store a try's calls in one INSERT (autocommit: no transaction of its own around it); nothing to store, nothing
    written. A recording that cannot be written is logged: the run goes on."""
    if tape is None or not tape.calls:
        return
    now = timezone.now()
    rows = [_row(run_id, key, attempt, seq, call, now) for seq, call in enumerate(tape.calls)]
    tape.calls.clear()  # stored once, however often the caller asks
    placeholders = ", ".join(["(" + ", ".join(["%s"] * len(COLUMNS)) + ")"] * len(rows))
    sql = f"INSERT INTO {StepCall._meta.db_table} ({', '.join(COLUMNS)}) VALUES {placeholders}"
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, [value for row in rows for value in row])
    except DatabaseError as exc:
        logger.warning("the step's recording was not stored (%d calls): %s", len(rows), exc)


def _row(run_id: str, key: str, attempt: int, seq: int, call: Call, now: datetime) -> list[Any]:
    json_field = StepCall._meta.get_field("request")
    as_db = lambda value: json_field.get_db_prep_value(value, connection)  # noqa: E731
    run = StepCall._meta.get_field("run").get_db_prep_value(run_id, connection)
    return [
        run,
        key,
        attempt,
        seq,
        call.kind.value,
        call.name[:200],
        as_db(call.request),
        as_db(call.response),
        call.error,
        call.model[:100],
        call.input_tokens,
        call.output_tokens,
        Decimal(call.cost_usd),
        call.latency_ms,
        StepCall._meta.get_field("created_at").get_db_prep_value(now, connection),
    ]


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


def step_calls(*, run_id: str, key: str) -> list[Call] | None:
    """The calls of the step's try that succeeded (its output is the step's); [] when the step ended without a result
    (failed, halted) or its recording is gone; None when the run had no such step."""
    step = Step.objects.filter(run_id=run_id, key=key).first()
    if step is None:
        return None
    succeeded = step.attempts.filter(status=StepAttempt.Status.SUCCEEDED).order_by("-number").first()
    if succeeded is None:
        return []
    rows = StepCall.objects.filter(run_id=run_id, step_key=key, attempt=succeeded.number).order_by("seq")
    return [call_of(row) for row in rows]


def run_results(run_id: str) -> list[StepCall]:
    """What each step's tries of a run returned (`Kind.RESULT`), in the order recorded; the other calls (LLM requests
    and raw answers, the bulk of a recording) are not read."""
    return list(StepCall.objects.filter(run_id=run_id, kind=Kind.RESULT).order_by("id"))


def recordings_expire(now: datetime | None = None) -> int:
    """Delete recordings older than LLM_RECORD_DAYS (all of them when it is 0), a bounded batch per call, and the
    replays' throwaway conversations (with their runs) as old. Returns the recorded calls deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.LLM_RECORD_DAYS)
    old = StepCall.objects.all() if settings.LLM_RECORD_DAYS == 0 else StepCall.objects.filter(created_at__lt=cutoff)
    ids = list(old.order_by("id").values_list("id", flat=True)[:EXPIRE_BATCH])
    deleted = StepCall.objects.filter(id__in=ids).delete()[0] if ids else 0
    copies = Conversation.objects.filter(replay_of__isnull=False, created_at__lt=max(cutoff, now - REPLAYS_KEPT))
    expired = list(copies.values_list("id", flat=True)[:100])
    if expired:
        Conversation.objects.filter(id__in=expired).delete()
    if len(ids) == EXPIRE_BATCH:
        logger.warning("recordings are expiring slower than they are written: %d deleted this pass", len(ids))
    return deleted
