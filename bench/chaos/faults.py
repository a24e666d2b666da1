"""The chaos run's faults: a seeded schedule, and one injector per kind, each logged with its wall-clock time and
what it hit (the step attempts running on a killed process, the runs active at an outage).

Kinds: `worker_kill` (SIGKILL mid-step: a pool child, or a worker's main process with its children),
`web_kill` (a web process mid-POST), `redis_restart` (everything in it lost), `broker_restart` (RabbitMQ's app),
`pg_terminate` (pg_terminate_backend on every connection), `pg_restart` (the private cluster stopped, then started),
`duplicate` (a run's first task re-sent by name, deliver re-sent with the validator's output, or a queued message
published twice), `partition` (the namespaced worker's link cut mid-step, restored later).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench.chaos.client import AnswerLog
from bench.chaos.db import Database
from bench.chaos.stack import ChaosStack, Pool
from harness.celery_messages import message_duplicate, task_send
from harness.postgres import backends_terminate
from harness.rabbitmq import rabbit_app_restart

#: Queues of the agents' tasks, as the product routes them (agents that wait on an LLM on `llm`).
AGENT_QUEUES = {
    **dict.fromkeys(("triage", "planner", "tools", "responder", "validator"), "llm"),
    **dict.fromkeys(("retrieval", "account", "deliver"), "default"),
}
OUTAGE_SECONDS = {"redis_restart": 3.0, "pg_restart": 8.0, "broker_restart": 8.0}
PARTITION_SECONDS = 40.0
#: How long an injector looks for a process that is executing a step before it kills one anyway.
TARGET_WAIT_SECONDS = 15.0


@dataclass
class FaultEvent:
    """One injected fault. Recovery is measured from `at` (kills, partitions) or from `end` (outages); the HTTP
    answers to requests sent while it lasted are in `detail["http"]` (`http_during`)."""

    kind: str
    at: float
    end: float
    target: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    """Step attempts running on the killed or cut-off process at that moment: id, step_id, number, run_id."""
    runs: list[str] = field(default_factory=list)
    """Runs the fault hit (active at an outage, in a transaction in a killed process)."""


def schedule_make(stack: ChaosStack, rng: random.Random) -> list[tuple[float, str, dict[str, Any]]]:
    """(seconds after the load starts, kind, parameters), spread over the load's first 85%."""
    options = stack.options
    items: list[tuple[str, dict[str, Any]]] = []
    for line, pool in stack.pools.items():
        for index in range(options.worker_kills):
            items.append(("worker_kill", {"pool": line, "main": pool.pool == "threads" or index % 2 == 1}))
    items += [("web_kill", {"main": index == 1}) for index in range(1 if options.quick else 2)]
    items.append(("redis_restart", {}))
    if options.broker == "rabbitmq":
        items.append(("broker_restart", {}))
    items += [("pg_terminate", {})] * (1 if options.quick else 2)
    if options.pg_restart:
        items.append(("pg_restart", {}))
    variants = ["start", "deliver", "republish"]
    items += [("duplicate", {"variant": variants[index % 3]}) for index in range(3 if options.quick else 6)]
    rng.shuffle(items)
    span = options.load_seconds
    schedule = []
    for index, (kind, parameters) in enumerate(items):
        slot = 0.1 * span + 0.75 * span * index / max(1, len(items))
        schedule.append((round(slot + rng.uniform(0, 0.75 * span / max(1, len(items))), 1), kind, parameters))
    if options.partition:
        schedule.append((round(rng.uniform(0.2, 0.45) * span, 1), "partition", {"seconds": PARTITION_SECONDS}))
    return sorted(schedule, key=lambda item: item[0])


