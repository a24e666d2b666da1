"""The web tier under abuse (issue 12): slow clients, oversized bodies and heads are refused at the ASGI
layer, before a request takes a thread, and connections that never finish their head are closed — against
uvicorn with the Procfile's flags, as `make run` serves it."""

from __future__ import annotations

import contextlib
import importlib
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
from uvicorn.protocols.http.h11_impl import H11Protocol

from harness.processes import ServerProcess, procfile_web_options, web_server
from tests.conftest import WORKER_ENV
from tests.http import ApiClient

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
WEB_ENV = {**WORKER_ENV, "REQUEST_BODY_TIMEOUT_SECONDS": "3"}


@pytest.fixture(scope="module")
def web(database_url: str) -> Iterator[ServerProcess]:
    """uvicorn as the Procfile starts it (the harness's web server), with a 3 s body timeout."""
    server = web_server(database_url, env=WEB_ENV)
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
    """The Procfile's web line (which the harness's web server, and so these tests, run) and docker-compose's
    start uvicorn with the same limits and protocol: h11, which bounds the head it buffers, with the head timeout."""
    limits = [option for option in procfile_web_options({}) if option != "--no-access-log"]
    for flag in ("--limit-concurrency", "--timeout-keep-alive", "--h11-max-incomplete-event-size"):
        assert flag in limits
    module, _, name = limits[limits.index("--http") + 1].partition(":")
    assert issubclass(getattr(importlib.import_module(module), name), H11Protocol)
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


#: A server full at 5 connections, whose connections must send each head within 3 s.
CROWDED_ENV = {**WORKER_ENV, "WEB_MAX_CONNECTIONS": "5", "REQUEST_HEAD_TIMEOUT_SECONDS": "3"}
PARTIAL_HEAD = "GET /api/v1/orders/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@pytest.fixture(scope="module")
def crowded_web(database_url: str) -> Iterator[ServerProcess]:
    server = web_server(database_url, env=CROWDED_ENV).start()
    yield server
    server.stop()


def served_again(client: ApiClient, *, within: float) -> int:
    """The status of the first answer that is not uvicorn's 503 (server full), polling for at most `within` s."""
    deadline = time.monotonic() + within
    status = client.get("/orders/").status
    while status == 503 and time.monotonic() < deadline:
        time.sleep(0.25)
        status = client.get("/orders/").status
    return status


def test_connections_that_never_finish_their_head_are_closed_and_others_served_again(crowded_web) -> None:
    """8 connections that send a request line and a header, then nothing, with --limit-concurrency 5: before,
    uvicorn timed nothing until a head was complete, and every other request was answered 503 for good. Now
    each is answered 408 and closed REQUEST_HEAD_TIMEOUT_SECONDS after it opened, and the server serves again."""
    client = ApiClient(crowded_web.url + "/api/v1")
    slow = [raw_request(crowded_web, PARTIAL_HEAD) for _ in range(8)]
    try:
        assert client.get("/orders/").status == 503  # full: uvicorn's own answer, before any application code
        assert served_again(client, within=3 + 15) == 401  # anonymous: the application's answer
        answers = [response_read(sock) for sock in slow]
        closed = [sock.recv(1) for sock in slow]
    finally:
        for sock in slow:
            sock.close()
    assert {status for status, _, _ in answers} == {408}
    _, headers, body = answers[0]
    assert headers["connection"] == "close" and b"did not arrive within 3 seconds" in body
    assert closed == [b""] * len(slow)


def test_the_head_clock_restarts_for_each_request_and_stops_at_a_complete_head(crowded_web) -> None:
    """A kept-alive connection must send its next head in time too; a complete head's body (its own deadline,
    10 s here) may take longer than the head timeout (3 s)."""
    kept = raw_request(crowded_web, PARTIAL_HEAD + "\r\n")
    body_late = raw_request(
        crowded_web,
        "POST /api/v1/conversations/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 9\r\n\r\n",
    )
    try:
        status, headers, _ = response_read(kept)
        assert status == 401 and headers.get("connection") != "close"
        kept.sendall(PARTIAL_HEAD.encode())  # the next request's head, never finished
        for piece in (b"{", b"}", b" ", b" ", b" ", b" ", b" ", b" ", b" "):
            time.sleep(0.5)  # 4.5 s in all: longer than the head timeout
            body_late.sendall(piece)
        assert response_read(body_late)[0] == 401  # the whole body was read: the application's answer
        status, headers, body = response_read(kept)
        assert status == 408 and headers["connection"] == "close", body
        assert kept.recv(1) == b""
    finally:
        kept.close()
        body_late.close()


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
    "headers", [{f"X-Filler-{n}": "x" for n in range(150)}, {"X-Filler": "x" * 10000}], ids=["count", "size"]
)
def test_too_many_or_too_large_headers_are_refused(database_url: str, transactional_db: Any, headers) -> None:
    """uvicorn's parsers bound neither the count nor the size of a head that arrives whole. (h11 refuses a head
    still incomplete past --h11-max-incomplete-event-size itself, with a 400: the limit here is set below it.)"""
    server = web_server(database_url, env={**WORKER_ENV, "REQUEST_MAX_HEADER_BYTES": "8192"}).start()
    try:
        response = ApiClient(server.url + "/api/v1").get("/health/", headers=headers)
    finally:
        server.stop()
    assert response.status == 431
    assert response.json["error"]["code"] == "headers_too_large"
