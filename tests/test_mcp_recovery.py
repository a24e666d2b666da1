"""Acting MCP tools happen once, across crashes: each approved call is recorded as requested (a PENDING ledger row,
committed) before it is sent with its key, settled after it (done, failed on a refusal, pending with the evidence
when the server did not answer), and re-sent with the same key by the delivery that takes over from a worker killed
in between. Also the review page, which shows a person what approving executes."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings

from agents.models import LedgerEntry
from agents.tools.mcp import MCPRefused, MCPUnavailable
from agents.tools.mcp_agent import tool_action_key, tool_actions_execute
from conversations.models import Message
from conversations.selectors import conversation_customer_id
from conversations.services import conversation_create
from harness.fake_mcp import FakeMCP
from orchestration.models import Step
from tests.conftest import llm_env, order_add, run_wait
from tests.review_data import run_in_review, staff_reviewer
from tests.test_mcp import TOKEN_ENV, replacement_answers, servers

pytestmark = [pytest.mark.e2e]

ACTION = {"type": "mcp", "server": "shop", "tool": "send_replacement", "arguments": {"order_id": "SB-30001"}}


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[FakeMCP]:
    server = FakeMCP().start()
    yield server
    server.stop()


@pytest.fixture
def mcp(mcp_server: FakeMCP, settings: Any, monkeypatch: pytest.MonkeyPatch) -> FakeMCP:
    """The fake server, reset, configured in this process too (its breakers closed)."""
    mcp_server.reset()
    settings.MCP_SERVERS = servers(mcp_server)
    monkeypatch.setenv("SHOP_MCP_TOKEN", TOKEN_ENV["SHOP_MCP_TOKEN"])
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    for key in client.scan_iter("switchboard:breaker:mcp:*"):
        client.delete(key)
    return mcp_server


def sent(mcp: FakeMCP) -> list[str]:
    """The keys of the replacements asked for (every request that reached the tool)."""
    return [call["key"] for call in mcp.calls if call["tool"] == "send_replacement"]


@pytest.fixture
def conversation_id(make_customer: Any) -> str:
    """A conversation of a customer who has order SB-30001."""
    customer, _ = make_customer()
    order_add(customer, "SB-30001", "Storm lantern", "39.00")
    return str(conversation_create(customer=customer).id)


def test_an_action_is_recorded_before_it_is_sent_and_resent_with_its_key(mcp, conversation_id) -> None:
    key = tool_action_key("run-a", 0)
    mcp.fail_calls = True  # the server does not answer the call (HTTP 503)
    for tries in (1, 2):
        with pytest.raises(MCPUnavailable, match=r"outcome unknown .* same key"):
            tool_actions_execute(actions=[ACTION], run_id="run-a", conversation_id=conversation_id)
        entry = LedgerEntry.objects.get(kind="mcp")
        assert entry.key == key and entry.status == "pending" and entry.request == ACTION
        assert entry.result["tries"] == tries and "503" in entry.result["error"] and entry.result["at"]
    mcp.fail_calls = False
    (result,) = tool_actions_execute(actions=[ACTION], run_id="run-a", conversation_id=conversation_id)
    assert result["text"] == "A replacement for order SB-30001 has been sent." and not result["is_error"]
    entry = LedgerEntry.objects.get(kind="mcp")
    assert entry.status == "done" and entry.result == result
    # Done: a later delivery returns the recorded result and sends nothing.
    assert tool_actions_execute(actions=[ACTION], run_id="run-a", conversation_id=conversation_id) == [result]
    assert sent(mcp) == [key] and mcp.replacements == {key: "SB-30001"}
    # Every request carried the customer's id (in its `_meta`, beside the key), and so does the ledger row.
    customer_id = conversation_customer_id(conversation_id=conversation_id)
    assert {call["customer"] for call in mcp.calls} == {customer_id} and entry.customer_id == customer_id


def test_a_refused_action_is_failed_and_never_sent_again(mcp, conversation_id, monkeypatch) -> None:
    monkeypatch.setenv("SHOP_MCP_TOKEN", "Bearer not-the-token")  # the server answers 401
    with pytest.raises(MCPRefused, match="401"):
        tool_actions_execute(actions=[ACTION], run_id="run-b", conversation_id=conversation_id)
    entry = LedgerEntry.objects.get(kind="mcp")
    assert entry.status == "failed" and "401" in entry.result["error"]
    monkeypatch.setenv("SHOP_MCP_TOKEN", TOKEN_ENV["SHOP_MCP_TOKEN"])
    with pytest.raises(MCPRefused, match="refused before"):
        tool_actions_execute(actions=[ACTION], run_id="run-b", conversation_id=conversation_id)
    assert sent(mcp) == [] and LedgerEntry.objects.get(kind="mcp").status == "failed"


def test_a_worker_killed_between_the_action_and_its_outcome_acts_once(
    mcp, fake, worker_factory, make_customer, start_run
) -> None:
    customer, _ = make_customer()
    order_add(customer, "SB-30001", "Storm lantern", "39.00")
    replacement_answers(fake, "mcp__shop__send_replacement")
    mcp.hold_next, mcp.hold_seconds = 1, 30  # the server sends the replacement and holds its answer
    env = {**llm_env(fake, MCP_SERVERS=json.dumps(servers(mcp))), **TOKEN_ENV}
    worker = worker_factory("doomed", env=env, concurrency=1, supervise=False)
    run = start_run("My order SB-30001 arrived broken, please replace it.", customer=customer)
    assert mcp.held.wait(30), "the action never reached the MCP server"
    key = tool_action_key(str(run.id), 0)
    entry = LedgerEntry.objects.get(kind="mcp")  # read by another connection: committed before the call
    assert entry.key == key and entry.status == "pending" and mcp.replacements == {key: "SB-30001"}
    step = Step.objects.get(run=run, agent="deliver", status="running")
    child = int(step.attempts.get(status="running").worker.rpartition(":")[2])
    os.kill(child, signal.SIGKILL)  # the pool process dies waiting for the answer
    mcp.release()

    run = run_wait(run.id, timeout=40)
    assert run.status == "completed", (run.reason, run.reason_detail)
    # Sent again with the same key after the crash; the server, deduplicating by it, acted once.
    assert sent(mcp) == [key, key] and mcp.replacements == {key: "SB-30001"}
    assert list(LedgerEntry.objects.filter(kind="mcp").values_list("key", "status")) == [(key, "done")]
    assert Message.objects.filter(conversation_id=run.conversation_id, role="assistant").count() == 1
    attempts = [a.status for a in Step.objects.get(run=run, agent="deliver").attempts.all()]
    assert attempts == ["abandoned", "succeeded"] and worker.process.poll() is None


def test_the_review_page_shows_the_proposed_tool_actions(client, db, settings) -> None:
    settings.MCP_SERVERS = {"shop": {"url": "http://127.0.0.1:9/mcp", "tools": {"send_replacement": "acting"}}}
    run, item, _ = run_in_review(steps=1, messages=1)
    item.proposed_action = [{"type": "refund", "order_id": "SB-30001", "amount": "12.00", "currency": "EUR"}]
    item.resume_envelope = {**run.start_envelope, "payload": {"proposed_tool_actions": [ACTION]}}
    item.save()
    client.force_login(staff_reviewer())
    page = client.get(f"/admin/orchestration/reviewitem/{item.id}/change/").content.decode()
    assert "refund 12.00 EUR on SB-30001" in page  # the refund, and beside it the tool action
    tools = page[page.index("Proposed MCP tool actions") :]
    row = "<td>shop</td><td>send_replacement</td><td><pre>{\n  &quot;order_id&quot;: &quot;SB-30001&quot;\n}</pre></td>"
    assert row in tools and "<td>acting: approving executes it once</td>" in tools
    listing = client.get("/admin/orchestration/reviewitem/").content.decode()
    assert "refund 12.00 EUR on SB-30001; MCP shop/send_replacement" in listing
