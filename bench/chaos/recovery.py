"""Recovery times per fault kind, from the fault log and the tables.

- worker kill, partition: for each step attempt running on the killed (or cut-off) process at that moment, the
  time from the fault to the next attempt of that step starting; if there is none, to the run's next progress
  (any attempt starting, a review item opened, the run finishing). Runs a killed process was inside a database
  transaction for (database-only steps commit their attempt with their work; the run is found by any id the
  transaction's last query names: the run's, its conversation's or its message's): to the run's next progress.
- Redis, RabbitMQ and PostgreSQL restarts, terminated connections: for each run active when the fault began and
  not finished by its end, the time from the end to the run's next progress.
- web kill: for each POST that got no answer (or a 5xx) within 3 s of the kill, the time to its 202.

A run with no progress after the fault at all is "unrecovered". A run still recovering from an earlier fault is
counted for that one only ("shadowed").
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from bench.chaos.db import Snapshot
from bench.chaos.faults import FaultEvent
from bench.chaos.load import Sent
from bench.chaos.verdict import uid

WEB_WINDOW_SECONDS = 3.0


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Progress:
    """When each run and each step moved, as epoch seconds."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.step_attempts: dict[int, list[tuple[int, float]]] = defaultdict(list)
        self.run_moves: dict[str, list[float]] = defaultdict(list)
        for attempt in snapshot.attempts:
            started = _epoch(attempt["started_at"])
            self.step_attempts[attempt["step_id"]].append((attempt["number"], started))
            self.run_moves[uid(attempt["run_id"])].append(started)
        for item in snapshot.review_items:
            self.run_moves[uid(item["run_id"])].append(_epoch(item["created_at"]))
        self.finished: dict[str, float] = {}
        #: Ids a database transaction may name for its run: the run's own, its conversation's, its message's.
        self.run_of: dict[str, str] = {}
        for message in snapshot.messages:
            if message["run_id"] is not None:
                for each in (message["run_id"], message["conversation_id"], message["message_id"]):
                    self.run_of[uid(each)] = uid(message["run_id"])
            if message["run_id"] is not None and message["finished_at"] is not None:
                self.finished[uid(message["run_id"])] = _epoch(message["finished_at"])
                self.run_moves[uid(message["run_id"])].append(self.finished[uid(message["run_id"])])

    def run_next(self, run: str, after: float) -> float | None:
        later = [t for t in self.run_moves.get(uid(run), []) if t > after]
        return min(later) if later else None

    def step_next(self, step_id: int, number: int, after: float) -> float | None:
        later = [t for n, t in self.step_attempts.get(step_id, []) if n > number and t > after]
        return min(later) if later else None


def _epoch(value: datetime) -> float:
    return value.timestamp()


Hit = tuple[str, float, float | None]
"""(run id, measured from, next progress or None)."""


def event_hits(event: FaultEvent, progress: Progress, sent: list[Sent]) -> list[Hit]:
    """What one fault hit, and when each of those moved again."""
    hits: list[Hit] = []
    if event.kind in ("worker_kill", "partition"):
        for attempt in event.attempts:
            moved = progress.step_next(attempt["step_id"], attempt["number"], event.at)
            run = str(attempt["run_id"])
            hits.append((run, event.at, moved if moved is not None else progress.run_next(run, event.at)))
        runs = sorted({progress.run_of[uid(each)] for each in event.runs if uid(each) in progress.run_of})
        hits += [(run, event.at, progress.run_next(run, event.at)) for run in runs]
    elif event.kind == "web_kill":
        for each in sent:
            window = [a for a in each.answers if event.at <= a.at <= event.at + WEB_WINDOW_SECONDS]
            if any(a.status in (0, 500, 502, 503) for a in window):
                accepted = each.accepted_at if each.accepted_at and each.accepted_at > event.at else None
                hits.append((f"post {each.planned.index}", event.at, accepted))
    elif event.kind != "duplicate":
        for run in event.runs:
            finished = progress.finished.get(uid(run))
            if finished is None or finished > event.end:
                hits.append((run, event.end, progress.run_next(run, event.end)))
    return hits


def recovery_table(events: list[FaultEvent], snapshot: Snapshot, sent: list[Sent]) -> dict[str, dict[str, Any]]:
    """Per fault kind: faults, samples, p50, p99, max and unrecovered.

    A run still recovering from an earlier fault when the next one hits it counts for the earlier one only
    (`shadowed`): a run held up by a killed worker is no sample of the PostgreSQL restart that follows."""
    progress = Progress(snapshot)
    table: dict[str, dict[str, Any]] = {}
    recovering_until: dict[str, float] = {}
    for event in sorted(events, key=lambda e: e.at):
        samples, unrecovered, shadowed = [], 0, 0
        for run, start, moved in event_hits(event, progress, sent):
            if recovering_until.get(uid(run), 0.0) > event.at:
                shadowed += 1
                continue
            recovering_until[uid(run)] = math.inf if moved is None else moved
            if moved is None:
                unrecovered += 1
            else:
                samples.append(moved - start)
        event.detail.update(recovery_seconds=[round(s, 2) for s in samples], unrecovered=unrecovered)
        event.detail["shadowed"] = shadowed
        row = table.setdefault(event.kind, {"faults": 0, "samples": [], "unrecovered": 0, "shadowed": 0})
        row["faults"] += 1
        row["samples"] += samples
        row["unrecovered"] += unrecovered
        row["shadowed"] += shadowed
    for row in table.values():
        samples = row.pop("samples")
        row.update(
            n=len(samples),
            p50=_round(percentile(samples, 0.5)),
            p99=_round(percentile(samples, 0.99)),
            max=_round(max(samples) if samples else None),
        )
    return table


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
