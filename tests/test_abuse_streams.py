"""Event streams under abuse (issue 12): limited per customer and in total, woken by Redis pings, and
holding no database connection while they wait — against uvicorn as `make run` serves them."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from api.services import api_token_get_or_create
from api.streams import customer_key
from conversations.models import Message
from conversations.services import conversation_create, message_create, user_create
from harness.processes import ServerProcess, web_server
from orchestration.models import Run
from tests.conftest import WORKER_ENV, wait_for
from tests.http import ApiClient

pytestmark = [pytest.mark.e2e]

# The stack's web server: streams wait on pings (a poll only every minute), beat every second, and are few.
STACK_ENV = {
    "SSE_POLL_SECONDS": "60",
    "SSE_HEARTBEAT_SECONDS": "1",
    "SSE_MAX_SECONDS": "30",
    "SSE_MAX_STREAMS_PER_CUSTOMER": "2",
    "SSE_MAX_STREAMS": "3",
    "SSE_OPENS_PER_MINUTE": "4",
}
# Servers for the many-streams tests: limits high enough to open them all.
MANY_STREAMS_ENV = {
    **WORKER_ENV,
    "SSE_POLL_SECONDS": "60",
    "SSE_MAX_SECONDS": "60",
    "SSE_MAX_STREAMS_PER_CUSTOMER": "100",
    "SSE_MAX_STREAMS": "100",
    "SSE_OPENS_PER_MINUTE": "100",
}


class Stream:
    """One open event stream over its own connection; `lines_until` reads it as it arrives."""

    def __init__(self, base_url: str, run_id: object, token: str | None, timeout: float = 20.0) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        headers = {"Accept": "text/event-stream", **({"Authorization": f"Token {token}"} if token else {})}
        self.connection.request("GET", f"/api/v1/runs/{run_id}/events/", headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.lines: list[str] = []

    def json(self) -> Any:
        return json.loads(self.response.read())

    def lines_until(self, text: str) -> list[str]:
        """Read lines until one contains `text` (the connection's timeout bounds each read)."""
        while not any(text in line for line in self.lines):
            line = self.response.readline()
            if not line:
                raise AssertionError(f"the stream ended before {text!r}: {self.lines}")
            self.lines.append(line.decode())
        return self.lines

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def streams() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def stream_open(stack: ExitStack, base_url: str, run_id: object, token: str | None) -> Stream:
    stream = Stream(base_url, run_id, token)
    stack.callback(stream.close)
    return stream


def run_waiting(customer: Any) -> Run:
    """A run awaiting review, made directly (no worker): its stream stays open until its lifetime."""
    conversation = conversation_create(customer=customer)
    message, _ = message_create(conversation_id=conversation.id, role=Message.Role.CUSTOMER, content="Hello")
    return Run.objects.create(
        conversation=conversation,
        trigger_message=message,
        trace_id="abuse" + conversation.id.hex[:27],
        status=Run.Status.AWAITING_REVIEW,
        deadline_at=timezone.now() + timedelta(hours=1),
    )


def redis_counts() -> redis.Redis:
    return redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])


