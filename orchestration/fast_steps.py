"""The one-round-trip step: a short agent that writes nothing to the database, recorded by one statement.

The common case of an atomic agent (`Agent.atomic`) that only reads (`Agent.writes_database` False: retrieval,
account, the bench's no-op) is a new step of an active run, within its budgets, that succeeds and lets the run go
on. For it the locked path (`steps.step_run_atomic`: BEGIN, the run's row lock, the run's update, the step and
attempt inserts, COMMIT — six round trips) is replaced by running the agent with no transaction held, then one
autocommit statement (`_RECORD`, a data-modifying CTE) that, all or nothing:

- updates the run only if it is active, has no step of this key yet and passes every guard a new step must pass
  (`budgets.guard_check`'s: deadline, hops, visits, tokens, cost) — the UPDATE takes the run's row lock, as every
  change to a run's steps does;
- marks it running if it was queued, adds the step's usage and the hop;
- inserts the step, completed, its output's envelope carrying the run's budget as updated (`budgets.budget_snapshot`);
- inserts the attempt, succeeded.

When anything is unusual it changes nothing and the locked path decides, exactly as it always has
(`claims.claim_decide`), running the agent again (it writes nothing: running it twice is harmless): the step exists
already (a redelivery, a retry), the run is not active or a guard would stop it, the outcome ends the run
(COMPLETE, ESCALATE, a slip that ran out), the agent raised, or a concurrent delivery inserted the step first (the
unique key on (run, key) fails the whole statement). The fast path takes only `ClaimNew` followed by success.

Durability is the locked path's: the statement commits before the wrapper returns the output, so the next hop is
published only once the step, its attempt and the run's new spending are committed. PostgreSQL only
(`connection.vendor`); elsewhere (SQLite) every atomic agent takes the locked path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_save
from django.utils import timezone

from agents.base import MICRO_USD, Agent, AgentResult, Outcome
from agents.envelope import Envelope
from orchestration import steps
from orchestration.attempts import Done, StepStart, ms, step_key
from orchestration.models import Run, Step, StepAttempt
from orchestration.pipeline import FlowControl


def step_identity(*, envelope: Envelope, agent: Agent) -> dict[str, Any]:
    """The statement parameters naming the step a delivery is for (shared with `fast_leased_steps`)."""
    hop = envelope.hop + 1
    return {
        "run_id": envelope.run_id,
        "key": step_key(hop, agent.name),
        "trace_id": envelope.trace_id,
        "agent": agent.name,
        "version": agent.version,
        "hop": hop,
        "visits": envelope.path.count(agent.name),
    }


def fast_path_applies(agent: Agent) -> bool:
    """Whether a delivery of `agent` tries the one-statement record first."""
    return agent.atomic and not agent.writes_database and settings.STEP_FAST_PATH and connection.vendor == "postgresql"


def step_run_fast(
    *,
    envelope: Envelope,
    agent: Agent,
    task_id: str,
    worker: str,
    execute: Callable[[], tuple[AgentResult, Envelope, FlowControl]],
) -> StepStart:
    """Run a read-only atomic agent and record its step in one statement; anything unusual goes to the locked path
    (`steps.step_run_atomic`, same arguments), which decides as it always has."""
    started_at = timezone.now()
    try:
        result, after, control = execute()
    except Exception:  # noqa: BLE001  (the locked path runs it again and records the failure as for any try)
        return steps.step_run_atomic(envelope=envelope, agent=agent, task_id=task_id, worker=worker, execute=execute)
    if result.outcome == Outcome.CONTINUE and control != FlowControl.STOP:
        recorded = step_record_fast(
            envelope=envelope,
            agent=agent,
            task_id=task_id,
            worker=worker,
            result=result,
            after=after,
            control=control,
            started_at=started_at,
            now=timezone.now(),
        )
        if recorded is not None:
            return Done(recorded, 1)
    return steps.step_run_atomic(envelope=envelope, agent=agent, task_id=task_id, worker=worker, execute=execute)


@dataclass(frozen=True)
class _Recorded:
    """What the statement returns when it recorded the step."""

    step_id: int
    """The new step's id."""
    output: dict[str, Any]
    """The step's output as stored (its envelope's budget is the run's, updated)."""


