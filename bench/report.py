"""The table `make bench` prints: each figure beside its baseline, the ratio, the target and whether it is met."""

from __future__ import annotations

from typing import Any

from bench.latency import latency_rows
from bench.peer import peer_rows

Row = tuple[str, str, str, str, str, bool | None]


def report(results: dict[str, Any]) -> str:
    """The rows of the sections in `results` (a `--only` run has some of them)."""
    rows: list[Row] = []
    if "per_hop" in results:
        rows += hop_rows(results["per_hop"])
    if "throughput" in results:
        rows += throughput_rows(results["throughput"])
    if "io" in results:
        rows += io_rows(results["io"])
    if "api" in results:
        rows += api_rows(results["api"])
    if "langgraph" in results:
        rows += peer_rows(results)
    if "latency" in results:
        rows += latency_rows(results["latency"])
    if "cost" in results:
        rows += cost_rows(results["cost"])
    lines = [
        f"Switchboard benchmark, {results['machine']['cores']} cores, {results['machine']['python']}, "
        f"Celery {results['machine']['celery']}, database {results['settings']['database']}",
        f"command: {results['command']}",
        "",
        "| figure | Switchboard | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, ours, base, ratio, target, met in rows:
        mark = "-" if met is None else ("yes" if met else "no")
        lines.append(f"| {name} | {ours} | {base} | {ratio} | {target} | {mark} |")
    return "\n".join(lines)


def hop_rows(hop: dict[str, Any]) -> list[Row]:
    return [
        (
            "1 per-hop overhead",
            f"{hop['switchboard_ms_per_hop']:.2f} ms/hop",
            f"{hop['raw_ms_per_hop']:.2f} ms/hop",
            f"{hop['ratio']:.2f}x",
            "<= 1.5x",
            hop["ratio"] <= 1.5,
        )
    ]


def throughput_rows(tp: dict[str, Any]) -> list[Row]:
    return [
        (
            "2 pipeline throughput",
            f"{tp['switchboard_tasks_per_s']:.0f} tasks/s ({tp['switchboard_conversations_per_s']:.1f} conv/s)",
            f"{tp['raw_tasks_per_s']:.0f} tasks/s",
            f"{tp['ratio']:.2f}",
            ">= 0.50",
            tp["ratio"] >= 0.5,
        )
    ]


def io_rows(io: dict[str, Any]) -> list[Row]:
    slow = io["slow"]
    n = io["conversations"]
    return [
        (
            f"4 makespan, {n} conversations via REST, LLM at {slow} vs 0 ms",
            f"{io[f'makespan_s_{slow}']:.2f} s",
            f"{io['makespan_s_0ms']:.2f} s",
            f"{io['ratio']:.2f}x",
            "<= 1.5x",
            io["ratio"] <= 1.5,
        ),
        (
            "4 peak LLM calls in flight",
            str(io[f"peak_llm_in_flight_{slow}"]),
            "-",
            "-",
            ">= 500",
            io[f"peak_llm_in_flight_{slow}"] >= 500,
        ),
        (f"4 one conversation at {slow}", f"{io[f'single_conversation_s_{slow}']:.2f} s", "-", "-", "-", None),
        (
            "4 workers' peak RSS (all processes)",
            f"{io['workers_peak_rss_mb']:.0f} MiB",
            "-",
            "-",
            "< 1024 MiB",
            io["workers_peak_rss_mb"] < 1024,
        ),
    ]


def api_rows(api: dict[str, Any]) -> list[Row]:
    return [
        (
            "5 POST message",
            f"{api['post_message']['requests_per_s']:.0f} req/s p50 {api['post_message']['p50_ms']:.1f} "
            f"p99 {api['post_message']['p99_ms']:.1f} ms",
            f"{api['bare_post']['requests_per_s']:.0f} req/s p50 "
            f"{api['bare_post']['p50_ms']:.1f} p99 {api['bare_post']['p99_ms']:.1f} ms",
            f"{api['ratio_post']:.2f}",
            ">= 0.50, p99 < 100 ms",
            api["ratio_post"] >= 0.5 and api["post_message"]["p99_ms"] < 100,
        ),
        (
            "5 GET conversation",
            f"{api['get_conversation']['requests_per_s']:.0f} req/s p50 "
            f"{api['get_conversation']['p50_ms']:.1f} p99 {api['get_conversation']['p99_ms']:.1f} ms",
            "(bare POST)",
            f"{api['ratio_get']:.2f}",
            "-",
            None,
        ),
    ]


def cost_rows(cost: dict[str, Any]) -> list[Row]:
    """Target 7's summary (bench/cost.py prints the whole table): CPU and Redis commands per conversation."""
    ours, raw = cost["switchboard"], cost["raw"]
    return [
        (
            "7 cost per conversation: CPU-ms, all processes",
            f"{ours['cpu_ms_total']:.1f} ms, {ours['statements']['total']:.0f} statements, "
            f"{ours['redis_commands']:.0f} Redis commands",
            f"{raw['cpu_ms_total']:.1f} ms, {raw['redis_commands']:.0f} Redis commands (raw 7 hops)",
            f"{cost['ratio']['cpu_ms_total']:.2f}x",
            "printed",
            None,
        )
    ]