@pytest.fixture
def server_factory(database_url: str) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def start(env: dict[str, str], application_name: str | None = None) -> ServerProcess:
        url = f"{database_url}?application_name={application_name}" if application_name else database_url
        server = web_server(url, env=env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_streams_are_capped_per_customer_and_in_total(stack, make_customer, streams) -> None:
    web, _worker = stack
    ada, ada_token = make_customer()
    bob, bob_token = make_customer()
    ada_run, bob_run = run_waiting(ada), run_waiting(bob)

    first = [stream_open(streams, web.url, ada_run.id, ada_token) for _ in range(2)]
    assert [stream.status for stream in first] == [200, 200]
    third = stream_open(streams, web.url, ada_run.id, ada_token)
    assert third.status == 429 and int(third.response.getheader("Retry-After")) >= 1
    assert third.json()["error"]["code"] == "too_many_streams"

    # Bob has none open, but the server allows three in total.
    assert stream_open(streams, web.url, bob_run.id, bob_token).status == 200
    refused = stream_open(streams, web.url, bob_run.id, bob_token)
    assert refused.status == 429 and refused.response.getheader("Retry-After")
    assert "server" in refused.json()["error"]["message"]

    # A closed stream gives its slot back.
    first[0].close()
    wait_for(lambda: redis_counts().zcard(customer_key(ada.id)) == 1, timeout=15)
    assert stream_open(streams, web.url, bob_run.id, bob_token).status == 200


def test_opening_streams_is_throttled_per_customer(stack, make_customer, streams) -> None:
    web, _worker = stack
    customer, token = make_customer()
    run = run_waiting(customer)
    for _ in range(4):  # SSE_OPENS_PER_MINUTE
        stream = stream_open(streams, web.url, run.id, token)
        assert stream.status == 200
        stream.lines_until("run:queued")
        stream.close()
    throttled = stream_open(streams, web.url, run.id, token)
    assert throttled.status == 429 and 1 <= int(throttled.response.getheader("Retry-After")) <= 60
    assert throttled.response.getheader("Content-Type") == "application/json"
    assert throttled.json()["error"]["code"] == "throttled"
    assert stream_open(streams, web.url, "no-such-run", token).status == 429  # counted before any lookup


def test_a_waiting_stream_is_woken_by_pings_and_beats_its_heart(stack, make_customer, streams) -> None:
    """SSE_POLL_SECONDS is 60 here: whatever arrives sooner came with a ping after the write's commit."""
    web, _worker = stack
    customer, token = make_customer()
    run = run_waiting(customer)
    stream = stream_open(streams, web.url, run.id, token)
    stream.lines_until("run:queued")
    stream.lines_until(": keep-alive")  # SSE_HEARTBEAT_SECONDS=1

    message_create(conversation_id=run.conversation_id, role=Message.Role.HUMAN_AGENT, content="We are on it.")
    assert any("We are on it." in line for line in stream.lines_until("We are on it."))
    run.status, run.finished_at = Run.Status.COMPLETED, timezone.now()
    run.save()
    lines = stream.lines_until("event: end")
    assert any('"status": "completed"' in line for line in lines)


def test_a_run_streams_to_its_end_on_the_workers_pings(stack, make_customer) -> None:
    web, _worker = stack
    _, token = make_customer()
    client = ApiClient(web.url + "/api/v1", token)
    conversation_id = client.post("/conversations/").json["id"]
    posted = client.post(f"/conversations/{conversation_id}/messages/", {"content": "How long does shipping take?"})
    stream = Stream(web.url, posted.json["run"]["id"], token)
    try:
        lines = stream.lines_until("event: end")
    finally:
        stream.close()
    text = "".join(lines)
    assert '"agent": "deliver"' in text and "2 to 4 business days" in text and '"status": "completed"' in text


def test_the_stream_keeps_its_statuses(stack, make_customer, streams, transactional_db) -> None:
    web, _worker = stack
    customer, token = make_customer()
    run = run_waiting(customer)
    staff = user_create(email="staff-streams@example.com", is_staff=True)
    assert ApiClient(web.url + "/api/v1", token).request("OPTIONS", f"/runs/{run.id}/events/").status == 405
    assert stream_open(streams, web.url, run.id, api_token_get_or_create(user=staff)).status == 403
    assert stream_open(streams, web.url, run.id, None).status == 401
    assert stream_open(streams, web.url, "no-such-run", token).status == 404


def database_connections(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name])
        return cursor.fetchone()[0]


def test_open_streams_hold_no_database_connection(server_factory, make_customer, streams) -> None:
    """Without a pool every connection a web thread holds is a PostgreSQL backend of its own: count them."""
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL backends")
    web = server_factory({**MANY_STREAMS_ENV, "DB_POOL_MAX_SIZE": "0"}, application_name="sb-streams-held")
    customer, token = make_customer()
    run = run_waiting(customer)
    opened = [stream_open(streams, web.url, run.id, token) for _ in range(12)]
    assert [stream.status for stream in opened] == [200] * 12
    for stream in opened:
        stream.lines_until("run:queued")  # each has authenticated, found the run and read its events
    # (A closed connection's backend may linger in pg_stat_activity for a moment; the streams' would stay.)
    wait_for(lambda: database_connections("sb-streams-held") == 0, timeout=10)

    # A change wakes them all; each reads, then gives its connection back.
    message_create(conversation_id=run.conversation_id, role=Message.Role.HUMAN_AGENT, content="Checking now.")
    for stream in opened:
        stream.lines_until("Checking now.")
    wait_for(lambda: database_connections("sb-streams-held") == 0, timeout=10)


def test_many_streams_leave_the_pool_to_other_customers(server_factory, make_customer, streams) -> None:
    """60 streams against a pool of 3: before, they took every connection and other requests failed."""
    web = server_factory({**MANY_STREAMS_ENV, "DB_POOL_MAX_SIZE": "3", "DB_POOL_TIMEOUT_SECONDS": "3"})
    customer, token = make_customer()
    _, other_token = make_customer(orders=2)
    run = run_waiting(customer)
    with ThreadPoolExecutor(20) as pool:
        opened = list(pool.map(lambda _: stream_open(streams, web.url, run.id, token), range(60)))
    assert [stream.status for stream in opened] == [200] * 60
    for stream in opened:
        stream.lines_until("run:queued")
    orders = ApiClient(web.url + "/api/v1", other_token).get("/orders/", timeout=20)
    assert orders.status == 200 and len(orders.json) == 2
