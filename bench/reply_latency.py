"""Time from POST of a customer message to the stored assistant reply, over the REST API.

Usage (against a running `make run`):
    .venv/bin/python bench/reply_latency.py [--base http://127.0.0.1:8000/api/v1] [--token TOKEN] [-n 10]
The token defaults to the demo customer's (`manage.py seed_demo --token-only`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="http://127.0.0.1:8000/api/v1")
    parser.add_argument("--token")
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--message", default="How long does shipping take?")
    args = parser.parse_args()
    token = (
        args.token
        or subprocess.check_output([sys.executable, "manage.py", "seed_demo", "--token-only"], text=True).strip()
    )

    def call(method: str, path: str, body: object = None) -> object:
        request = urllib.request.Request(
            args.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    times = []
    for _ in range(args.n):
        conversation_id = call("POST", "/conversations/")["id"]
        started = time.monotonic()
        call("POST", f"/conversations/{conversation_id}/messages/", {"content": args.message})
        while not any(m["role"] == "assistant" for m in call("GET", f"/conversations/{conversation_id}/messages/")):
            if time.monotonic() - started > 30:
                raise SystemExit("no reply within 30 s")
            time.sleep(0.01)
        times.append(time.monotonic() - started)
    print(
        f"POST -> reply: median {statistics.median(times):.3f} s, "
        f"min {min(times):.3f} s, max {max(times):.3f} s (n={len(times)})"
    )


if __name__ == "__main__":
    main()
