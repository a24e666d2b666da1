"""The table `make bench` prints: each figure beside its baseline, the ratio, the target and whether it is met."""

from __future__ import annotations

from typing import Any


def report(results: dict[str, Any]) -> str:
    hop, tp, io, api = results["per_hop"], results["throughput"], results["io"], results["api"]
    slow = io["slow"]
    rows = [
        (
            "1 per-hop overhead",
            f"{hop['switchboard_ms_per_hop']:.2f} ms/hop",
            f"{hop['raw_ms_per_hop']:.2f} ms/hop",
            f"{hop['ratio']:.2f}x",
            "<= 1.5x",
            hop["ratio"] <= 1.5,
        ),
        (
            "2 pipeline throughput",
            f"{tp['switchboard_tasks_per_s']:.0f} tasks/s ({tp['switchboard_conversations_per_s']:.1f} conv/s)",
            f"{tp['raw_tasks_per_s']:.0f} tasks/s",
            f"{tp['ratio']:.2f}",
            ">= 0.50",
            tp["ratio"] >= 0.5,
        ),
        (
            f"3 makespan {slow} vs 0 ms",
            f"{io[f'makespan_s_{slow}']:.2f} s",
            f"{io['makespan_s_0ms']:.2f} s",
            f"{io['ratio']:.2f}x",
            "<= 1.5x",
            io["ratio"] <= 1.5,
        ),
        (
            "3 peak LLM calls in flight",
            str(io[f"peak_llm_in_flight_{slow}"]),
            "-",
            "-",
            ">= 500",
            io[f"peak_llm_in_flight_{slow}"] >= 500,
        ),
        (f"3 one conversation at {slow}", f"{io[f'single_conversation_s_{slow}']:.2f} s", "-", "-", "-", None),
        (
            "3 workers' peak RSS",
            f"{io['workers_peak_rss_mb']:.0f} MiB",
            "-",
            "-",
            "< 1024 MiB",
            io["workers_peak_rss_mb"] < 1024,
        ),
        (
            "4 POST message",
            f"{api['post_message']['requests_per_s']:.0f} req/s p50 {api['post_message']['p50_ms']:.1f} "
            f"p99 {api['post_message']['p99_ms']:.1f} ms",
            f"{api['bare_post']['requests_per_s']:.0f} req/s p50 "
            f"{api['bare_post']['p50_ms']:.1f} p99 {api['bare_post']['p99_ms']:.1f} ms",
            f"{api['ratio_post']:.2f}",
            ">= 0.50, p99 < 100 ms",
            api["ratio_post"] >= 0.5 and api["post_message"]["p99_ms"] < 100,
        ),
        (
            "4 GET conversation",
            f"{api['get_conversation']['requests_per_s']:.0f} req/s p50 "
            f"{api['get_conversation']['p50_ms']:.1f} p99 {api['get_conversation']['p99_ms']:.1f} ms",
            "(bare POST)",
            f"{api['ratio_get']:.2f}",
            "-",
            None,
        ),
    ]
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
