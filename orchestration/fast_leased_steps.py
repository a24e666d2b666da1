"""The one-round-trip leased step: claiming a step for an agent that waits on an LLM, and recording its success, one
autocommit statement each.

An agent that is not atomic (triage, planner, tools, responder, validator) claims its step with a lease, runs with no
transaction held, then records its result (`steps.step_begin`, `steps.step_succeed`: two transactions of BEGIN, the
run's row lock, the reads the decision needs, the writes, COMMIT). Their common cases are replaced here by one
statement each (a data-modifying CTE), all or nothing, PostgreSQL only:

- `step_begin_fast` — a new step of an active run that passes every guard a new step must pass
  (`budgets.guard_check`'s): `_CLAIM` updates the run (which takes its row lock, as every change to a run's steps
  does; queued becomes running, nothing else changes), inserts the step RUNNING under its lease (now + the agent's
  time limit, attempt 1) and its attempt RUNNING with the task id and worker, and returns their ids. These are the
  rows `step_begin` writes, column for column: the worker's loss (`recovery.step_lost`), the supervisor's dead worker
  (`recovery.attempt_lost`) and expired lease (`recovery.step_lease_expired`) find them as before.
- `step_succeed_fast` — the try still holds its step (RUNNING, its attempt number), the run is active, and the
  outcome lets the run go on (CONTINUE, not stopped): `_RECORD` locks the run, completes the step (its usage, its
  output's envelope carrying the run's budget as updated: `budgets.budget_snapshot`), ends the attempt SUCCEEDED and
  adds the step's usage and hop to the run.

Anything else changes nothing and the locked path decides, exactly as it always has: a step that exists (a
redelivery, a duplicate, a retry, a lease to take over: `claims.claim_decide`), a run stopped or over a guard, a
concurrent delivery that inserted the step first (the unique key on (run, key) fails the whole statement), a step
completed by another try (its output wins), a stale try (`steps.StaleTry`), an ending outcome (`run_after_step`).

Durability is the locked path's: the claim commits before the agent runs (before the LLM call), the record commits
before the wrapper returns the output, so the next hop is published only once the step, its attempt and the run's
spending are committed. SQLite, and STEP_FAST_PATH=false, keep the locked path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_save
from django.utils import timezone

from agents.base import MICRO_USD, Agent, AgentResult, Outcome
from agents.envelope import Envelope
from orchestration import steps
from orchestration.attempts import Attempt, Proceed, StepStart, ms
from orchestration.fast_steps import step_identity
from orchestration.models import Run, Step, StepAttempt
from orchestration.pipeline import FlowControl


def fast_path_applies(agent: Agent) -> bool:
    """Whether a delivery of `agent` claims and records its leased step with one statement each first."""
    return not agent.atomic and settings.STEP_FAST_PATH and connection.vendor == "postgresql"


def step_begin_fast(*, envelope: Envelope, agent: Agent, task_id: str, worker: str) -> StepStart:
    """Claim a new step in one statement; anything unusual goes to `steps.step_begin` (same arguments)."""
    now = timezone.now()
    params = {
        **step_identity(envelope=envelope, agent=agent),
        "now": now,
        "lease": now + timedelta(seconds=agent.time_limit),
        "task_id": task_id,
        "worker": worker,
    }
    row = _execute(_CLAIM, params)
    if row is None:
        return steps.step_begin(envelope=envelope, agent=agent, task_id=task_id, worker=worker)
    step_id, attempt_id = int(row[0]), int(row[1])
    _ping(step_id=step_id, run_id=envelope.run_id, created=True)
    return Proceed(Attempt(str(envelope.run_id), step_id, attempt_id, 1, now, 0, task_id, worker))


def step_succeed_fast(
    *, attempt: Attempt, result: AgentResult, envelope: Envelope, control: FlowControl
) -> dict[str, Any]:
    """Record a leased try's success in one statement; anything unusual goes to `steps.step_succeed` (same
    arguments), which returns another try's output, raises `steps.StaleTry`, or ends the run."""
    if result.outcome == Outcome.CONTINUE and control != FlowControl.STOP:
        recorded = step_record_fast(attempt=attempt, result=result, envelope=envelope, control=control)
        if recorded is not None:
            return recorded.output
    return steps.step_succeed(attempt=attempt, result=result, envelope=envelope, control=control)


