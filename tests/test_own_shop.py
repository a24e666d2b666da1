"""The README's "Use your own shop", end to end, as a new user follows it: no code changed, everything configured by
environment variables and two commands, every part a real process.

A shop called "Fjord & Fell" (the brand), its help centre in a folder outside the package (Markdown, HTML and plain
text, with a staff-only note), its order system's REST API (harness/fake_commerce.py on 127.0.0.1, order ids like
FF104233) and its MCP server (harness/fake_mcp.py on 127.0.0.1): `manage.py knowledge import … --prune`,
`manage.py create_customer`, `manage.py shop check`, then uvicorn and a Celery worker as the Procfile starts them,
and a customer over HTTP asking a question from the documents and for a refund executed at the shop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.models import LedgerEntry
from conversations.models import Customer
from harness.fake_commerce import TOKEN, FakeCommerce
from harness.fake_mcp import FakeMCP
from harness.processes import ROOT, ServerProcess, web_server
from knowledge.models import Document
from knowledge.services import demo_documents_load
from tests.conftest import WORKER_ENV, run_wait
from tests.http import ApiClient

pytestmark = [pytest.mark.e2e]

BIKE_CARE = """# Bike care

## Chain cleaning
Clean the chain of your bicycle with a degreaser every 300 kilometres, then oil it lightly.

