"""What the chaos run reads from the stack's database: plain SQL over the product's tables (the state of record),
one short connection per question, so that a database restart costs a failed question, never a stuck run.

Tables: conversations_message, conversations_order, orchestration_run, orchestration_step,
orchestration_stepattempt, orchestration_reviewitem, orchestration_deadletter, agents_ledgerentry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

ACTIVE = ("queued", "running")
_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


class Database:
    """Questions to the stack's database."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with psycopg.connect(self.url, connect_timeout=3, autocommit=True, row_factory=dict_row) as connection:
            connection.execute("SET statement_timeout = 15000")
            return list(connection.execute(sql, params).fetchall())

    def try_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]] | None:
        """`rows`, or None while the database cannot answer."""
        try:
            return self.rows(sql, params)
        except psycopg.Error:
            return None

    def running_attempts(self) -> list[dict[str, Any]]:
        """Step attempts marked running: id, step, number, run, worker ("<node>:<pid>"), agent."""
        return (
            self.try_rows(
                "SELECT a.id, a.step_id, a.number, s.run_id, a.worker, s.agent, s.key "
                "FROM orchestration_stepattempt a JOIN orchestration_step s ON s.id = a.step_id "
                "WHERE a.status = 'running'"
            )
            or []
        )

    def active_runs(self) -> list[str]:
        rows = self.try_rows("SELECT id FROM orchestration_run WHERE status IN ('queued', 'running')") or []
        return [str(row["id"]) for row in rows]

    def runs_in_transaction(self, client_ports: set[int]) -> list[str]:
        """Runs that connections from these client ports are inside a transaction about (from the last query's
        text; every id it names, which the verdict matches against run ids): a database-only step under way there."""
        if not client_ports:
            return []
        rows = (
            self.try_rows(
                "SELECT client_port, query FROM pg_stat_activity WHERE state IN ('active', 'idle in transaction') "
                "AND pid <> pg_backend_pid() AND client_port = ANY(%s)",
                (list(client_ports),),
            )
            or []
        )
        # A worker's heartbeat names the runs it holds, but is no step under way: not counted.
        steps = [row for row in rows if "orchestration_workerbeat" not in str(row["query"]).lower()]
        found = {match.replace("-", "") for row in steps for match in _UUID.findall(str(row["query"]).lower())}
        return sorted(found)

    def run_for_start(self, *, finished: bool) -> dict[str, Any] | None:
        """A run (one still going, or a completed one) and its start envelope, picked at random."""
        where = "status = 'completed'" if finished else "status IN ('queued', 'running')"
        rows = self.try_rows(
            f"SELECT id, start_envelope FROM orchestration_run WHERE {where} ORDER BY random() LIMIT 1"
        )
        return rows[0] if rows else None

    def step_output(self, agent: str) -> dict[str, Any] | None:
        """A completed step of `agent` and its recorded output, from a random run."""
        rows = self.try_rows(
            "SELECT s.run_id, s.output FROM orchestration_step s WHERE s.agent = %s AND s.status = 'completed' "
            "AND s.output IS NOT NULL ORDER BY random() LIMIT 1",
            (agent,),
        )
        return rows[0] if rows else None

    def status_counts(self) -> dict[str, int] | None:
        rows = self.try_rows("SELECT status, count(*) AS n FROM orchestration_run GROUP BY status")
        return None if rows is None else {row["status"]: row["n"] for row in rows}

    def open_review_items(self) -> list[dict[str, Any]] | None:
        return self.try_rows("SELECT id, run_id, reason FROM orchestration_reviewitem WHERE status = 'open'")


@dataclass(frozen=True)
class Snapshot:
    """The tables at the end of a run, as the verdict reads them."""

    messages: list[dict[str, Any]]
    """Customer messages with their run: message id, conversation, run id, status, reason, times."""
    review_items: list[dict[str, Any]]
    replies: list[dict[str, Any]]
    """Assistant and human-agent messages."""
    ledger: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    """Every step attempt: step, run, number, worker, started_at, status."""


def snapshot_take(database: Database) -> Snapshot:
    return Snapshot(
        messages=database.rows(
            "SELECT m.id AS message_id, m.conversation_id, m.created_at, r.id AS run_id, r.status, r.reason, "
            "r.created_at AS run_created_at, r.finished_at "
            "FROM conversations_message m LEFT JOIN orchestration_run r ON r.trigger_message_id = m.id "
            "WHERE m.role = 'customer'"
        ),
        review_items=database.rows(
            "SELECT id, run_id, reason, detail, status, created_at, decided_at FROM orchestration_reviewitem"
        ),
        replies=database.rows(
            "SELECT id, conversation_id, role, created_at FROM conversations_message "
            "WHERE role IN ('assistant', 'human_agent')"
        ),
        ledger=database.rows("SELECT key, kind, run_id, result, order_id, amount FROM agents_ledgerentry"),
        orders=database.rows("SELECT id, total, refunded_amount, status FROM conversations_order"),
        dead_letters=database.rows(
            "SELECT id, run_id, reason, status, task_name, step_key, created_at FROM orchestration_deadletter"
        ),
        attempts=database.rows(
            "SELECT a.id, a.step_id, s.run_id, s.key, a.number, a.worker, a.status, a.started_at "
            "FROM orchestration_stepattempt a JOIN orchestration_step s ON s.id = a.step_id"
        ),
    )
