"""End to end: real HTTP (live server), a real Celery worker, the real database and Redis."""

from __future__ import annotations

import pytest

from api.services import api_token_get_or_create
from conversations.models import Message
from conversations.services import user_create
from orchestration.models import Run, Step
from tests.conftest import run_wait

pytestmark = [pytest.mark.e2e]

AGENTS_IN_ORDER = ["triage", "planner", "retrieval", "account", "responder", "validator", "deliver"]


def start_conversation(client) -> str:
    response = client.post("/conversations/")
    assert response.status == 201, response.body
    assert set(response.json) == {"id", "status", "created_at"}
    return response.json["id"]


def test_a_customer_message_gets_a_grounded_reply(worker, make_customer, api) -> None:
    _, token = make_customer()
    client = api(token)
    conversation_id = start_conversation(client)

    posted = client.post(f"/conversations/{conversation_id}/messages/", {"content": "How long does shipping take?"})
    assert posted.status == 202, posted.body
    run_info = posted.json["run"]
    assert run_info["status"] == "queued"
    assert posted.headers["x-trace-id"] == run_info["trace_id"]
    assert posted.json["message"]["role"] == "customer"

    run = run_wait(run_info["id"])
    assert run.status == "completed", (run.reason, run.reason_detail)

    messages = client.get(f"/conversations/{conversation_id}/messages/").json
    assert [m["role"] for m in messages] == ["customer", "assistant"]
    reply = messages[1]["content"]
    assert "2 to 4 business days" in reply
    assert "Source: Shipping times and costs" in reply

    body = client.get(f"/runs/{run.id}/").json
    assert body["status"] == "completed"
    assert body["trace_id"] == run_info["trace_id"]
    # retrieval and account run in parallel (same hop): either may start first.
    agents = [s["agent"] for s in body["steps"]]
    assert agents[:2] + sorted(agents[2:4]) + agents[4:] == [
        "triage",
        "planner",
        "account",
        "retrieval",
        *AGENTS_IN_ORDER[4:],
    ]
    for step in body["steps"]:
        assert step["status"] == "completed"
        assert step["started_at"] and step["finished_at"] and step["duration_ms"] is not None
    # Attempts, tokens and costs are for staff (the review item, the admin), not in the customer's view.
    assert not {"usage", "budget", "reason_detail"} & set(body)
    assert not {"attempt", "tokens", "model", "prompt_version", "cost_usd", "error"} & set(body["steps"][0])
    steps = Step.objects.filter(run=run)
    assert steps.count() == len(AGENTS_IN_ORDER) and {step.attempt for step in steps} == {1}
    assert sum(step.tokens for step in steps) == Run.objects.get(id=run.id).tokens_used > 0


def test_conversation_detail_and_list_show_only_own_data(worker, make_customer, api) -> None:
    _, token_a = make_customer()
    _, token_b = make_customer()
    a, b = api(token_a), api(token_b)
    conversation_id = start_conversation(a)
    posted = a.post(f"/conversations/{conversation_id}/messages/", {"content": "Do you accept PayPal?"})
    run_id = posted.json["run"]["id"]
    run_wait(run_id)

    detail = a.get(f"/conversations/{conversation_id}/").json
    assert detail["id"] == conversation_id and len(detail["messages"]) == 2
    assert [c["id"] for c in a.get("/conversations/").json["results"]] == [conversation_id]

    assert b.get("/conversations/").json["results"] == []
    others = (f"/conversations/{conversation_id}/", f"/conversations/{conversation_id}/messages/", f"/runs/{run_id}/")
    for path in others:
        response = b.get(path)
        assert response.status == 404, path
        assert response.json["error"]["code"] == "not_found"
    response = b.post(f"/conversations/{conversation_id}/messages/", {"content": "hi"})
    assert response.status == 404
    assert Message.objects.filter(conversation_id=conversation_id).count() == 2


def test_no_token_or_a_bad_token_gets_401(transactional_db, api) -> None:
    for client in (api(None), api("not-a-token")):
        for path in ("/conversations/", "/runs/00000000-0000-0000-0000-000000000000/"):
            response = client.get(path)
            assert response.status == 401, (path, response.body)
            assert response.json["error"]["code"] in ("not_authenticated", "authentication_failed")
            assert response.headers["x-trace-id"]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"content": ""}', "application/json", "content must not be empty"),
        (b'{"content": "   "}', "application/json", "content must not be empty"),
        (b"{}", "application/json", "content: This field is required."),
        (b'{"content": 42}', "application/json", "content must be a string"),
        (b'{"content": "hi"', "application/json", "JSON parse error"),
        (b"content=hi", "application/x-www-form-urlencoded", "Unsupported media type"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_stores_nothing(make_customer, api, body, content_type, message) -> None:
    _, token = make_customer()
    client = api(token)
    conversation_id = start_conversation(client)
    response = client.request(
        "POST", f"/conversations/{conversation_id}/messages/", data=body, headers={"Content-Type": content_type}
    )
    assert 400 <= response.status < 500
    assert message in response.json["error"]["message"], response.json
    assert Message.objects.count() == 0 and Run.objects.count() == 0


def test_oversized_content_is_refused_with_the_limit(make_customer, api, settings) -> None:
    _, token = make_customer()
    client = api(token)
    conversation_id = start_conversation(client)
    response = client.post(f"/conversations/{conversation_id}/messages/", {"content": "x" * 4001})
    assert response.status == 400
    assert response.json["error"]["message"] == "content is 4001 characters; the limit is 4000."
    assert Message.objects.count() == 0 and Run.objects.count() == 0


def test_unknown_conversation_is_404(make_customer, api) -> None:
    _, token = make_customer()
    client = api(token)
    for conversation_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = client.post(f"/conversations/{conversation_id}/messages/", {"content": "hi"})
        assert response.status == 404
        assert response.json["error"] == {"code": "not_found", "message": "Conversation not found."}
    assert client.get("/no-such-endpoint/").json["error"]["code"] == "not_found"
    assert Message.objects.count() == 0


def test_idempotency_key_returns_the_first_run(worker, make_customer, api) -> None:
    _, token = make_customer()
    client = api(token)
    conversation_id = start_conversation(client)
    path = f"/conversations/{conversation_id}/messages/"
    first = client.post(path, {"content": "Can I cancel my order?"}, headers={"Idempotency-Key": "abc-1"})
    again = client.post(path, {"content": "Can I cancel my order?"}, headers={"Idempotency-Key": "abc-1"})
    assert first.status == again.status == 202
    # The same message and run; the run's status is its current one.
    assert first.json["message"] == again.json["message"]
    assert first.json["run"]["id"] == again.json["run"]["id"]
    assert first.json["run"]["trace_id"] == again.json["run"]["trace_id"]
    other = client.post(path, {"content": "Something else"}, headers={"Idempotency-Key": "abc-1"})
    assert other.status == 409
    assert other.json["error"]["code"] == "conflict"
    run_wait(first.json["run"]["id"])
    assert Run.objects.count() == 1
    assert Message.objects.filter(role="customer").count() == 1


def test_health_reports_database_broker_and_workers(worker, api) -> None:
    response = api(None).get("/health/")
    assert response.status == 200, response.body
    checks = response.json["checks"]
    assert checks["database"]["ok"] and checks["broker"]["ok"] and checks["workers"]["ok"]
    staff_token = api_token_get_or_create(user=user_create(email="ops@example.com", is_staff=True))
    assert worker.hostname in api(staff_token).get("/health/").json["checks"]["workers"]["workers"]  # staff only