> Internal: staff may send a free chain tool to customers who complain twice.
"""
RETURNS = """<!doctype html><html lang="en"><head><title>ignored</title><script>var tracking = 1;</script></head>
<body><nav>Home | Shop | Help</nav><h1>Returns at Fjord &amp; Fell</h1>
<h2>Returning a bike</h2><p>Bikes can be returned within 60 days if they have been ridden less than 50 km.</p>
</body></html>"""
CONTACT = "Contact us\nCall the Bergen workshop on weekdays between 08:00 and 16:00.\n"


@pytest.fixture
def own_shop(tmp_path: Path, database_url: str, transactional_db: Any) -> Iterator[dict[str, Any]]:
    """The shop's folder, API and MCP server, and the environment the README sets; the demo documents are loaded
    again afterwards (the knowledge base outlives a test)."""
    folder = tmp_path / "fjord-help"
    (folder / "guides").mkdir(parents=True)
    (folder / "guides" / "bike-care.md").write_text(BIKE_CARE)
    (folder / "returns.html").write_text(RETURNS)
    (folder / "contact.txt").write_text(CONTACT)
    shop, mcp = FakeCommerce().start(), FakeMCP().start()
    env = {
        "DATABASE_URL": database_url,
        "BRAND_SHOP_NAME": "Fjord & Fell",
        "BRAND_SHOP_DESCRIPTION": "a mountain bike shop in Bergen",
        "COMMERCE_BACKEND": "http",
        "COMMERCE_API_URL": shop.url,
        "COMMERCE_API_TOKEN_ENV": "SHOP_API_TOKEN",
        "SHOP_API_TOKEN": TOKEN,
        "COMMERCE_ORDER_ID_PATTERN": "FF[0-9]{6}",
        "MCP_SERVERS": json.dumps(
            {
                "shop": {
                    "url": mcp.url,
                    "headers": {"Authorization": "SHOP_MCP_TOKEN"},
                    "tools": {"send_replacement": "acting"},
                }
            }
        ),
        "SHOP_MCP_TOKEN": f"Bearer {mcp.token}",
    }
    yield {"folder": folder, "shop": shop, "mcp": mcp, "env": env}
    shop.stop(), mcp.stop()
    Document.objects.filter(source__startswith=str(folder)).delete()
    demo_documents_load()


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`.venv/bin/python manage.py ARGS…` with the README's environment, as a user runs it."""
    command = [sys.executable, "manage.py", *args]
    return subprocess.run(
        command, cwd=ROOT, env={**os.environ, **WORKER_ENV, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def web(own_shop: dict[str, Any]) -> Iterator[ServerProcess]:
    server = web_server(own_shop["env"]["DATABASE_URL"], env=own_shop["env"]).start()
    yield server
    server.stop()


def test_a_new_shop_is_configured_checked_and_answers_without_code_changes(own_shop, worker_factory, web) -> None:
    env, shop = own_shop["env"], own_shop["shop"]

    # 1. The documents, imported from a folder outside the package; --prune replaces the demo's.
    imported = manage(env, "knowledge", "import", str(own_shop["folder"]), "--prune")
    assert imported.returncode == 0, imported.stderr
    assert "3 added, 0 updated, 0 unchanged, 11 removed" in imported.stdout
    again = manage(env, "knowledge", "import", str(own_shop["folder"]), "--prune")
    assert "0 added, 0 updated, 3 unchanged, 0 removed" in again.stdout  # idempotent

    # 2. A customer, and their order in the shop's own system.
    created = manage(env, "create_customer", "ingrid@example.com", "--name", "Ingrid")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    customer_id = str(Customer.objects.get(user__email="ingrid@example.com").id)
    shop.add_order(customer_id, "FF104233", "89.00")

    # 3. The check, before any customer asks: every part read from the configured systems.
    checked = manage(env, "shop", "check", "--customer", customer_id, "--ask", "how often do I clean the chain")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = checked.stdout
    assert "Fjord & Fell, a mountain bike shop in Bergen" in report
    assert "3 of your own documents, 0 demo documents" in report and "Bike care — Chain cleaning" in report
    assert f"customer {customer_id} has 1 orders: FF104233 89.00 EUR delivered" in report
    assert "stock_level (read)" in report and "send_replacement (acting)" in report
    assert "WARN" not in report and "FAIL" not in report

    # 4. Web and worker as the Procfile starts them; the customer over HTTP.
    worker_factory("own-shop", env=env)
    client = ApiClient(web.url + "/api/v1", token)
    assert [order["id"] for order in client.get("/orders/").json] == ["FF104233"]  # read from the shop's API
    assert "Fjord &amp; Fell support" in ApiClient(web.url).get("/login/").body.decode()

    conversation = client.post("/conversations/").json["id"]
    asked = client.post(f"/conversations/{conversation}/messages/", {"content": "How often should I clean my chain?"})
    run = run_wait(asked.json["run"]["id"])
    assert run.status == "completed", (run.reason, run.reason_detail)
    reply = client.get(f"/conversations/{conversation}/messages/").json[-1]["content"]
    assert "every 300 kilometres" in reply and "Source: Bike care" in reply
    assert "free chain tool" not in reply  # the staff-only note is never retrieved

    refund = client.post(
        f"/conversations/{conversation}/messages/", {"content": "Please refund 20 EUR on order FF104233."}
    )
    run = run_wait(refund.json["run"]["id"])
    assert run.status == "completed", (run.reason, run.reason_detail)
    key = f"refund:{run.id}:0"
    assert shop.refunds == [{"key": key, "order_id": "FF104233", "amount": "20.00", "currency": "EUR"}]
    assert list(LedgerEntry.objects.filter(kind="refund").values_list("key", "status")) == [(key, "done")]
    reply = client.get(f"/conversations/{conversation}/messages/").json[-1]["content"]
    assert "FF104233" in reply and "20.00" in reply


def test_the_check_names_what_would_fail_a_customer(own_shop) -> None:
    env = {**own_shop["env"], "SHOP_API_TOKEN": ""}
    own_shop["mcp"].stop()
    checked = manage(env, "shop", "check")
    assert checked.returncode == 1
    assert "FAIL  orders       COMMERCE_API_TOKEN_ENV names SHOP_API_TOKEN, which is not set." in checked.stdout
    assert "FAIL  mcp:shop     its tools could not be listed" in checked.stdout
    assert "2 part(s) would fail a customer" in checked.stderr

    wrong = manage({**own_shop["env"], "SHOP_API_TOKEN": "not-the-token"}, "shop", "check")
    assert wrong.returncode == 1 and "listing customer" in wrong.stdout and "401" in wrong.stdout


def test_an_order_id_pattern_that_would_misread_texts_is_refused_at_start_up(own_shop) -> None:
    for pattern, problem in [("(FF)[0-9]{6}", "capturing groups"), ("(?:[A-Z0-9]+)+-X", "repeats itself")]:
        checked = manage({**own_shop["env"], "COMMERCE_ORDER_ID_PATTERN": pattern}, "shop", "check")
        assert checked.returncode == 1 and problem in checked.stderr, checked.stderr


def test_a_shop_error_never_reaches_the_customer(own_shop, transactional_db, make_customer, api, settings, monkeypatch):
    """The shop's error body (anything in it) stays in the log: the customer reads a fixed sentence, a 500 when the
    shop refused (a permanent error) and a 503 when it could not be reached."""
    shop = own_shop["shop"]
    settings.COMMERCE_BACKEND, settings.COMMERCE_API_URL = "http", shop.url
    settings.COMMERCE_API_TOKEN_ENV = "SHOP_API_TOKEN"
    monkeypatch.setenv("SHOP_API_TOKEN", "not-the-token")  # the shop answers 401 {"error": "unauthorized"}
    _, token = make_customer()
    response = api(token).get("/orders/")
    body = json.loads(response.body)
    # Only the fixed sentence and the trace id (random hex, which may well contain "401": compared whole, not searched)
    assert response.status == 500 and set(body) == {"error", "trace_id"}, response.body
    assert body["error"] == {"code": "permanent", "message": "The request could not be completed."}, response.body
    settings.COMMERCE_API_URL = "http://127.0.0.1:9"  # nothing listens: its address stays out of the answer too
    response = api(token).get("/orders/")
    assert response.status == 503 and b"127.0.0.1" not in response.body
