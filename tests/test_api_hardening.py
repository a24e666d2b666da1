"""The API on the open internet: one error shape, limits, throttling, isolation, secure settings."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from django.contrib.auth import get_user_model

from api.services import api_token_get_or_create
from conversations.models import Message
from harness.processes import free_port, web_server
from orchestration.models import Run
from tests.conftest import ROOT_DIR, order_add
from tests.http import ApiClient

pytestmark = [pytest.mark.e2e]


def start_conversation(client) -> str:
    return client.post("/conversations/").json["id"]


def assert_error_shape(response, status: int, code: str | None = None) -> None:
    assert response.status == status, (response.status, response.body[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers["content-type"]
    body = response.json
    assert set(body) == {"error", "trace_id"} and {"code", "message"} <= set(body["error"])
    assert body["trace_id"] == response.headers["x-trace-id"]
    if code:
        assert body["error"]["code"] == code


def test_every_error_is_json_in_one_shape(make_customer, api, settings) -> None:
    _, token = make_customer()
    client = api(token)
    conversation_id = start_conversation(client)
    path = f"/conversations/{conversation_id}/messages/"
    assert_error_shape(client.get("/nope/"), 404, "not_found")
    assert_error_shape(client.get("/conversations/00000000-0000-0000-0000-000000000000/"), 404, "not_found")
    assert_error_shape(client.request("DELETE", path), 405, "method_not_allowed")
    assert_error_shape(client.request("POST", path, data=b"content=x", headers={"Content-Type": "text/plain"}), 415)
    assert_error_shape(client.request("POST", path, data=b"{", headers={"Content-Type": "application/json"}), 400)
    assert_error_shape(api(None).get("/conversations/"), 401)
    too_big = b'{"content": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b'"}'
    response = client.request("POST", path, data=too_big, headers={"Content-Type": "application/json"})
    assert_error_shape(response, 413, "request_too_large")
    assert Message.objects.count() == 0


def test_an_unexpected_failure_is_a_json_500(make_customer, api, monkeypatch) -> None:
    _, token = make_customer()

    def broken(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("api.views.order_list", broken)
    response = api(token).get("/orders/")
    assert_error_shape(response, 500, "server_error")
    assert "database on fire" not in response.body.decode()


def test_throttling_answers_429_with_retry_after(make_customer, api, settings) -> None:
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "customer": "5/min", "message": "2/min"}
    _, token = make_customer()
    client = api(token)
    conversation_id = start_conversation(client)
    path = f"/conversations/{conversation_id}/messages/"
    statuses = [client.post(path, {"content": f"hello {i}"}).status for i in range(3)]
    assert statuses == [202, 202, 429]
    throttled = client.post(path, {"content": "again"})
    assert_error_shape(throttled, 429, "throttled")
    assert 0 < int(throttled.headers["retry-after"]) <= 60
    responses = [client.get("/orders/") for _ in range(3)]
    assert responses[-1].status == 429  # 5 requests a minute in all
    _, other_token = make_customer()
    assert api(other_token).get("/orders/").status == 200  # per customer
    assert Run.objects.count() == 2


def test_a_throttled_caller_is_let_through_again_when_the_window_ends(make_customer, api, settings) -> None:
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "customer": "2/s"}
    _, token = make_customer()
    client = api(token)
    # Bounded: at most a few windows' worth of requests until one is refused (a slow machine may see
    # a window end between two requests).
    for _ in range(20):
        refused = client.get("/orders/")
        if refused.status == 429:
            break
    assert refused.status == 429
    assert refused.headers["retry-after"] == "1"
    time.sleep(1.2)
    assert client.get("/orders/").status == 200


def test_throttling_per_ip_covers_anonymous_callers(transactional_db, api, settings) -> None:
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "ip": "3/min"}
    client = api(None)
    statuses = [client.get("/conversations/").status for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_idempotency_keys_are_per_customer(make_customer, api) -> None:
    _, token_a = make_customer()
    _, token_b = make_customer()
    a, b = api(token_a), api(token_b)
    conv_a, conv_b = start_conversation(a), start_conversation(b)
    first = a.post(f"/conversations/{conv_a}/messages/", {"content": "Hi"}, headers={"Idempotency-Key": "k-1"})
    other = b.post(f"/conversations/{conv_b}/messages/", {"content": "Hi"}, headers={"Idempotency-Key": "k-1"})
    assert first.status == other.status == 202
    assert first.json["run"]["id"] != other.json["run"]["id"]
    # B cannot reach A's message through A's key, even in A's conversation.
    assert (
        b.post(f"/conversations/{conv_a}/messages/", {"content": "Hi"}, headers={"Idempotency-Key": "k-1"}).status
        == 404
    )
    assert_error_shape(
        a.post(f"/conversations/{conv_a}/messages/", {"content": "Hi"}, headers={"Idempotency-Key": "x" * 201}), 400
    )


def test_every_customer_endpoint_is_isolated(make_customer, api) -> None:
    customer_a, token_a = make_customer()
    _, token_b = make_customer()
    order_add(customer_a, "SB-40001", "Tent", "10.00")
    a, b = api(token_a), api(token_b)
    conversation_id = start_conversation(a)
    run_id = a.post(f"/conversations/{conversation_id}/messages/", {"content": "Hi"}).json["run"]["id"]
    for path in (
        f"/conversations/{conversation_id}/",
        f"/conversations/{conversation_id}/messages/",
        f"/runs/{run_id}/",
        f"/runs/{run_id}/events/",
    ):
        assert_error_shape(b.get(path), 404, "not_found")
        assert_error_shape(api(None).get(path), 401)
    assert b.get("/conversations/").json["results"] == []
    assert b.get("/orders/").json == []
    assert_error_shape(b.post(f"/conversations/{conversation_id}/messages/", {"content": "x"}), 404)

    staff = get_user_model().objects.create_user("staff@example.com", is_staff=True)
    staff_client = api(api_token_get_or_create(user=staff))
    for path in ("/conversations/", "/orders/", f"/runs/{run_id}/", f"/runs/{run_id}/events/"):
        assert_error_shape(staff_client.get(path), 403, "permission_denied")


def test_the_openapi_schema_and_docs_are_served(transactional_db, api) -> None:
    client = api(None)
    schema = client.get("/schema/", headers={"Accept": "application/vnd.oai.openapi+json"})
    assert schema.status == 200
    document = schema.json
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in (
        "/api/v1/conversations/",
        "/api/v1/conversations/{conversation_id}/messages/",
        "/api/v1/runs/{run_id}/",
        "/api/v1/runs/{run_id}/events/",
        "/api/v1/orders/",
        "/api/v1/reviews/{item_id}/decision/",
        "/api/v1/health/",
    ):
        assert path in paths, path
    post = paths["/api/v1/conversations/{conversation_id}/messages/"]["post"]
    assert {"202", "400", "401", "404", "409", "413", "415", "429"} <= set(post["responses"])
    assert post["responses"]["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    docs = client.get("/docs/", headers={"Accept": "text/html"})
    assert docs.status == 200 and b"swagger-ui" in docs.body
    assert b"cdn." not in docs.body and b"unpkg" not in docs.body  # served from this server


def test_production_settings_pass_the_deploy_check() -> None:
    env = {
        **os.environ,
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": "x7!" + "q" * 20 + "Z9#kLm2@pR5$vT8^wY1&" + "abcdefghijklmnop",
        "DJANGO_ALLOWED_HOSTS": "switchboard.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    missing = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "DJANGO_SECRET_KEY": ""},
    )
    assert missing.returncode != 0 and "DJANGO_SECRET_KEY" in missing.stderr


def test_the_api_answers_503_while_the_database_is_away(transactional_db) -> None:
    # A web server whose database does not answer (a restart, a failover): every request that needs it is a 503
    # with Retry-After in the JSON error shape, never a 500 or a hang.
    away = f"postgres://postgres@127.0.0.1:{free_port()}/switchboard"
    web = web_server(away, env={"DB_POOL_TIMEOUT_SECONDS": "1"}).start()
    try:
        client = ApiClient(web.url + "/api/v1", "0" * 40)
        for response in (client.get("/conversations/"), client.post("/conversations/")):
            assert response.status == 503, response.body[:300]
            assert response.json["error"]["code"] == "unavailable"
            assert response.headers["retry-after"] == "5"
        assert ApiClient(web.url + "/api/v1").get("/health/").status == 503
    finally:
        web.stop()
