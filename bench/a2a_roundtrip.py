"""The A2A round trip against the REST API's, for the same message, side by side in one run.

Two measurements, alternating A2A and REST request by request (so both see the same machine), medians:
- accept: the call that stores a customer message and starts its run — REST `POST .../messages/` (202) against A2A
  `SendMessage` with `returnImmediately` (the task, submitted);
- answer: message to reply — REST POST then polling `GET .../messages/` every 10 ms until the reply is there,
  against one blocking A2A `SendMessage` (its answer carries the reply).

Usage: .venv/bin/python -m bench.a2a_roundtrip [-n 30] [--json PATH]
It starts its own stack as `make bench` does (bench.stack: its own database and Redis database, the production worker
layout, uvicorn), with the offline model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request
import uuid
from typing import Any

from bench.stack import bench_environment, broker_purge, http_json, make_customer, switchboard_workers, web_server

MESSAGE = "How long does shipping take?"


def a2a_send(base: str, token: str, *, immediately: bool, context_id: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"text": MESSAGE}]}
    if context_id:
        message["contextId"] = context_id
    params: dict[str, Any] = {"message": message, "configuration": {"returnImmediately": immediately}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": params}
    request = urllib.request.Request(
        base + "/a2a/jsonrpc",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "A2A-Version": "1.0", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    if "error" in answer:
        raise RuntimeError(answer["error"])
    return answer["result"]["task"]


def rest_send(api: str, token: str, conversation_id: str) -> dict[str, Any]:
    return http_json("POST", f"{api}/conversations/{conversation_id}/messages/", token, {"content": MESSAGE})


def rest_reply(api: str, token: str, conversation_id: str, replies_before: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        messages = http_json("GET", f"{api}/conversations/{conversation_id}/messages/", token)
        items = messages["results"] if isinstance(messages, dict) else messages
        if sum(1 for m in items if m["role"] == "assistant") > replies_before:
            return
        time.sleep(0.01)
    raise TimeoutError("no reply within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=30)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    env, owned_redis = bench_environment()
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    broker_purge()
    _, token = make_customer("a2a-bench@example.com")
    timings: dict[str, list[float]] = {"rest_accept": [], "a2a_accept": [], "rest_answer": [], "a2a_answer": []}
    try:
        with switchboard_workers(env), web_server(env) as web:
            api = web.url + "/api/v1"
            for i in range(args.n + 2):  # the first two warm up
                conversation = http_json("POST", f"{api}/conversations/", token)["id"]
                started = time.perf_counter()
                rest_send(api, token, conversation)
                accepted = time.perf_counter()
                rest_reply(api, token, conversation, 0)
                answered = time.perf_counter()
                a2a_started = time.perf_counter()
                a2a_send(web.url, token, immediately=True)
                a2a_accepted = time.perf_counter()
                task = a2a_send(web.url, token, immediately=False)
                a2a_answered = time.perf_counter()
                if task["status"]["state"] != "TASK_STATE_COMPLETED":
                    raise RuntimeError(f"A2A task ended {task['status']['state']}")
                if i >= 2:
                    timings["rest_accept"].append(accepted - started)
                    timings["rest_answer"].append(answered - started)
                    timings["a2a_accept"].append(a2a_accepted - a2a_started)
                    timings["a2a_answer"].append(a2a_answered - a2a_accepted)
    finally:
        if owned_redis is not None:
            owned_redis.stop()
    medians = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    report = {
        "n": args.n,
        "median_ms": {name: round(value, 1) for name, value in medians.items()},
        "ratio_accept": round(medians["a2a_accept"] / medians["rest_accept"], 2),
        "ratio_answer": round(medians["a2a_answer"] / medians["rest_answer"], 2),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)


if __name__ == "__main__":
    main()
