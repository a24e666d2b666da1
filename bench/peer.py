"""Section 5 of `make bench`: the durable peer, LangGraph with `PostgresSaver`, on the bench's PostgreSQL server.

`bench/langgraph_peer.py` runs in a virtualenv of its own (.run/langgraph-venv, `make bench-langgraph-venv`, from
bench/requirements-langgraph.txt): LangGraph is never a dependency of Switchboard. Without that virtualenv, or without
PostgreSQL, the section says why and is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from bench.stack import ROOT

LANGGRAPH_VENV = Path(os.environ.get("LANGGRAPH_VENV", str(ROOT / ".run" / "langgraph-venv")))
PEER_SCRIPT = ROOT / "bench" / "langgraph_peer.py"
THREADS = 8


def langgraph_python() -> Path:
    return LANGGRAPH_VENV / "bin" / "python"


def peer_command(database_url: str, runs: int, thread_runs: int, thread_reps: int) -> list[str]:
    return [
        str(langgraph_python()),
        str(PEER_SCRIPT),
        "--url",
        database_url,
        "--runs",
        str(runs),
        "--threads",
        str(THREADS),
        "--thread-runs",
        str(thread_runs),
        "--thread-reps",
        str(thread_reps),
    ]


def parse_peer_output(stdout: str) -> dict[str, Any]:
    """The peer's figures: the last line of its stdout that is a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            missing = {"serial_ms_per_step", f"threads{THREADS}_steps_per_s", "versions"} - result.keys()
            if missing:
                raise ValueError(f"the LangGraph peer's output lacks {sorted(missing)}")
            return result
    raise ValueError(f"no JSON in the LangGraph peer's output: {stdout[-500:]!r}")


def bench_langgraph(database_url: str, runs: int, thread_runs: int, thread_reps: int) -> dict[str, Any]:
    """The peer's figures, or {"skipped": why}. The peer uses a database of its own on `database_url`'s server."""
    if not database_url.startswith(("postgres://", "postgresql://")):
        return {"skipped": "needs PostgreSQL (set DATABASE_URL to a PostgreSQL server)"}
    if not langgraph_python().exists():
        shown = LANGGRAPH_VENV.relative_to(ROOT) if LANGGRAPH_VENV.is_relative_to(ROOT) else LANGGRAPH_VENV
        return {"skipped": f"no {shown}: run `make bench-langgraph-venv`"}
    command = peer_command(database_url, runs, thread_runs, thread_reps)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the LangGraph peer failed ({done.returncode}): {done.stderr[-4000:]}")
    return parse_peer_output(done.stdout)


def peer_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str, bool | None]]:
    """The table's rows for section 5; the ratios need `per_hop` and `throughput` from the same run."""
    peer = results["langgraph"]
    if "skipped" in peer:
        return [("3 durable peer: LangGraph", f"skipped: {peer['skipped']}", "-", "-", "-", None)]
    lg_ms, lg_sps = peer["serial_ms_per_step"], peer[f"threads{THREADS}_steps_per_s"]
    rows: list[tuple[str, str, str, str, str, bool | None]] = [
        (
            "3 durable peer: LangGraph PostgresSaver step (serial)",
            "-",
            f"{lg_ms:.2f} ms/step; {lg_sps:.0f} steps/s with {THREADS} threads",
            "-",
            "-",
            None,
        )
    ]
    if "per_hop" in results:
        ratio = results["per_hop"]["switchboard_ms_per_hop"] / lg_ms
        rows.append(
            (
                "3 Switchboard hop / LangGraph durable step",
                f"{results['per_hop']['switchboard_ms_per_hop']:.2f} ms/hop",
                f"{lg_ms:.2f} ms/step",
                f"{ratio:.2f}x",
                "<= 2x",
                ratio <= 2,
            )
        )
    if "throughput" in results:
        ratio = results["throughput"]["switchboard_tasks_per_s"] / lg_sps
        rows.append(
            (
                f"3 pipeline steps/s vs LangGraph {THREADS} threads",
                f"{results['throughput']['switchboard_tasks_per_s']:.0f} steps/s",
                f"{lg_sps:.0f} steps/s",
                f"{ratio:.2f}",
                ">= 0.50",
                ratio >= 0.5,
            )
        )
    return rows
