"""Server-Sent Events under uvicorn (ASGI): live progress of a run, resumable, bounded in time."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.conftest import order_add
from tests.http import ApiClient

pytestmark = [pytest.mark.e2e]

STACK_ENV = {"SSE_MAX_SECONDS": "4", "SSE_POLL_SECONDS": "0.2"}


def read_events(url: str, token: str, last_event_id: str | None = None, timeout: float = 30.0) -> tuple[list, str]:
    """Read a stream until the server closes it: (events as (id, type, data), raw text)."""
    headers = {"Authorization": f"Token {token}", "Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    request = urllib.request.Request(url, headers=headers)
    raw = []
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["X-Trace-Id"]
        for line in response:
            raw.append(line.decode())
            assert time.monotonic() - started < timeout
    events, current = [], {}
    for line in "".join(raw).splitlines():
        if not line:
            if "event" in current:
                events.append((current.get("id"), current["event"], json.loads(current.get("data", "null"))))
            current = {}
        elif not line.startswith(":") and ":" in line:
            field, _, value = line.partition(":")
            current[field] = value.strip()
    return events, "".join(raw)


def test_a_run_streams_its_steps_reply_and_end(stack, make_customer) -> None:
    web, _worker = stack
    _, token = make_customer()
    client = ApiClient(web.url + "/api/v1", token)
    conversation_id = client.post("/conversations/").json["id"]
    run_id = client.post(
        f"/conversations/{conversation_id}/messages/", {"content": "How long does shipping take?"}
    ).json["run"]["id"]

    events, _ = read_events(f"{web.url}/api/v1/runs/{run_id}/events/", token)
    kinds = [kind for _, kind, _ in events]
    assert kinds[-1] == "end" and events[-1][2]["status"] == "completed"
    steps = [(data["agent"], data["status"]) for _, kind, data in events if kind == "step"]
    for agent in ("triage", "planner", "retrieval", "account", "responder", "validator", "deliver"):
        assert (agent, "running") in steps and (agent, "completed") in steps
        assert steps.index((agent, "running")) < steps.index((agent, "completed"))
    replies = [data for _, kind, data in events if kind == "message"]
    assert len(replies) == 1 and replies[0]["role"] == "assistant" and "2 to 4 business days" in replies[0]["content"]
    assert [data["status"] for _, kind, data in events if kind == "run"] == ["queued", "running", "completed"]

    # Resuming after an event gets only what came after it.
    triage_done = next(
        eid
        for eid, kind, data in events
        if kind == "step" and data == {**data, "agent": "triage", "status": "completed"}
    )
    later, _ = read_events(f"{web.url}/api/v1/runs/{run_id}/events/", token, last_event_id=triage_done)
    later_steps = [(data["agent"], data["status"]) for _, kind, data in later if kind == "step"]
    assert ("triage", "running") not in later_steps and ("triage", "completed") not in later_steps
    assert ("deliver", "completed") in later_steps and later[-1][1] == "end"


def test_a_run_in_review_shows_review_pending_and_the_stream_ends_at_its_lifetime(stack, make_customer) -> None:
    web, _worker = stack
    customer, token = make_customer()
    order_add(customer, "SB-50002", "Aurora noise-cancelling headphones", "249.00")
    client = ApiClient(web.url + "/api/v1", token)
    conversation_id = client.post("/conversations/").json["id"]
    run_id = client.post(
        f"/conversations/{conversation_id}/messages/", {"content": "Please refund order SB-50002"}
    ).json["run"]["id"]
    started = time.monotonic()
    events, raw = read_events(f"{web.url}/api/v1/runs/{run_id}/events/", token)
    took = time.monotonic() - started
    kinds = [kind for _, kind, _ in events]
    assert "review" in kinds and "end" not in kinds
    assert [data["status"] for _, kind, data in events if kind == "run"][-1] == "awaiting_review"
    assert any(kind == "message" and data["role"] == "system" for _, kind, data in events)
    assert "connection lifetime reached" in raw
    assert took >= 3.5  # it lasted its lifetime (SSE_MAX_SECONDS=4), not less; the read itself is bounded


def test_events_need_the_runs_owner(stack, make_customer) -> None:
    web, _worker = stack
    _, token_a = make_customer()
    _, token_b = make_customer()
    a = ApiClient(web.url + "/api/v1", token_a)
    conversation_id = a.post("/conversations/").json["id"]
    run_id = a.post(f"/conversations/{conversation_id}/messages/", {"content": "Hello"}).json["run"]["id"]
    for token, status in ((token_b, 404), (None, 401), ("bad-token", 401)):
        response = ApiClient(web.url + "/api/v1", token).get(f"/runs/{run_id}/events/")
        assert response.status == status
        assert response.json["error"]["code"] in ("not_found", "not_authenticated")
