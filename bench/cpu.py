"""CPU time of the processes a bench run involves, as deltas over the run.

- a process tree (web server, Celery worker and their children): user + system of every live process in the tree,
  plus the time of children that exited and were reaped (`children_user`/`children_system`), so that a pool
  child replaced during the run is not lost;
- PostgreSQL backends, found by the `application_name` the bench gives each kind of client (`sb-web`,
  `sb-worker`) in `pg_stat_activity`, sampled every 100 ms (a backend's time after its last sample is lost if it
  exits; the web server and the workers keep their connections, in a pool or persistent, so few exit), and the
  server's background processes (WAL writer, checkpointer, background writer, autovacuum): those also work for
  every other user of the shared server, so that column is noisy;
- any single process (a private redis-server).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil

#: application_name -> the kind reported.
PG_KINDS = {"sb-web": "postgres (web)", "sb-worker": "postgres (workers)"}
PG_BACKGROUND = "postgres (background)"


def process_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def tree_cpu(pid: int) -> float:
    """Seconds of CPU used so far by the process `pid` and its descendants (including reaped ones)."""
    try:
        parent = psutil.Process(pid)
        processes = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            total += process_cpu(process)
        except psutil.NoSuchProcess:
            continue
    return total


def system_busy() -> float:
    """Seconds of CPU the whole machine has been busy (all cores; steal counted as busy: not ours to use)."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + getattr(times, "steal", 0.0)


class PostgresSampler:
    """CPU of the bench's PostgreSQL backends by kind, and of the server's background processes, over a window."""

    QUERY = (
        "SELECT pid, application_name, backend_type FROM pg_stat_activity "
        "WHERE (datname = %s AND application_name = ANY(%s)) OR backend_type <> 'client backend'"
    )

    def __init__(self, admin_url: str, database: str, interval: float = 0.1) -> None:
        self.admin_url, self.database, self.interval = admin_url, database, interval
        # pid -> [kind, cpu at first sight (or at the start), cpu at last sight]
        self.seen: dict[int, list[Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    def _sample(self, connection: Any) -> None:
        rows = connection.execute(self.QUERY, (self.database, list(PG_KINDS))).fetchall()
        for pid, application_name, backend_type in rows:
            kind = PG_KINDS.get(application_name, PG_BACKGROUND) if backend_type == "client backend" else PG_BACKGROUND
            try:
                cpu = process_cpu(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
            if pid in self.seen:
                self.seen[pid][2] = cpu
            else:
                # Present when the window opened: count from now on; born during the window: all of its time.
                self.seen[pid] = [kind, cpu if not self._started else 0.0, cpu]

    def start(self) -> PostgresSampler:
        import psycopg

        connection = psycopg.connect(self.admin_url, autocommit=True, application_name="bench-sampler")
        self._sample(connection)
        self._started = True

        def loop() -> None:
            with connection:
                while not self._stop.wait(self.interval):
                    self._sample(connection)
                self._sample(connection)

        self._thread = threading.Thread(target=loop, name="pg-cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """Stop sampling; seconds of CPU per kind over the window."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        totals = {kind: 0.0 for kind in [*PG_KINDS.values(), PG_BACKGROUND]}
        for kind, first, last in self.seen.values():
            totals[kind] += max(0.0, last - first)
        return totals


class CpuWindow:
    """CPU deltas over a window: named process trees, PostgreSQL by kind, the whole machine."""

    def __init__(self, trees: dict[str, list[int]], postgres: PostgresSampler | None) -> None:
        self.trees, self.postgres = trees, postgres
        self.start_values: dict[str, float] = {}
        self.started = self.busy = 0.0

    def _trees(self) -> dict[str, float]:
        return {name: sum(tree_cpu(pid) for pid in pids) for name, pids in self.trees.items()}

    def start(self) -> CpuWindow:
        if self.postgres:
            self.postgres.start()
        self.start_values = self._trees()
        self.busy, self.started = system_busy(), time.perf_counter()
        return self

    def stop(self) -> dict[str, Any]:
        """Seconds of CPU per kind, the window's length and the machine's busy seconds (every process)."""
        ended = self._trees()
        wall, busy = time.perf_counter() - self.started, system_busy() - self.busy
        cpu = {name: ended[name] - self.start_values[name] for name in self.trees}
        if self.postgres:
            cpu.update(self.postgres.stop())
        return {"cpu_s": cpu, "wall_s": wall, "machine_busy_s": busy}
