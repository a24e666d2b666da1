"""`python -m bench.chaos.compare A.json B.json ...`: chaos reports side by side, as Markdown tables (for
docs/reliability.md: one column per report, e.g. Redis and RabbitMQ, or before and after a change)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def result_rows(report: dict[str, Any]) -> dict[str, str]:
    v, dead = report["verdict"], report["dead_letters"]
    return {
        "conversations sent / accepted": f"{v['conversations_sent']} / {v['messages_accepted']}",
        "runs completed": str(v["completed"]),
        "in review by policy (runs)": f"{v['review_policy_runs']} ({_reasons(v['review_policy_reasons'])})",
        "in review because of faults (runs)": f"{v['review_fault_runs']} ({_reasons(v['review_fault_reasons'])})",
        "timed out (runs)": str(v["timed_out_runs"]),
        "failed (runs, reasons)": f"{sum(v['failed_reasons'].values())} ({_reasons(v['failed_reasons'])})",
        "**LOST**": f"**{len(v['lost'])}**",
        "**DUPLICATED effects**": f"**{len(v['duplicated'])}**",
        "dead letters / replayed / cleared": f"{dead['open_before']} / {dead['replayed']} / {dead['cleared']}",
        "quiescence after the load": f"{report['settle']['seconds']:.0f} s",
    }


def recovery_rows(report: dict[str, Any]) -> dict[str, str]:
    rows = {}
    for kind, row in sorted(report["recovery"].items()):
        if kind == "duplicate":
            continue
        if not row["n"]:
            rows[kind] = f"{row['faults']} faults, no sample"
            continue
        p50, p99, top = (f"{row[key]:.1f}" for key in ("p50", "p99", "max"))
        rows[kind] = f"{p50} / {p99} / {top} (n={row['n']}, unrecovered {row['unrecovered']})"
    return rows


def table(title: str, columns: list[str], rows: list[dict[str, str]]) -> str:
    keys = list(dict.fromkeys(key for row in rows for key in row))
    lines = [f"| {title} | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [f"| {key} | " + " | ".join(row.get(key, "-") for row in rows) + " |" for key in keys]
    return "\n".join(lines)


def compare(reports: list[dict[str, Any]]) -> str:
    columns = [f"{r['broker']}, seed {r['seed']}" for r in reports]
    faults = [dict(Counter(f["kind"] for f in r["faults"])) for r in reports]
    return "\n\n".join(
        [
            table("result", columns, [result_rows(r) for r in reports]),
            table("recovery, s: p50 / p99 / max", columns, [recovery_rows(r) for r in reports]),
            table("faults injected", columns, [{k: str(v) for k, v in sorted(f.items())} for f in faults]),
            "Commands: " + "; ".join(f"`{r['command']}`" for r in reports),
        ]
    )


if __name__ == "__main__":
    print(compare([json.loads(Path(path).read_text()) for path in sys.argv[1:]]))
