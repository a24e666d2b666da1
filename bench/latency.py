"""Target 6 of `make bench`: reply latency — a customer message POSTed over the REST API to its reply stored in the
database, one conversation at a time, with the offline provider (no LLM wait: what is measured is Switchboard).

Each conversation is new; the bench posts its message over HTTP and then watches the database (a query every
two milliseconds from this process, not a GET through the web server, which would load it) until the assistant's
reply is stored. The workers are the production layout (`bench.stack.switchboard_workers`), started once and warmed up.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.stack import http_json, make_customer, switchboard_workers, wait_until, web_server

#: The target: the median conversation is answered within this many milliseconds.
TARGET_P50_MS = 40.0
WARM_UP = 3


def bench_reply_latency(env: dict[str, str], conversations: int) -> dict[str, Any]:
    from conversations.models import Message

    _, token = make_customer("bench-latency@example.com")
    times_ms = []
    with switchboard_workers(env), web_server(env) as web:
        for index in range(WARM_UP + conversations):
            conversation = http_json("POST", f"{web.url}/api/v1/conversations/", token)["id"]
            replies = Message.objects.filter(conversation_id=conversation, role=Message.Role.ASSISTANT)
            started = time.perf_counter()
            http_json(
                "POST",
                f"{web.url}/api/v1/conversations/{conversation}/messages/",
                token,
                {"content": "How long does shipping take?"},
            )
            wait_until(replies.exists, timeout=30, interval=0.002)
            if index >= WARM_UP:
                times_ms.append((time.perf_counter() - started) * 1000)
    ordered = sorted(times_ms)
    return {
        "conversations": conversations,
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "max_ms": ordered[-1],
        "target_p50_ms": TARGET_P50_MS,
    }


def latency_rows(latency: dict[str, Any]) -> list[tuple[str, str, str, str, str, bool | None]]:
    """The report's row for target 6."""
    return [
        (
            f"6 reply latency, POST to stored reply ({latency['conversations']} sequential, offline LLM)",
            f"p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms",
            "-",
            "-",
            f"p50 <= {TARGET_P50_MS:.0f} ms",
            latency["p50_ms"] <= TARGET_P50_MS,
        )
    ]
