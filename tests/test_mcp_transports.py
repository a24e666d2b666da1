"""MCP servers that are down, and one served over stdio, against one real worker (concurrency 1: one tool cache):
`gone` (streamable HTTP, stopped after its tools were listed), `never` (its port closed before the worker starts:
it cannot be listed) and `kit` (a stdio command: `python -m harness.fake_mcp --stdio`). Every wait is bounded."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from conversations.models import Message
from harness.fake_mcp import FakeMCP
from harness.processes import SupervisorProcess, WorkerProcess
from orchestration.models import ReviewItem, Step
from tests.conftest import WORKER_ENV, broker_reset, llm_env, run_wait
from tests.test_mcp import SLIP_WITH_TOOLS, TOKEN_ENV, reply_of

pytestmark = [pytest.mark.e2e]

STDIO = ["-m", "harness.fake_mcp", "--stdio", "--stock", "KETTLE-2=5"]


@pytest.fixture(scope="module")
def gone() -> Iterator[FakeMCP]:
    server = FakeMCP().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mcp_worker(gone: FakeMCP, fake_server: Any, database_url: str) -> Iterator[WorkerProcess]:
    never = FakeMCP().start()
    never.stop()  # a real server, down: its port is closed
    auth = {"Authorization": "SHOP_MCP_TOKEN"}
    servers = {
        "gone": {"url": gone.url, "headers": auth},
        "never": {"url": never.url, "headers": auth},
        "kit": {"command": sys.executable, "args": STDIO, "timeout": 15},
    }
    extra = {"MCP_SERVERS": json.dumps(servers), "MCP_TIMEOUT_SECONDS": "2", "AGENT_RETRY_BACKOFF_MAX_SECONDS": "0.4"}
    env = {**WORKER_ENV, **llm_env(fake_server, **extra), **TOKEN_ENV}
    broker_reset()
    worker = WorkerProcess(database_url, name="mcp-down", env=env, concurrency=1).start()
    supervisor = SupervisorProcess(database_url, env=env).start()
    yield worker
    supervisor.stop()
    worker.stop()


def ask_stock(fake: Any, server: str, sku: str, reply: str) -> None:
    fake.answers.update(
        {
            "triage": {"intent": "other", "confidence": 0.9, "order_ids": []},
            "planner": SLIP_WITH_TOOLS,
            "tools": {"tool_calls": [(f"mcp__{server}__stock_level", {"sku": sku})]},
            "responder": {"reply": reply, "sources": []},
        }
    )


def offered(fake: Any) -> list[str]:
    return [tool["function"]["name"] for tool in fake.calls("tools")[-1].body["tools"]]


def test_a_server_that_cannot_be_listed_is_left_out_quickly(mcp_worker, gone, fake, start_run) -> None:
    ask_stock(fake, "gone", "LANTERN-7", "The LANTERN-7 lantern has 17 units in stock.")
    run = run_wait(start_run("Is the LANTERN-7 lantern in stock?").id, timeout=30)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert reply_of(run) == "The LANTERN-7 lantern has 17 units in stock."
    assert not [name for name in offered(fake) if name.startswith("mcp__never__")]
    assert {"mcp__gone__stock_level", "mcp__kit__stock_level"} <= set(offered(fake))
    log = mcp_worker.log_text()
    assert "MCP server never left out: its tools could not be listed" in log
    assert "did not answer within" not in log  # refused at once: nothing waited out a timeout on the closed port


def test_a_server_down_after_its_tools_were_listed_is_retried_then_reviewed(mcp_worker, gone, fake, start_run) -> None:
    ask_stock(fake, "gone", "LANTERN-7", "The LANTERN-7 lantern has 17 units in stock.")
    # Listed while up (the worker keeps the list), then stopped.
    assert run_wait(start_run("Is the LANTERN-7 lantern in stock?").id).status == "completed"
    gone.stop()
    run = run_wait(start_run("Is the LANTERN-7 lantern in stock?").id, timeout=30)  # retried with backoff, not hung
    assert run.status == "awaiting_review", (run.status, run.reason, run.reason_detail)
    assert ReviewItem.objects.get(run=run).reason == "mcp_unavailable"
    assert "mcp__gone__stock_level" in offered(fake)  # still offered from the list: the call is what failed
    attempts = Step.objects.get(run=run, agent="mcp").attempts.all()
    assert [a.error_type for a in attempts] == ["MCPUnavailable"] * 3 + ["RunHalted"]
    assert "ConnectError" in attempts[0].error
    assert not Message.objects.filter(conversation_id=run.conversation_id, role="assistant").exists()


def test_a_stdio_server_answers_through_a_worker(mcp_worker, fake, start_run) -> None:
    ask_stock(fake, "kit", "KETTLE-2", "The KETTLE-2 kettle has 5 units in stock.")
    run = run_wait(start_run("Is the KETTLE-2 kettle in stock?").id, timeout=30)
    assert run.status == "completed", (run.reason, run.reason_detail)
    assert reply_of(run) == "The KETTLE-2 kettle has 5 units in stock."
    (recorded,) = Step.objects.get(run=run, agent="mcp").output["envelope"]["payload"]["tool_results"]["mcp"]
    assert recorded["server"] == "kit" and recorded["text"] == "SKU KETTLE-2: 5 units in stock."
    assert "SKU KETTLE-2: 5 units in stock." in json.dumps(fake.calls("responder")[0].body["messages"])