def step_record_fast(
    *,
    envelope: Envelope,
    agent: Agent,
    task_id: str,
    worker: str,
    result: AgentResult,
    after: Envelope,
    control: FlowControl,
    started_at: datetime,
    now: datetime,
) -> dict[str, Any] | None:
    """Record a new step's successful first try in one statement; its stored output, or None when the statement
    changed nothing (the step exists, the run is not active or over a guard, or a concurrent delivery won)."""
    usage = result.usage
    cost = usage.cost_usd.quantize(MICRO_USD)
    try:
        output = json.dumps({"envelope": after.to_dict(), "control": control.value})
    except (TypeError, ValueError):
        return None  # not JSON: the locked path fails the try as it fails any unrecordable result
    params = {
        **step_identity(envelope=envelope, agent=agent),
        "started_at": started_at,
        "now": now,
        "duration_ms": ms(now - started_at),
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "tokens": usage.tokens,
        "cost": cost,
        "model": usage.model,
        "prompt_version": usage.prompt_version,
        "llm_latency_ms": usage.latency_ms,
        "output": output,
        "task_id": task_id,
        "worker": worker,
    }
    try:
        if connection.in_atomic_block:  # a caller's transaction (tests): a failure must not break it
            with transaction.atomic():
                recorded = _execute(params)
        else:
            recorded = _execute(params)
    except IntegrityError:
        return None  # a concurrent delivery inserted the step first: nothing was written
    if recorded is None:
        return None
    # The live-progress ping a saved step sends (`api.signals`), once the row is committed.
    post_save.send(
        sender=Step,
        instance=Step(id=recorded.step_id, run_id=envelope.run_id),
        created=True,
        update_fields=None,
        raw=False,
        using=connection.alias,
    )
    return recorded.output


def _execute(params: dict[str, Any]) -> _Recorded | None:
    with connection.cursor() as cursor:
        cursor.execute(_RECORD, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return _Recorded(step_id=int(row[0]), output=cast(dict[str, Any], json.loads(row[1])))


_RUN = Run._meta.db_table
_STEP = Step._meta.db_table
_ATTEMPT = StepAttempt._meta.db_table
_ACTIVE = ", ".join(f"'{status}'" for status in Run.ACTIVE)

#: Claim, guard and record a new step in one statement (see the module's docstring). The guards are
#: `budgets.guard_check`'s, each the negation of its halt; the budget written into the output is
#: `budgets.budget_snapshot`'s, from the run's updated row.
_RECORD = f"""
WITH run AS (
    UPDATE {_RUN} AS r SET
        status = '{Run.Status.RUNNING}',
        started_at = CASE WHEN r.status = '{Run.Status.QUEUED}' THEN %(started_at)s ELSE r.started_at END,
        tokens_used = r.tokens_used + %(tokens)s,
        cost_usd = r.cost_usd + %(cost)s,
        hops_used = r.hops_used + 1,
        last_progress_at = %(now)s
    WHERE r.id = %(run_id)s
        AND r.status IN ({_ACTIVE})
        AND %(started_at)s < r.deadline_at
        AND %(hop)s <= (r.budget ->> 'max_hops')::numeric
        AND %(visits)s < (r.budget ->> 'max_agent_visits')::numeric
        AND r.tokens_used <= (r.budget ->> 'max_tokens')::numeric
        AND r.cost_usd <= (r.budget ->> 'max_cost_usd')::numeric
        AND NOT EXISTS (SELECT 1 FROM {_STEP} AS s WHERE s.run_id = r.id AND s.key = %(key)s)
    RETURNING r.id, r.tokens_used, r.cost_usd, r.deadline_at, r.budget
), step AS (
    INSERT INTO {_STEP} (
        run_id, key, trace_id, agent, version, hop, status, attempt, started_at, finished_at, duration_ms,
        input_tokens, output_tokens, cost_usd, model, prompt_version, llm_latency_ms, error, output,
        lease_expires_at, retry_base, lost, memo
    )
    SELECT
        run.id, %(key)s, %(trace_id)s, %(agent)s, %(version)s, %(hop)s, '{Step.Status.COMPLETED}', 1,
        %(started_at)s, %(now)s, %(duration_ms)s, %(input_tokens)s, %(output_tokens)s, %(cost)s, %(model)s,
        %(prompt_version)s, %(llm_latency_ms)s, '',
        jsonb_set(%(output)s::jsonb, '{{envelope,budget}}', jsonb_build_object(
            'max_tokens', trunc((run.budget ->> 'max_tokens')::numeric)::bigint,
            'max_cost_usd', (run.budget ->> 'max_cost_usd')::float8,
            'max_hops', trunc((run.budget ->> 'max_hops')::numeric)::bigint,
            'deadline', extract(epoch FROM run.deadline_at),
            'tokens_used', run.tokens_used,
            'cost_used_usd', run.cost_usd
        )),
        NULL, 0, 0, '{{}}'::jsonb
    FROM run
    RETURNING id, output
), attempt AS (
    INSERT INTO {_ATTEMPT} (
        step_id, number, status, task_id, worker, started_at, finished_at, duration_ms, error_type, error
    )
    SELECT step.id, 1, '{StepAttempt.Status.SUCCEEDED}', %(task_id)s, %(worker)s, %(started_at)s, %(now)s,
        %(duration_ms)s, '', ''
    FROM step
    RETURNING step_id
)
SELECT step.id, step.output::text FROM step JOIN attempt ON attempt.step_id = step.id
"""