class Injector:
    """Runs the schedule in a thread; `events` is the fault log."""

    def __init__(self, stack: ChaosStack, database: Database, log: AnswerLog, seed: int) -> None:
        self.stack, self.database, self.log = stack, database, log
        self.rng = random.Random(seed * 7919 + 1)
        self.events: list[FaultEvent] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Thread] = []

    def start(self, schedule: list[tuple[float, str, dict[str, Any]]], started_at: float) -> Injector:
        self._thread = threading.Thread(target=self._run, args=(schedule, started_at), daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in [t for t in (self._thread, *self._timers) if t is not None]:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()

    def _run(self, schedule: list[tuple[float, str, dict[str, Any]]], started_at: float) -> None:
        for offset, kind, parameters in schedule:
            if self._stop.wait(max(0.0, started_at + offset - time.time())):
                return
            try:
                event = getattr(self, kind)(**parameters)
            except Exception as exc:  # noqa: BLE001  (a fault that could not be injected is reported, not fatal)
                self.errors.append(f"{kind} at +{offset}s: {type(exc).__name__}: {exc}")
                continue
            if event is not None:
                self.events.append(event)

    # --- workers ---------------------------------------------------------------------------------------
    def worker_kill(self, pool: str, main: bool) -> FaultEvent:
        """SIGKILL a process of the pool that is executing a step: a pool child (its parent replaces it) or, with
        `main` (always for a threads pool), the worker's main process and its children (restarted at once)."""
        chosen = self.stack.pools[pool]
        if self.stack.partitioned in chosen.names:  # the partition's worker is the partition's
            names = [name for name in chosen.names if name != self.stack.partitioned]
            chosen = Pool(chosen.line, chosen.pool, names, {name: chosen.nodes[name] for name in names})
        attempts, in_transaction = self._busy(chosen)
        if attempts:
            pick = self.rng.choice(attempts)
            name, pid = pick["name"], pick["pid"]
        elif in_transaction:
            name, pid, _ = self.rng.choice(in_transaction)
        else:
            name = self.rng.choice(chosen.names)
            children = self._pids(name)[1:]
            pid = self.rng.choice(children) if children else self._pids(name)[0]
        whole = main or chosen.pool == "threads" or pid == self.stack.supervisor.processes[name].pid
        hit = [a for a in attempts if a["name"] == name and (whole or a["pid"] == pid)]
        runs = sorted({run for n, p, rs in in_transaction for run in rs if n == name and (whole or p == pid)})
        at = self.stack.supervisor.kill(name) if whole else self.stack.supervisor.kill_pid(pid)
        target = f"{chosen.nodes[name]} ({'main process' if whole else f'pool child {pid}'})"
        detail = {"pool": pool, "busy": bool(attempts or in_transaction)}
        return FaultEvent("worker_kill", at, at, target, detail, attempts=hit, runs=runs)

    def _pids(self, name: str) -> list[int]:
        """The main process of a supervised worker, then its children."""
        pid = self.stack.supervisor.processes[name].pid
        if pid is None:
            return []
        with contextlib.suppress(psutil.Error):
            return [pid, *[child.pid for child in psutil.Process(pid).children(recursive=True)]]
        return [pid]

    def _busy(self, pool: Pool) -> tuple[list[dict[str, Any]], list[tuple[str, int, list[str]]]]:
        """Step attempts running in live processes of the pool, and (for database-only steps, which commit their
        attempt with their work) pool processes inside a transaction, with the runs it names. Waits for either."""
        deadline = time.monotonic() + TARGET_WAIT_SECONDS
        database_port = urlsplit(self.stack.database_url).port or 5432
        while True:
            live = {(pool.nodes[name], pid): name for name in pool.names for pid in self._pids(name)}
            attempts = []
            for attempt in self.database.running_attempts():
                node, _, pid = str(attempt["worker"]).rpartition(":")
                if pid.isdigit() and (node, int(pid)) in live:
                    attempts.append({**attempt, "name": live[(node, int(pid))], "pid": int(pid)})
            in_transaction = []
            if not attempts and pool.pool != "threads":
                for (_, pid), name in live.items():
                    runs = self.database.runs_in_transaction(_client_ports(pid, database_port))
                    if runs:
                        in_transaction.append((name, pid, runs))
            if attempts or in_transaction or time.monotonic() > deadline:
                return attempts, in_transaction
            time.sleep(0.05)

    # --- web -------------------------------------------------------------------------------------------
    def web_kill(self, main: bool) -> FaultEvent:
        """SIGKILL a web server process while requests are in flight: one of its workers (the server starts
        another), or with `main` the whole server (the supervisor restarts it)."""
        deadline = time.monotonic() + 5
        while self.log.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        in_flight = self.log.in_flight
        web = self.stack.supervisor.processes["web"]
        children = []
        with contextlib.suppress(psutil.Error):
            children = [c.pid for c in psutil.Process(web.pid or 0).children() if "resource_tracker" not in _cmd(c)]
        if main or not children:
            at, target = self.stack.supervisor.kill("web"), "web (main process)"
        else:
            pid = self.rng.choice(children)
            at, target = self.stack.supervisor.kill_pid(pid), f"web worker {pid}"
        return FaultEvent("web_kill", at, at, target, {"requests_in_flight": in_flight})

    # --- services --------------------------------------------------------------------------------------
    def redis_restart(self) -> FaultEvent:
        """Redis SIGKILLed and started empty on the same port (no persistence: queues, unacked, results lost)."""
        assert self.stack.redis is not None
        runs = self.database.active_runs()
        at = time.time()
        self.stack.redis.kill()
        time.sleep(OUTAGE_SECONDS["redis_restart"])
        self.stack.redis.start()
        return FaultEvent("redis_restart", at, time.time(), "redis", runs=runs)

    def broker_restart(self) -> FaultEvent:
        runs = self.database.active_runs()
        at, end = rabbit_app_restart(OUTAGE_SECONDS["broker_restart"])
        return FaultEvent("broker_restart", at, end, "rabbitmq app", runs=runs)

    def pg_terminate(self) -> FaultEvent:
        runs = self.database.active_runs()
        at = time.time()
        count = backends_terminate(self.stack.database_url)
        return FaultEvent("pg_terminate", at, time.time(), "postgresql", {"connections": count}, runs=runs)

    def pg_restart(self) -> FaultEvent:
        assert self.stack.cluster is not None
        runs = self.database.active_runs()
        at = time.time()
        try:
            self.stack.cluster.stop()
            time.sleep(OUTAGE_SECONDS["pg_restart"])
        finally:
            self.stack.cluster.start()
        end = time.time()
        return FaultEvent("pg_restart", at, end, "postgresql cluster", runs=runs)

    # --- duplicates ------------------------------------------------------------------------------------
    def duplicate(self, variant: str) -> FaultEvent:
        """A second delivery: a message waiting in a queue published twice (`republish`; with an empty queue,
        `deliver` instead), deliver re-sent with a validator's recorded output (`deliver`; with none yet, `start`),
        or a run's first agents re-sent with its start envelope (`start`)."""
        broker, at = self.stack.broker_url, time.time()
        detail: dict[str, Any] = {"variant": variant}
        if variant == "republish":
            copied = message_duplicate(broker, ["default", "llm"])
            if copied is not None:
                return FaultEvent("duplicate", at, at, str(copied["task"]), {**detail, **copied})
            variant = detail["fallback"] = "deliver"
        if variant == "deliver":
            row = self.database.step_output("validator")
            envelope = (row or {}).get("output", {}) or {}
            envelope = envelope.get("envelope", {})
            if envelope.get("slip", [None])[0] == "deliver":
                task_id = task_send(broker, AGENT_QUEUES["deliver"], "agents.deliver", [envelope])
                return FaultEvent("duplicate", at, at, "agents.deliver", {**detail, "task_id": task_id}, runs=[])
            detail["fallback"] = "start"
        row = self.database.run_for_start(finished=self.rng.random() < 0.3)
        slip = (row or {}).get("start_envelope", {}).get("slip") or [None]
        if row is None or not isinstance(slip[0], str):
            return FaultEvent("duplicate", at, at, "", {**detail, "sent": False})
        # The run's start as run_dispatch sends it: its slip's agents up to the first parallel entry, chained.
        agents = [str(name) for name in slip[: next((i for i, e in enumerate(slip) if not isinstance(e, str)), None)]]
        names = [f"agents.{name}" for name in agents]
        task_id = task_send(broker, AGENT_QUEUES[agents[0]], names[0], [row["start_envelope"]], names[1:])
        return FaultEvent("duplicate", at, at, names[0], {**detail, "task_id": task_id, "run": str(row["id"])})

    # --- partition -------------------------------------------------------------------------------------
    def partition(self, seconds: float) -> FaultEvent:
        """Cut the namespaced worker's link while it executes a step; restore it `seconds` later."""
        assert self.stack.netns is not None and self.stack.partitioned is not None
        pool = next(p for p in self.stack.pools.values() if self.stack.partitioned in p.names)
        only = Pool(line=pool.line, pool=pool.pool, names=[self.stack.partitioned])
        only.nodes = {self.stack.partitioned: pool.nodes[self.stack.partitioned]}
        attempts, _ = self._busy(only)
        at = time.time()
        self.stack.netns.cut()
        event = FaultEvent("partition", at, at, only.nodes[self.stack.partitioned], {"seconds": seconds}, attempts)

        def restore() -> None:
            self._stop.wait(seconds)
            self.stack.netns.restore() if self.stack.netns else None
            event.end = time.time()

        timer = threading.Thread(target=restore, daemon=True)
        self._timers.append(timer)
        timer.start()
        return event


def _client_ports(pid: int, database_port: int) -> set[int]:
    """Local ports of a process's TCP connections to the database."""
    with contextlib.suppress(psutil.Error):
        connections = psutil.Process(pid).net_connections(kind="tcp")
        return {c.laddr.port for c in connections if c.raddr and c.raddr.port == database_port}
    return set()


def _cmd(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(process.cmdline())
    return ""


def http_during(events: list[FaultEvent], log: AnswerLog) -> None:
    """For each outage: the statuses answered to requests sent while it lasted, and the slowest answer."""
    for event in events:
        if event.kind not in OUTAGE_SECONDS:
            continue
        answers = log.between(event.at, event.end)
        statuses = Counter(str(answer.status) for answer in answers)
        slowest = max((answer.at - answer.sent_at for answer in answers), default=0.0)
        event.detail["http"] = {"statuses": dict(sorted(statuses.items())), "slowest_s": round(slowest, 2)}
