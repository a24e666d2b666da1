"""MCP tools end to end: a real MCP server built with the `mcp` package's FastMCP (harness/fake_mcp.py) on 127.0.0.1
over streamable HTTP, a real Celery worker with MCP_SERVERS, the openai provider against the fake LLM scripting the
model's tool calls."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agents.deliver import Deliver
from agents.envelope import Envelope
from agents.models import LedgerEntry
from conversations.models import Message
from harness.fake_mcp import FakeMCP
from harness.processes import SupervisorProcess, WorkerProcess
from orchestration.models import ReviewItem, Step
from orchestration.pipeline import canvas_for
from orchestration.reviews import review_decide
from orchestration.selectors import review_tool_actions
from tests.conftest import WORKER_ENV, broker_reset, llm_env, order_add, run_wait
from tests.review_data import staff_reviewer

pytestmark = [pytest.mark.e2e]

TOKEN_ENV = {"SHOP_MCP_TOKEN": "Bearer mcp-test-token"}
SLIP_WITH_TOOLS = {"slip": [["retrieval", "account"], "tools", "responder", "validator", "deliver"]}


def servers(mcp: FakeMCP) -> dict[str, Any]:
    auth = {"Authorization": "SHOP_MCP_TOKEN"}
    return {
        "shop": {"url": mcp.url, "headers": auth, "tools": {"send_replacement": "acting"}},
        # The same server again, where sending a replacement needs a person's approval.
        "desk": {"url": mcp.url, "headers": auth, "tools": {"send_replacement": "review"}},
    }


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[FakeMCP]:
    server = FakeMCP().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mcp_worker(mcp_server: FakeMCP, fake_server: Any, database_url: str) -> Iterator[WorkerProcess]:
    """One worker (and the supervisor) for the module, with the fake MCP server configured."""
    broker_reset()
    env = {
        **WORKER_ENV,
        **llm_env(fake_server, MCP_SERVERS=json.dumps(servers(mcp_server)), AGENT_RETRY_BACKOFF_MAX_SECONDS="0.4"),
        **TOKEN_ENV,
    }
    worker = WorkerProcess(database_url, name="mcp", env=env).start()
    supervisor = SupervisorProcess(database_url, env=env).start()
    yield worker
    supervisor.stop()
    worker.stop()


@pytest.fixture
def mcp(mcp_server: FakeMCP, mcp_worker: WorkerProcess, fake: Any) -> FakeMCP:
    mcp_server.reset()
    return mcp_server


def reply_of(run: Any) -> str:
    return Message.objects.get(conversation_id=run.conversation_id, role="assistant").content


def stock_answers(fake: Any) -> None:
    fake.answers.update(
        {
            "triage": {"intent": "other", "confidence": 0.9, "order_ids": []},
            "planner": SLIP_WITH_TOOLS,
            "tools": {"tool_calls": [("mcp__shop__stock_level", {"sku": "LANTERN-7"})]},
            "responder": {"reply": "The LANTERN-7 lantern has 17 units in stock.", "sources": []},
        }
    )


def test_a_read_only_tool_answers_and_grounds_the_reply(mcp, fake, start_run) -> None:
    stock_answers(fake)
    run = run_wait(start_run("Is the LANTERN-7 lantern in stock?").id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert reply_of(run) == "The LANTERN-7 lantern has 17 units in stock."
    offered = [tool["function"]["name"] for tool in fake.calls("tools")[0].body["tools"]]
    assert offered[3:5] == ["mcp__shop__stock_level", "mcp__shop__send_replacement"]
    customer = str(run.conversation.customer_id)  # sent in the request's `_meta`: the server scopes its answer by it
    assert mcp.calls == [{"tool": "stock_level", "arguments": {"sku": "LANTERN-7"}, "key": "", "customer": customer}]
    # The call and its answer are recorded on the `mcp` step, and the responder was shown them.
    step = Step.objects.get(run=run, agent="mcp")
    (recorded,) = step.output["envelope"]["payload"]["tool_results"]["mcp"]
    assert recorded["tool"] == "stock_level" and "17 units in stock" in recorded["text"]
    assert "17 units in stock" in json.dumps(fake.calls("responder")[0].body["messages"])


def test_an_ungrounded_reply_about_the_tool_is_held(mcp, fake, start_run) -> None:
    stock_answers(fake)
    fake.answers["responder"] = {"reply": "The LANTERN-7 lantern has 250 units in stock.", "sources": []}
    run = run_wait(start_run("Is the LANTERN-7 lantern in stock?").id)
    assert run.status == "awaiting_review" and run.reason == "validation_failed", (run.reason, run.reason_detail)


def test_a_tool_that_is_not_configured_is_never_called(mcp, fake, start_run) -> None:
    stock_answers(fake)
    fake.answers["tools"] = {"tool_calls": [("mcp__other__wipe_orders", {})]}
    run = run_wait(start_run("Is the LANTERN-7 lantern in stock?").id)
    # The model's call was refused (repair round, then the fallback drops it): the reply has no stock to stand on.
    assert run.status == "awaiting_review" and run.reason == "validation_failed", (run.reason, run.reason_detail)
    repair = fake.calls("tools")[1].body["messages"][-1]["content"]
    assert "got 'mcp__other__wipe_orders'" in repair
    assert mcp.calls == [] and not Step.objects.filter(run=run, agent="mcp").exists()


def replacement_answers(fake: Any, tool: str) -> None:
    fake.answers.update(
        {
            "triage": {"intent": "order_change", "confidence": 0.9, "order_ids": ["SB-30001"]},
            "planner": SLIP_WITH_TOOLS,
            "tools": {"tool_calls": [("order_lookup", {"order_id": "SB-30001"}), (tool, {"order_id": "SB-30001"})]},
            "responder": {"reply": "Your order SB-30001 (Storm lantern) has been delivered.", "sources": []},
        }
    )


def test_an_acting_tool_is_proposed_approved_and_executed_once(
    mcp, fake, start_run, make_customer, settings, monkeypatch
) -> None:
    customer, _ = make_customer()
    order_add(customer, "SB-30001", "Storm lantern", "39.00")
    replacement_answers(fake, "mcp__shop__send_replacement")
    run = run_wait(start_run("My order SB-30001 arrived broken, please replace it.", customer=customer).id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    validated = Step.objects.get(run=run, agent="validator").output["envelope"]
    action = {"type": "mcp", "server": "shop", "tool": "send_replacement", "arguments": {"order_id": "SB-30001"}}
    assert validated["payload"]["proposed_tool_actions"] == [action]
    assert validated["payload"]["approved_tool_actions"] == [action]  # the validator approved it
    key = f"mcp:{run.id}:0"
    assert mcp.replacements == {key: "SB-30001"}
    deliver = Step.objects.get(run=run, agent="deliver").output["envelope"]["payload"]
    assert deliver["executed_actions"][0]["text"] == "A replacement for order SB-30001 has been sent."

    # Deliver's message delivered twice more (through the broker): nothing is sent again.
    for _ in range(2):
        canvas_for(Envelope.from_dict(validated).evolve(slip=["deliver"])).apply_async()
    time.sleep(2)
    # And deliver itself, run again on the same envelope: the ledger returns the recorded result.
    settings.MCP_SERVERS = servers(mcp)
    monkeypatch.setenv("SHOP_MCP_TOKEN", TOKEN_ENV["SHOP_MCP_TOKEN"])
    again = Deliver().handle(Envelope.from_dict(validated).evolve(slip=["deliver"]))
    assert again.payload["executed_actions"] == deliver["executed_actions"]
    assert [c["tool"] for c in mcp.calls] == ["send_replacement"] and mcp.calls[0]["key"] == key
    assert len(mcp.replacements) == 1
    assert LedgerEntry.objects.filter(kind="mcp", run_id=str(run.id)).count() == 1
    assert Message.objects.filter(conversation_id=run.conversation_id, role="assistant").count() == 1


def test_a_review_tool_waits_for_a_person_then_acts_once(mcp, fake, start_run, make_customer) -> None:
    customer, _ = make_customer()
    order_add(customer, "SB-30001", "Storm lantern", "39.00")
    replacement_answers(fake, "mcp__desk__send_replacement")
    run = run_wait(start_run("My order SB-30001 arrived broken, please replace it.", customer=customer).id)
    assert run.status == "awaiting_review" and run.reason == "mcp_action_review", (run.reason, run.reason_detail)
    assert mcp.calls == []  # proposed, not executed
    item = ReviewItem.objects.get(run=run)
    review_decide(item_id=item.id, reviewer=staff_reviewer(), decision="approve")
    run = run_wait(run.id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert mcp.replacements == {f"mcp:{run.id}:0": "SB-30001"}
    assert LedgerEntry.objects.filter(kind="mcp", run_id=str(run.id)).count() == 1


def test_a_server_that_fails_is_retried_then_a_person_answers(mcp, fake, start_run) -> None:
    stock_answers(fake)
    mcp.fail_calls = True
    run = run_wait(start_run("Is the LANTERN-7 lantern in stock?").id, timeout=30)  # retried with backoff, not hung
    assert run.status == "awaiting_review", (run.status, run.reason, run.reason_detail)
    assert ReviewItem.objects.get(run=run).reason == "mcp_unavailable"
    step = Step.objects.get(run=run, agent="mcp")
    # Four tries (max_retries=3); the last is recorded as the halt it ends in.
    assert [a.error_type for a in step.attempts.all()] == ["MCPUnavailable"] * 3 + ["RunHalted"]
    assert not Message.objects.filter(conversation_id=run.conversation_id, role="assistant").exists()


def test_an_action_the_server_never_answers_goes_to_review_then_acts_once_on_approval(
    mcp, fake, start_run, make_customer
) -> None:
    customer, _ = make_customer()
    order_add(customer, "SB-30001", "Storm lantern", "39.00")
    replacement_answers(fake, "mcp__shop__send_replacement")
    mcp.fail_calls = True  # down for calls once the validator approved the action
    run = run_wait(start_run("My order SB-30001 arrived broken, please replace it.", customer=customer).id, timeout=40)
    assert run.status == "awaiting_review" and run.reason == "mcp_unavailable", (run.reason, run.reason_detail)
    assert "outcome unknown" in run.reason_detail and "same key" in run.reason_detail
    key = f"mcp:{run.id}:0"
    entry = LedgerEntry.objects.get(kind="mcp", run_id=str(run.id))  # the evidence: requested, never settled
    assert entry.key == key and entry.status == "pending" and entry.result["tries"] == 4
    assert [a.error_type for a in Step.objects.get(run=run, agent="deliver").attempts.all()][-1] == "RunHalted"
    assert not Message.objects.filter(conversation_id=run.conversation_id, role="assistant").exists()
    # The server is back; a person approves: the same key is sent, the action happens once.
    mcp.fail_calls = False
    review_decide(item_id=ReviewItem.objects.get(run=run).id, reviewer=staff_reviewer(), decision="approve")
    run = run_wait(run.id)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert mcp.replacements == {key: "SB-30001"} and {c["key"] for c in mcp.calls} == {key}
    assert LedgerEntry.objects.get(key=key).status == "done"


def test_an_mcp_tool_is_given_only_the_customers_own_orders(mcp, fake, start_run, make_customer) -> None:
    customer, _ = make_customer()
    order_add(customer, "SB-30001", "Storm lantern", "39.00")
    other, _ = make_customer()
    order_add(other, "SB-30002", "Camp stove", "59.00")  # another customer's order
    fake.answers.update(
        {
            "triage": {"intent": "order_change", "confidence": 0.9, "order_ids": ["SB-30001", "SB-30002"]},
            "planner": SLIP_WITH_TOOLS,
            "tools": {
                "tool_calls": [
                    ("mcp__shop__tracking", {"order_id": "SB-30001"}),
                    ("mcp__shop__send_replacement", {"order_id": "SB-30002"}),
                    ("mcp__shop__tracking", {"order_id": "SB-30002"}),
                ]
            },
            "responder": {"reply": "Your order SB-30001 is in transit, due tomorrow.", "sources": []},
        }
    )
    message = "Where is SB-30001? And send a replacement for FF104234, I mean SB-30002."
    run = run_wait(start_run(message, customer=customer).id)
    # Refused (a repair round, then dropped): another customer's order is neither read nor acted on.
    repair = fake.calls("tools")[1].body["messages"][-1]["content"]
    assert "uses order SB-30002, which is not one of this customer's orders; use only SB-30001" in repair
    tools = Step.objects.get(run=run, agent="tools").output["envelope"]["payload"]
    assert "proposed_tool_actions" not in tools
    assert tools["mcp_calls"] == [{"server": "shop", "tool": "tracking", "arguments": {"order_id": "SB-30001"}}]
    # The customer's own order is read, with the customer's id in the request's `_meta`.
    own = {"tool": "tracking", "arguments": {"order_id": "SB-30001"}, "key": "", "customer": str(customer.id)}
    assert mcp.calls == [own] and mcp.replacements == {}
    assert not LedgerEntry.objects.filter(kind="mcp", run_id=str(run.id)).exists()


def test_an_action_answered_with_an_error_is_final_and_approving_sends_the_reply(
    mcp, fake, start_run, make_customer
) -> None:
    customer, _ = make_customer()
    order_add(customer, "SB-30001", "Storm lantern", "39.00")
    replacement_answers(fake, "mcp__shop__send_replacement")
    mcp.refuse_replacements = True  # the tool answers with an error (isError)
    run = run_wait(start_run("My order SB-30001 arrived broken, please replace it.", customer=customer).id)
    assert run.status == "awaiting_review" and run.reason == "mcp_action_failed", (run.reason, run.reason_detail)
    item = ReviewItem.objects.get(run=run)
    assert "shop/send_replacement answered" in item.reasons[0] and "out of stock" in item.reasons[0]
    assert review_tool_actions(item) == []  # executed: nothing is proposed any more
    key = f"mcp:{run.id}:0"
    review_decide(item_id=item.id, reviewer=staff_reviewer(), decision="approve")
    run = run_wait(run.id)
    # The approval sends the reply; the action is not sent again, and the run does not come back to review.
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert reply_of(run) == "Your order SB-30001 (Storm lantern) has been delivered."
    assert [(c["tool"], c["key"]) for c in mcp.calls] == [("send_replacement", key)] and mcp.replacements == {}
    entry = LedgerEntry.objects.get(kind="mcp", run_id=str(run.id))
    assert entry.status == "done" and entry.result["is_error"] and ReviewItem.objects.filter(run=run).count() == 1
