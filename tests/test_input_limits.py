"""Limits on every input, through real HTTP: each hostile or careless input gets a clear 4xx in the one
JSON error shape (or a bounded answer) and stores nothing; the API's errors are JSON whether DEBUG is
on or off; a flood of bad tokens is throttled per IP before it costs a database query."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.backends.signals import connection_created

from api.services import api_token_get_or_create
from conversations.models import Conversation, Message
from conversations.services import conversation_create
from harness.processes import ServerProcess, web_server
from orchestration.models import Run
from tests.http import ApiClient
from tests.review_data import run_in_review, staff_reviewer
from tests.test_api_hardening import assert_error_shape

pytestmark = [pytest.mark.e2e]


def conversation_start(client: ApiClient) -> str:
    return client.post("/conversations/").json["id"]


# --- Idempotency-Key -----------------------------------------------------------------------------


def test_an_idempotency_key_of_any_accepted_length_works(make_customer, api) -> None:
    _, token = make_customer()
    client = api(token)
    path = f"/conversations/{conversation_start(client)}/messages/"
    for length in (1, 154, 155, 199, 200):
        key = "k" * length
        first = client.post(path, {"content": f"hello {length}"}, headers={"Idempotency-Key": key})
        assert first.status == 202, (length, first.body[:300])
        again = client.post(path, {"content": f"hello {length}"}, headers={"Idempotency-Key": key})
        assert again.status == 202 and again.json["run"]["id"] == first.json["run"]["id"]
    # Keys differing only after the 154th character are different keys.
    other = client.post(path, {"content": "hello 200"}, headers={"Idempotency-Key": "k" * 199 + "x"})
    assert other.status == 202 and Message.objects.count() == 6
    assert_error_shape(client.post(path, {"content": "other"}, headers={"Idempotency-Key": "k" * 200}), 409)
    assert_error_shape(client.post(path, {"content": "long"}, headers={"Idempotency-Key": "k" * 201}), 400)
    assert Message.objects.count() == Run.objects.count() == 6


# --- JSON bodies ---------------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_json_nested_too_deep_is_a_400_on_every_json_endpoint(make_customer, api, settings) -> None:
    _, token = make_customer()
    client = api(token)
    path = f"/conversations/{conversation_start(client)}/messages/"
    json_type = {"Content-Type": "application/json"}
    for body in (nested(5000), b'{"content": ' + nested(5000) + b"}", b'{"content": ' + nested(100) + b"}"):
        assert_error_shape(client.request("POST", path, data=body, headers=json_type), 400, "parse_error")
    limit = settings.REQUEST_JSON_MAX_DEPTH
    too_deep = {"content": "hi", "extra": json.loads(nested(limit))}  # one level more than the limit, in all
    response = client.request("POST", path, data=json.dumps(too_deep).encode(), headers=json_type)
    assert_error_shape(response, 400, "parse_error")
    assert f"{limit}" in response.json["error"]["message"]
    at_limit = {"content": "hi", "extra": json.loads(nested(limit - 1))}
    assert client.request("POST", path, data=json.dumps(at_limit).encode(), headers=json_type).status == 202
    assert Message.objects.count() == 1

    _, item, _ = run_in_review(steps=1, messages=1)
    reviewer = api(api_token_get_or_create(user=staff_reviewer()))
    decision = b'{"decision": "edit", "action": ' + nested(5000) + b"}"
    assert_error_shape(
        reviewer.request("POST", f"/reviews/{item.id}/decision/", data=decision, headers=json_type), 400, "parse_error"
    )
    item.refresh_from_db()
    assert item.status == "open" and not item.decisions.exists()


# --- Page sizes ----------------------------------------------------------------------------------


def test_a_page_is_never_larger_than_the_maximum(make_customer, api, settings) -> None:
    settings.API_PAGE_MAX_SIZE = 4
    customer, token = make_customer()
    for _ in range(6):
        conversation_create(customer=customer)
    client = api(token)
    default = settings.REST_FRAMEWORK["PAGE_SIZE"]
    for query, expected in (
        ("limit=10000000000000000000", 4),
        ("limit=1000000000", 4),
        ("limit=4", 4),
        ("limit=3", 3),
        ("limit=abc", min(default, 6)),
        ("limit=-5", min(default, 6)),
        ("limit=0", min(default, 6)),
        ("limit=%C2%B2", min(default, 6)),
        ("offset=10000000000000000000", 0),
        ("offset=-1&limit=2", 2),
        ("offset=abc&limit=2", 2),
    ):
        response = client.get(f"/conversations/?{query}")
        assert response.status == 200, (query, response.body[:300])
        assert response.json["count"] == 6
        assert len(response.json["results"]) == expected, query


# --- Last-Event-ID -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web(database_url: str) -> Iterator[ServerProcess]:
    """The web app under uvicorn, as `make run` serves it (no worker: these runs are written directly)."""
    server = web_server(database_url).start()
    yield server
    server.stop()


def test_a_malformed_last_event_id_is_ignored_and_logs_nothing(web, transactional_db) -> None:
    run, _, token = run_in_review(steps=1, messages=1)
    Run.objects.filter(id=run.id).update(status=Run.Status.COMPLETED)
    client = ApiClient(web.url + "/api/v1", token)
    path = f"/runs/{run.id}/events/"
    everything = client.get(path, headers={"Accept": "text/event-stream"})
    assert everything.status == 200 and b"event: end" in everything.body
    events = everything.body.count(b"\nevent: ")
    log_before = len(web.log_text())
    for last_event_id in ("²|x", "1²|x", "¹²|x", "12|", "|x", "-1|x", "1" * 5000 + "|x", "12|" + "x" * 5000, "x"):
        response = client.get(path, headers={"Accept": "text/event-stream", "Last-Event-ID": last_event_id})
        assert response.status == 200, last_event_id
        # Ignored: the stream starts from the beginning and ends as usual.
        assert b"event: end" in response.body and response.body.count(b"\nevent: ") == events, last_event_id
    logged = web.log_text()[log_before:]
    assert "Traceback" not in logged and "Exception" not in logged, logged[-3000:]


# --- Content with nothing visible ----------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "\u200b",  # zero-width space (Cf)
        "\u200b\u200c\u200d\u2060\ufeff",  # zero-width (non-)joiners, word joiner, BOM
        " \u200b \u00a0 \u3000 ",  # spaces (Zs) around a zero-width space
        "\u2028\u200b\u2029",  # line and paragraph separators around a zero-width space
        "\u0301\u0308\u20dd",  # combining marks with nothing to combine with (Mn, Me)
        "\u202e\u2066\u2069",  # bidi controls
        "\u3164\u115f\uffa0",  # Hangul fillers (letters that render blank)
        "\u2800\u2800",  # the blank Braille pattern
        "\x1f\x7f\u0085",  # control characters
        "\U000e0041\U000e007f",  # tag characters
    ],
)
def test_content_with_nothing_visible_is_refused(make_customer, api, content) -> None:
    _, token = make_customer()
    client = api(token)
    path = f"/conversations/{conversation_start(client)}/messages/"
    response = client.post(path, {"content": content})
    assert_error_shape(response, 400, "invalid")
    assert "nothing visible" in response.json["error"]["message"]
    assert Message.objects.count() == Run.objects.count() == 0


def test_content_with_something_visible_is_accepted(make_customer, api) -> None:
    _, token = make_customer()
    client = api(token)
    path = f"/conversations/{conversation_start(client)}/messages/"
    for content in ("\u200bhi\u200b", "e\u0301", "\u4f60\u597d", "?", "\U0001f600", "\u0661"):
        assert client.post(path, {"content": content}).status == 202, repr(content)
    assert Message.objects.count() == 6


# --- JSON errors with DEBUG on and off -----------------------------------------------------------


@pytest.fixture(params=["true", "false"], ids=["debug-on", "debug-off"])
def web_without_database(request: Any, database_url: str) -> Iterator[tuple[str, ServerProcess]]:
    """The web app under uvicorn with DEBUG on (`make run`'s default) or off, whose database does not
    exist: every query fails, so a request that authenticates gets the database-unavailable 503."""
    missing = database_url.rsplit("/", 1)[0] + "/switchboard_no_such_database"
    server = web_server(missing, env={"DJANGO_DEBUG": request.param, "DB_POOL_MAX_SIZE": "0"}).start()
    yield request.param, server
    server.stop()


def test_api_errors_are_json_with_debug_on_and_off(web_without_database) -> None:
    debug, server = web_without_database
    anonymous = ApiClient(server.url + "/api/v1")
    with_token = ApiClient(server.url + "/api/v1", "0" * 40)
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    answers = [
        (anonymous.get("/no/such/endpoint/"), 404, "not_found"),
        (anonymous.get("/no/such/endpoint/", headers=browser), 404, "not_found"),
        (anonymous.get("/conversations/", headers=browser), 401, "not_authenticated"),
        (with_token.get("/conversations/"), 503, "unavailable"),
        (with_token.get("/conversations/", headers=browser), 503, "unavailable"),
    ]
    if debug == "true":
        # Django's DEBUG-only error for a POST missing its URL's trailing slash: an unexpected error too.
        answers.append((anonymous.post("/conversations", {"content": "x"}), 500, "server_error"))
    for response, status, code in answers:
        assert_error_shape(response, status, code)
        text = response.body.decode()
        for leak in ("Traceback", "OperationalError", "switchboard_no_such_database", "<html", "settings"):
            assert leak not in text, (debug, status, text[:500])


# --- Bad tokens ----------------------------------------------------------------------------------


class QueryCounter:
    """Counts the SQL statements every request-serving thread runs (not the test's own thread), through
    Django's execute wrappers installed on each new connection."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.test_thread = threading.get_ident()

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if threading.get_ident() != self.test_thread:
            self.statements.append(sql)
        return execute(sql, params, many, context)

    def connected(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)


@pytest.fixture
def queries() -> Iterator[QueryCounter]:
    counter = QueryCounter()
    connection_created.connect(counter.connected)
    yield counter
    connection_created.disconnect(counter.connected)
    if counter in connection.execute_wrappers:
        connection.execute_wrappers.remove(counter)


def test_bad_tokens_are_throttled_per_ip_before_any_database_query(transactional_db, api, settings, queries) -> None:
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "ip": "3/min"}
    bad = api("0" * 40)
    assert [bad.get("/conversations/").status for _ in range(3)] == [401, 401, 401]
    assert queries.statements, "the counter sees the token lookups"
    queries.statements.clear()
    for path in ("/conversations/", "/orders/", "/reviews/", f"/conversations/{'0' * 32}/messages/"):
        assert_error_shape(bad.get(path), 429, "throttled")
    assert_error_shape(bad.post("/conversations/", {}), 429, "throttled")
    assert queries.statements == []
    assert not Conversation.objects.exists()


def test_bad_tokens_on_health_are_throttled_per_ip_before_any_database_query(
    transactional_db, api, settings, queries
) -> None:
    """The health endpoint had no throttle and authenticates (staff see details): every bad token cost a token
    query, however many came. Requests with credentials now count per IP first; anonymous probes never do."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "ip": "3/min"}
    bad = api("0" * 40)
    assert [bad.get("/health/").status for _ in range(3)] == [401, 401, 401]
    assert queries.statements, "the counter sees the token lookups"
    queries.statements.clear()
    response = bad.get("/health/")
    assert_error_shape(response, 429, "throttled")
    assert int(response.headers["retry-after"]) > 0
    assert_error_shape(bad.get("/conversations/"), 429, "throttled")  # one counter per address for the whole API
    assert queries.statements == []
    probe = api(None)
    for _ in range(5):  # a probe from the same (throttled) address, more often than the rate: never 429
        answer = probe.get("/health/", timeout=30)
        assert answer.status in (200, 503) and answer.json["status"] in ("ok", "unavailable"), answer.body[:300]


def test_bad_tokens_on_event_streams_are_throttled_per_ip_before_any_database_query(
    transactional_db, api, settings, queries, make_customer
) -> None:
    """The event stream authenticated every opening before any throttle (its own per-customer limits come after
    authentication): every bad token cost a token query. Openings now count per IP first, as every API request."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "ip": "3/min"}
    _, token = make_customer()
    bad = api("0" * 40)
    events = f"/runs/{'0' * 32}/events/"
    assert [bad.get(events).status for _ in range(3)] == [401, 401, 401]
    assert queries.statements, "the counter sees the token lookups"
    queries.statements.clear()
    for client in (bad, api(token), api(None)):  # the address is over its rate, whoever calls from it
        response = client.get(events, headers={"Accept": "text/event-stream"})
        assert_error_shape(response, 429, "throttled")
        assert int(response.headers["retry-after"]) > 0
    assert_error_shape(bad.get("/orders/"), 429, "throttled")
    assert queries.statements == []