@dataclass(frozen=True)
class _Recorded:
    """What `_RECORD` returns when it recorded the step."""

    step_id: int
    output: dict[str, Any]
    """The step's output as stored (its envelope's budget is the run's, updated)."""


def step_record_fast(
    *, attempt: Attempt, result: AgentResult, envelope: Envelope, control: FlowControl
) -> _Recorded | None:
    """Complete the step this try holds, in one statement; None when it changed nothing (the try no longer holds
    its step, the run is not active, or the output is not JSON)."""
    if attempt.step_id is None or attempt.attempt_id is None:
        return None  # an atomic try's: written once, by the locked path
    now = timezone.now()
    usage = result.usage
    try:
        output = json.dumps({"envelope": envelope.to_dict(), "control": control.value})
    except (TypeError, ValueError):
        return None  # not JSON: the locked path fails as it fails any unrecordable result
    params = {
        "run_id": attempt.run_id,
        "step_id": attempt.step_id,
        "attempt_id": attempt.attempt_id,
        "number": attempt.number,
        "now": now,
        "attempt_duration_ms": ms(now - attempt.started_at),
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "tokens": usage.tokens,
        "cost": usage.cost_usd.quantize(MICRO_USD),
        "model": usage.model,
        "prompt_version": usage.prompt_version,
        "llm_latency_ms": usage.latency_ms,
        "output": output,
    }
    row = _execute(_RECORD, params)
    if row is None:
        return None
    recorded = _Recorded(step_id=int(row[0]), output=cast(dict[str, Any], json.loads(row[1])))
    _ping(step_id=recorded.step_id, run_id=attempt.run_id, created=False)
    return recorded


