"""The bench's durable peer: Switchboard's seven-step pipeline shape as a LangGraph graph checkpointed to PostgreSQL.

Seven no-op nodes in a line (triage -> planner -> retrieval -> tools -> responder -> validator -> deliver), compiled
with `PostgresSaver` and invoked with `durability="sync"` (each step's checkpoint is written before the next step
starts), a fresh thread_id per run. Measured:

- serial: one saver on one connection, `--runs` runs after `--warmup`; the median run time / 7 = ms per step;
- threads: `--threads` threads, each with its own saver on its own connection (a `PostgresSaver` holds a lock around
  every use of its connection or pool, so one saver shared by threads runs their writes one at a time), `--thread-runs`
  runs per repetition, all started at once, median steps/s over `--thread-reps` repetitions; the same with one saver
  shared by all threads on a `psycopg_pool.ConnectionPool` is reported beside it;
- what a run records: rows per run in the checkpoint tables and the checkpointer's calls and SQL statements per run.

Standalone: it runs with .run/langgraph-venv's python (bench/requirements-langgraph.txt) and imports no project code.
`bench/peer.py` runs it for `python -m bench.run --only langgraph`. Prints one line of JSON on stdout.

Usage: python bench/langgraph_peer.py --url postgres://postgres@127.0.0.1:5432/postgres [--runs 100] ...
It uses the database `--database` (switchboard_bench_lg) on the URL's server, created if missing, emptied first.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from importlib.metadata import version
from typing import Any, TypedDict
from urllib.parse import urlsplit, urlunsplit

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph import END, START, StateGraph
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

NODES = ("triage", "planner", "retrieval", "tools", "responder", "validator", "deliver")
TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
PACKAGES = ("langgraph", "langgraph-checkpoint", "langgraph-checkpoint-postgres", "langchain-core", "psycopg")


class State(TypedDict, total=False):
    request: str


def noop(state: State) -> None:
    """A node that does nothing: LangGraph records the step all the same."""


def build(checkpointer: PostgresSaver) -> Any:
    graph = StateGraph(State)
    previous = START
    for name in NODES:
        graph.add_node(name, noop)
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph.compile(checkpointer=checkpointer)


def run_once(graph: Any) -> str:
    thread_id = uuid.uuid4().hex
    config = {"configurable": {"thread_id": thread_id}}
    graph.invoke({"request": "How long does shipping take?"}, config, durability="sync")
    return thread_id


def database_url(url: str, name: str) -> str:
    """`name` on `url`'s server, created if missing (through the server's `postgres` database)."""
    parts = urlsplit(url)
    with psycopg.connect(urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, "")), autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            c.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def serial(url: str, runs: int, warmup: int) -> tuple[list[float], str]:
    """Each run's seconds, and the last run's thread_id."""
    times = []
    with PostgresSaver.from_conn_string(url) as saver:
        graph = build(saver)
        for index in range(warmup + runs):
            started = time.perf_counter()
            thread_id = run_once(graph)
            if index >= warmup:
                times.append(time.perf_counter() - started)
    return times, thread_id


def threaded(graphs: list[Any], runs: int) -> float:
    """`runs` runs over one thread per graph, all started at once (after two warm-up runs each); steps/s."""
    barrier = threading.Barrier(len(graphs) + 1)
    counter = iter(range(runs))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(graph: Any) -> None:
        for _ in range(2):
            run_once(graph)
        barrier.wait()
        try:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                run_once(graph)
        except Exception as error:  # noqa: BLE001 - reported after the join
            errors.append(error)

    threads = [threading.Thread(target=work, args=(graph,)) for graph in graphs]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return runs * len(NODES) / elapsed


def threads_own_connections(url: str, threads: int, runs: int, reps: int) -> list[float]:
    with ExitStack() as stack:
        graphs = [build(stack.enter_context(PostgresSaver.from_conn_string(url))) for _ in range(threads)]
        return [threaded(graphs, runs) for _ in range(reps)]


def threads_shared_pool(url: str, threads: int, runs: int, reps: int) -> list[float]:
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    with ConnectionPool(url, min_size=threads, max_size=threads, kwargs=kwargs) as pool:
        graph = build(PostgresSaver(pool))  # type: ignore[arg-type]
        return [threaded([graph] * threads, runs) for _ in range(reps)]


def recorded(url: str, thread_id: str) -> dict[str, int]:
    """Rows the run `thread_id` left in each checkpoint table."""
    with psycopg.connect(url) as connection:
        return {
            table: connection.execute(f"SELECT count(*) FROM {table} WHERE thread_id = %s", (thread_id,)).fetchone()[0]
            for table in TABLES
        }


def calls_per_run(url: str) -> dict[str, int]:
    """One run with the checkpointer's methods and psycopg's statements counted."""
    counts: Counter[str] = Counter()
    originals = {name: getattr(PostgresSaver, name) for name in ("get_tuple", "put", "put_writes")}
    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany

    def counted(name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[f"saver_{name}"] += 1
            return originals[name](self, *args, **kwargs)

        return method

    def count_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["sql_statements"] += 1
        return execute(self, *args, **kwargs)

    def count_executemany(self: Any, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        params = list(params_seq)
        counts["sql_statements"] += len(params)
        return executemany(self, query, params, **kwargs)

    with PostgresSaver.from_conn_string(url) as saver:
        graph = build(saver)
        run_once(graph)  # warm
        try:
            for name in originals:
                setattr(PostgresSaver, name, counted(name))
            psycopg.Cursor.execute = count_execute  # type: ignore[method-assign]
            psycopg.Cursor.executemany = count_executemany  # type: ignore[method-assign]
            run_once(graph)
        finally:
            for name, original in originals.items():
                setattr(PostgresSaver, name, original)
            psycopg.Cursor.execute, psycopg.Cursor.executemany = execute, executemany  # type: ignore[method-assign]
    return dict(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="a PostgreSQL URL: its server is used")
    parser.add_argument("--database", default="switchboard_bench_lg")
    parser.add_argument("--runs", type=int, default=100, help="serial runs (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--thread-runs", type=int, default=400, help="runs per threaded repetition")
    parser.add_argument("--thread-reps", type=int, default=3)
    args = parser.parse_args()

    url = database_url(args.url, args.database)
    with PostgresSaver.from_conn_string(url) as saver:
        saver.setup()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {', '.join(TABLES)}")
        server = connection.execute("SHOW server_version").fetchone()[0]
        synchronous_commit = connection.execute("SHOW synchronous_commit").fetchone()[0]

    times, thread_id = serial(url, args.runs, args.warmup)
    own = threads_own_connections(url, args.threads, args.thread_runs, args.thread_reps)
    pooled = threads_shared_pool(url, args.threads, args.thread_runs, args.thread_reps)
    result = {
        "steps_per_run": len(NODES),
        "serial_runs": args.runs,
        "serial_ms_per_step": statistics.median(times) / len(NODES) * 1000,
        "serial_ms_per_run": statistics.median(times) * 1000,
        "threads": args.threads,
        "thread_runs": args.thread_runs,
        "thread_reps": args.thread_reps,
        f"threads{args.threads}_steps_per_s": statistics.median(own),
        f"threads{args.threads}_steps_per_s_all": own,
        f"threads{args.threads}_shared_pool_steps_per_s": statistics.median(pooled),
        "checkpoint_rows_per_run": recorded(url, thread_id),
        "calls_per_run": calls_per_run(url),
        "durability": "sync",
        "versions": {
            **{package: version(package) for package in PACKAGES},
            "python": platform.python_version(),
            "postgresql": server,
        },
        "postgresql_synchronous_commit": synchronous_commit,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
