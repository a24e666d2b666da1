"""The web tier under abuse (issue 12): slow clients, oversized bodies and heads are refused at the ASGI
layer, before a request takes a thread — against uvicorn with the Procfile's flags, as `make run` serves it."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.processes import ServerProcess, web_server
from tests.conftest import WORKER_ENV
from tests.http import ApiClient

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
WEB_ENV = {**WORKER_ENV, "REQUEST_BODY_TIMEOUT_SECONDS": "3"}
#: Flags (with a value) of the Procfile's web line that are not limits: where it listens, how many processes.
NOT_LIMITS = ("--host", "--port", "--workers")


def procfile_web_limits() -> list[str]:
    """The uvicorn flags of the Procfile's `web` line (what `make run` starts) that limit the server."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    words = shlex.split(line.removeprefix("web:"))
    flags = words[words.index("project.asgi:application") + 1 :]
    limits, skip = [], False
    for word in flags:
        if skip:
            skip = False
        elif word in NOT_LIMITS:
            skip = True
        elif word != "--no-access-log":
            limits.append(re.sub(r"\$\{\w+:-(\w+)\}", r"\1", word))  # ${VAR:-default} -> default
    return limits


@pytest.fixture(scope="module")
def web(database_url: str) -> Iterator[ServerProcess]:
    """uvicorn with the Procfile's limits and a 3 s body timeout."""
    server = web_server(database_url, env=WEB_ENV)
    server.args += procfile_web_limits()
    server.start()
    yield server
    server.stop()


def raw_request(server: ServerProcess, head: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    sock.sendall(head.encode() + body)
    return sock


def response_read(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the response on `sock` (read until the server closes it or its length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_the_server_limits_are_the_same_in_the_procfile_and_docker_compose() -> None:
    limits = procfile_web_limits()
    for flag in ("--limit-concurrency", "--timeout-keep-alive", "--h11-max-incomplete-event-size"):
        assert flag in limits
    assert limits[limits.index("--http") + 1] == "h11"  # the parser that bounds the head it buffers
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]["command"]
    words = [re.sub(r"\$\{\w+:-(\w+)\}", r"\1", word) for word in shlex.split(compose)]
    assert " ".join(limits) in " ".join(words)


def test_slow_clients_are_cut_off_and_others_are_still_served(web, make_customer) -> None:
    """40 anonymous POSTs to /login/ trickling their bodies, more than the web threads (32): before, each
    held a thread while Django read its body (for the form's CSRF token, since a CSRF cookie came with it),
    and every other request waited behind them."""
    _, token = make_customer(orders=1)
    head = (
        "POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Cookie: csrftoken={'a' * 32}\r\nContent-Length: 1000\r\n\r\n"
    )
    slow = [raw_request(web, head) for _ in range(40)]
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.5):
            for sock in slow:
                with contextlib.suppress(OSError):  # the server cut it off
                    sock.send(b"a")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(1)  # every slow client is in, sending
        orders = ApiClient(web.url + "/api/v1", token).get("/orders/", timeout=20)
        assert orders.status == 200 and len(orders.json) == 1
        answers = [response_read(sock) for sock in slow]
    finally:
        stop.set()
        trickler.join()
        for sock in slow:
            sock.close()
    assert {status for status, _, _ in answers} == {408}
    _, headers, body = answers[0]
    assert headers["connection"] == "close" and headers["x-trace-id"]
    assert b"did not arrive within 3 seconds" in body


def test_an_oversized_body_is_refused_before_it_is_read(web, make_customer) -> None:
    """30 MiB declared to the event-stream path (served by Django's ASGI handler, which used to spool a
    body to a file to its end before any limit) and a chunked body without a length: 413 at once."""
    _, token = make_customer()
    auth = f"Authorization: Token {token}\r\n"
    declared = raw_request(
        web, f"GET /api/v1/runs/x/events/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {30 * 2**20}\r\n\r\n"
    )
    status, headers, body = response_read(declared)  # no byte of the body was sent
    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "request_too_large"
    declared.close()

    for path in ("/api/v1/runs/x/events/", "/api/v1/conversations/"):
        chunked = raw_request(
            web, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(5):  # 5 x 20 KiB, over the 64 KiB limit, and the body never ends
            chunked.sendall(b"5000\r\n" + b"x" * 0x5000 + b"\r\n")
        status, _, body = response_read(chunked)
        assert status == 413, body
        chunked.close()


def test_a_chunked_body_within_the_limit_reaches_the_view(web, make_customer) -> None:
    """A body without Content-Length used to reach the WSGI views empty."""
    _, token = make_customer()
    client = ApiClient(web.url + "/api/v1", token)
    conversation_id = client.post("/conversations/").json["id"]
    content = json.dumps({"content": "Do you ship to Norway?"}).encode()
    sock = raw_request(
        web,
        f"POST /api/v1/conversations/{conversation_id}/messages/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Token {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        f"{len(content):x}\r\n".encode() + content + b"\r\n0\r\n\r\n",
    )
    status, _, body = response_read(sock)
    sock.close()
    assert status == 202, body
    assert json.loads(body)["message"]["content"] == "Do you ship to Norway?"


@pytest.mark.parametrize(
    "headers", [{f"X-Filler-{n}": "x" for n in range(150)}, {"X-Filler": "x" * 20000}], ids=["count", "size"]
)
def test_too_many_or_too_large_headers_are_refused(database_url: str, transactional_db: Any, headers) -> None:
    """uvicorn's default parser (httptools, what the test harness starts) bounds neither."""
    server = web_server(database_url, env=WORKER_ENV).start()
    try:
        response = ApiClient(server.url + "/api/v1").get("/health/", headers=headers)
    finally:
        server.stop()
    assert response.status == 431
    assert response.json["error"]["code"] == "headers_too_large"