def _execute(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """Run one statement, autocommit (in a caller's transaction, tests, under a savepoint: a failure must not break
    it); its row, or None when it changed nothing or a concurrent delivery's step broke the unique key."""
    try:
        if connection.in_atomic_block:
            with transaction.atomic():
                return _fetch(sql, params)
        return _fetch(sql, params)
    except IntegrityError:
        return None


def _fetch(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


def _ping(*, step_id: int, run_id: str, created: bool) -> None:
    """The live-progress ping a saved step sends (`api.signals`), once the row is committed."""
    post_save.send(
        sender=Step,
        instance=Step(id=step_id, run_id=run_id),
        created=created,
        update_fields=None,
        raw=False,
        using=connection.alias,
    )


_RUN = Run._meta.db_table
_STEP = Step._meta.db_table
_ATTEMPT = StepAttempt._meta.db_table
_ACTIVE = ", ".join(f"'{status}'" for status in Run.ACTIVE)
_QUEUED = Run.Status.QUEUED

#: Claim a new step (see the module's docstring). The guards are `budgets.guard_check`'s, each its halt negated.
_CLAIM = f"""
WITH run AS (
    UPDATE {_RUN} AS r SET
        status = '{Run.Status.RUNNING}',
        started_at = CASE WHEN r.status = '{_QUEUED}' THEN %(now)s ELSE r.started_at END,
        last_progress_at = CASE WHEN r.status = '{_QUEUED}' THEN %(now)s ELSE r.last_progress_at END
    WHERE r.id = %(run_id)s
        AND r.status IN ({_ACTIVE})
        AND %(now)s < r.deadline_at
        AND %(hop)s <= (r.budget ->> 'max_hops')::numeric
        AND %(visits)s < (r.budget ->> 'max_agent_visits')::numeric
        AND r.tokens_used <= (r.budget ->> 'max_tokens')::numeric
        AND r.cost_usd <= (r.budget ->> 'max_cost_usd')::numeric
        AND NOT EXISTS (SELECT 1 FROM {_STEP} AS s WHERE s.run_id = r.id AND s.key = %(key)s)
    RETURNING r.id
), step AS (
    INSERT INTO {_STEP} (
        run_id, key, trace_id, agent, version, hop, status, attempt, started_at, finished_at, duration_ms,
        input_tokens, output_tokens, cost_usd, model, prompt_version, llm_latency_ms, error, output,
        lease_expires_at, retry_base, lost, memo
    )
    SELECT run.id, %(key)s, %(trace_id)s, %(agent)s, %(version)s, %(hop)s, '{Step.Status.RUNNING}', 1, %(now)s,
        NULL, NULL, 0, 0, 0, '', '', 0, '', NULL, %(lease)s, 0, 0, '{{}}'::jsonb
    FROM run
    RETURNING id
), attempt AS (
    INSERT INTO {_ATTEMPT} (
        step_id, number, status, task_id, worker, started_at, finished_at, duration_ms, error_type, error
    )
    SELECT step.id, 1, '{StepAttempt.Status.RUNNING}', %(task_id)s, %(worker)s, %(now)s, NULL, NULL, '', ''
    FROM step
    RETURNING id, step_id
)
SELECT step.id, attempt.id FROM step JOIN attempt ON attempt.step_id = step.id
"""

#: Record a held try's success (see the module's docstring). The run is locked first (as by every change to a run's
#: steps), then the step is completed only if this try still holds it; the attempt and the run are updated only
#: from the completed step's row, so nothing is written unless all is. The budget written into the output is
#: `budgets.budget_snapshot`'s, from the run's updated spending; the step's duration is `attempts.ms`'s.
_RECORD = f"""
WITH locked AS (
    SELECT r.id, r.tokens_used + %(tokens)s AS tokens_used, r.cost_usd + %(cost)s AS cost_usd,
        r.hops_used + 1 AS hops_used, r.deadline_at, r.budget
    FROM {_RUN} AS r
    WHERE r.id = %(run_id)s AND r.status IN ({_ACTIVE})
    FOR UPDATE
), step AS (
    UPDATE {_STEP} AS s SET
        status = '{Step.Status.COMPLETED}',
        finished_at = %(now)s,
        duration_ms = greatest(0, trunc(extract(epoch FROM (%(now)s - s.started_at)) * 1000))::integer,
        input_tokens = %(input_tokens)s,
        output_tokens = %(output_tokens)s,
        cost_usd = %(cost)s,
        model = %(model)s,
        prompt_version = %(prompt_version)s,
        llm_latency_ms = %(llm_latency_ms)s,
        lease_expires_at = NULL,
        error = '',
        output = jsonb_set(%(output)s::jsonb, '{{envelope,budget}}', jsonb_build_object(
            'max_tokens', trunc((locked.budget ->> 'max_tokens')::numeric)::bigint,
            'max_cost_usd', (locked.budget ->> 'max_cost_usd')::float8,
            'max_hops', trunc((locked.budget ->> 'max_hops')::numeric)::bigint,
            'deadline', extract(epoch FROM locked.deadline_at),
            'tokens_used', locked.tokens_used,
            'cost_used_usd', locked.cost_usd
        ))
    FROM locked
    WHERE s.id = %(step_id)s AND s.run_id = locked.id
        AND s.status = '{Step.Status.RUNNING}' AND s.attempt = %(number)s
    RETURNING s.id, s.output
), attempt AS (
    UPDATE {_ATTEMPT} AS a SET
        status = '{StepAttempt.Status.SUCCEEDED}', finished_at = %(now)s, duration_ms = %(attempt_duration_ms)s
    FROM step
    WHERE a.id = %(attempt_id)s AND a.step_id = step.id
    RETURNING a.id
), run AS (
    UPDATE {_RUN} AS r SET
        tokens_used = locked.tokens_used,
        cost_usd = locked.cost_usd,
        hops_used = locked.hops_used,
        last_progress_at = %(now)s
    FROM locked, step
    WHERE r.id = locked.id
    RETURNING r.id
)
SELECT step.id, step.output::text FROM step, attempt, run
"""
