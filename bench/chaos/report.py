"""The chaos run's report: the table printed at the end, the same as JSON, and the exit status."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.chaos.client import Answer
from bench.chaos.faults import FaultEvent
from bench.chaos.options import ChaosOptions

#: --strict: the longest p99 recovery after a worker kill that passes.
STRICT_WORKER_KILL_P99 = 15.0


def exit_status(report: dict[str, Any], options: ChaosOptions) -> tuple[int, list[str]]:
    """1 if anything was lost or duplicated (with --strict also: review by faults, slow recovery); the reasons."""
    verdict = report["verdict"]
    reasons = []
    if verdict["lost"]:
        reasons.append(f"{len(verdict['lost'])} lost")
    if verdict["duplicated"]:
        reasons.append(f"{len(verdict['duplicated'])} duplicated")
    if options.strict:
        if verdict["review_fault_runs"]:
            reasons.append(f"{verdict['review_fault_runs']} runs in review because of faults")
        p99 = (report["recovery"].get("worker_kill") or {}).get("p99")
        if p99 is not None and p99 > STRICT_WORKER_KILL_P99:
            reasons.append(f"worker-kill recovery p99 {p99}s > {STRICT_WORKER_KILL_P99}s")
    return (1 if reasons else 0), reasons


def http_summary(answers: list[Answer]) -> dict[str, dict[str, int]]:
    """Statuses per route (0: no answer)."""
    routes: dict[str, Counter[str]] = {}
    for answer in answers:
        routes.setdefault(answer.route, Counter())[str(answer.status)] += 1
    return {route: dict(sorted(counts.items())) for route, counts in sorted(routes.items())}


def event_json(event: FaultEvent, started_at: float) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "at": _clock(event.at),
        "offset_s": round(event.at - started_at, 1),
        "duration_s": round(event.end - event.at, 1),
        "target": event.target,
        "attempts_hit": len(event.attempts),
        "runs_hit": len(event.runs),
        **event.detail,
    }


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report_text(report: dict[str, Any]) -> str:
    """The table, as printed."""
    v = report["verdict"]
    lines = [
        f"Chaos run — seed {report['seed']}, broker {report['broker']}",
        f"command: {report['command']}",
        "",
        "Fault schedule (wall clock, seconds after the load started):",
    ]
    for event in report["faults"]:
        extra = f" {event['duration_s']}s" if event["duration_s"] else ""
        lines.append(
            f"  {event['at']}  +{event['offset_s']:>6}s  {event['kind']:<15}{extra:<7} {event['target']}"
            f"  (attempts hit {event['attempts_hit']}, runs hit {event['runs_hit']})"
        )
    lines += [f"  not injected: {error}" for error in report["fault_errors"]]
    dead = report["dead_letters"]
    rows = [
        ("conversations sent", v["conversations_sent"]),
        ("messages accepted (202)", v["messages_accepted"]),
        ("runs completed", v["completed"]),
        ("in review by policy (runs)", f"{v['review_policy_runs']}  {_reasons(v['review_policy_reasons'])}"),
        ("in review because of faults (runs)", f"{v['review_fault_runs']}  {_reasons(v['review_fault_reasons'])}"),
        ("timed out (runs)", v["timed_out_runs"]),
        ("failed", f"{sum(v['failed_reasons'].values())}  {_reasons(v['failed_reasons'])}"),
        ("final statuses", _reasons(v["final_status"])),
        ("LOST", f"{len(v['lost'])}  {_reasons(Counter(item['kind'] for item in v['lost']))}"),
        ("DUPLICATED effects", f"{len(v['duplicated'])}  {_reasons(Counter(d['kind'] for d in v['duplicated']))}"),
        ("dead letters", f"{dead['open_before']} open: {_reasons(dead['reasons'])}"),
        ("  replayed -> cleared", f"{dead['replayed']} -> {dead['cleared']} (runs completed or in review after)"),
        ("quiescence", f"{report['settle']['seconds']:.0f}s, {'reached' if report['settle']['quiet'] else 'NOT'}"),
    ]
    lines += ["", "Result:"] + [f"  {label:<36} {value}" for label, value in rows]
    lines += ["", "Recovery (seconds)        faults  samples     p50     p99     max  unrecovered  shadowed"]
    for kind, row in sorted(report["recovery"].items()):
        lines.append(
            f"  {kind:<24}{row['faults']:>6}{row['n']:>9}{_seconds(row['p50']):>8}{_seconds(row['p99']):>8}"
            f"{_seconds(row['max']):>8}{row['unrecovered']:>13}{row['shadowed']:>10}"
        )
    for event in report["faults"]:
        if "http" in event:
            http = event["http"]
            lines.append(
                f"  HTTP during {event['kind']} at {event['at']}: statuses {http['statuses']}, "
                f"slowest answer {http['slowest_s']}s"
            )
    llm = report["llm"]
    lines += ["", f"LLM: {llm['requests']} requests; faults {llm['faults']}"]
    lines.append(f"HTTP: {report['http']}")
    lines.append(f"Process restarts: {report['process_restarts']}")
    activity = ", ".join(
        f"{node} {row['attempts']} (last +{row['last_start_s']}s)" for node, row in report["workers"].items()
    )
    lines.append(f"Step attempts per worker: {activity}")
    status = "FAILED: " + ", ".join(report["exit_reasons"]) if report["exit_reasons"] else "OK"
    lines += ["", f"Exit: {report['exit_status']} ({status})"]
    return "\n".join(lines)


def _reasons(counts: dict[str, int] | Counter[str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def report_write(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
