"""The chaos run's parts that need no stack: Procfile lines as commands, and the chaos model's answers to the
agents' real prompts (so that a prompt change that the model no longer understands fails here, not in a
ten-minute run)."""

from __future__ import annotations

import json
from typing import Any

from agents.grounding import reply_check
from agents.llm.schema import schema_errors
from agents.planner import PROMPT as PLANNER
from agents.planner import plan_problems
from agents.responder import PROMPT as RESPONDER
from agents.triage import PROMPT as TRIAGE
from bench.chaos.faults import FaultEvent
from bench.chaos.recovery import percentile
from harness.chaos_llm import UNUSABLE, FaultMix, planner, responder, tools, triage
from harness.procfile import option_set, procfile_command, procfile_read, variables_expand, worker_hostname
from tests.conftest import ROOT_DIR


def request(prompt: Any, variables: dict[str, Any]) -> dict[str, Any]:
    """The body the openai provider sends for a prompt."""
    return {"messages": prompt.render(variables)}


def test_procfile_lines_become_commands_with_their_variables() -> None:
    lines = procfile_read(ROOT_DIR / "Procfile")
    assert {"web", "worker", "worker-llm", "beat"} <= set(lines)
    web = procfile_command("web", lines["web"], {"PORT": "9999"})
    assert web.argv[:2] == ["/bin/sh", "-c"]  # migrate && exec the server: a shell line, as honcho runs it
    assert "--port 9999 " in web.argv[2] and "exec " in web.argv[2]
    worker = procfile_command("worker", lines["worker"], {})
    assert worker.is_celery_worker and worker.pool == "prefork"
    assert worker.env == {"DB_PERSISTENT_CONNECTIONS": "1"}
    assert procfile_command("worker-llm", lines["worker-llm"], {}).pool == "threads"
    assert worker_hostname(["celery", "--hostname", "default@%h"], "2") == "default-2@%h"
    assert option_set(["a", "--hostname", "x"], "--hostname", "y") == ["a", "--hostname", "y"]


def test_variables_expand_like_a_shell() -> None:
    assert variables_expand("${A:-2} $B ${C}", {"B": "b", "C": "c"}) == "2 b c"
    assert variables_expand("${A:-2}", {"A": "7"}) == "7"


def test_the_chaos_model_answers_the_agents_prompts_as_they_expect() -> None:
    message = "Please refund 9.00 EUR on order SB-12345, the strap was damaged."
    triaged = triage(request(TRIAGE, {"message": message, "intents": "shipping, refund"}))
    assert schema_errors(triaged, TRIAGE.schema) == []
    assert triaged["intent"] == "refund" and triaged["order_ids"] == ["SB-12345"]
    variables = {
        "intent": "refund",
        "order_ids": ["SB-12345"],
        "agents": "retrieval",
        "parallel": "retrieval and account",
        "message": message,
    }
    plan = planner(request(PLANNER, variables))
    assert "tools" in plan["slip"]
    assert plan_problems(plan["slip"], intent="refund", order_ids=["SB-12345"]) == []
    assert "billing_specialist" in json.dumps(UNUSABLE["planner"])  # the unusable plan names an unknown agent
    calls = tools(
        {
            "messages": [
                {
                    "role": "user",
                    "content": f'Intent: refund\nOrder numbers in the message: ["SB-12345"]\nMessage: {message}',
                }
            ]
        }
    )["tool_calls"]
    assert ("refund", {"order_id": "SB-12345", "amount": "9.00 EUR"}) in calls


def test_the_chaos_models_reply_is_grounded_in_what_it_was_given() -> None:
    passages = [
        {
            "doc_id": "shipping",
            "title": "Shipping times and costs",
            "section": "Times",
            "score": 1.0,
            "text": "Standard shipping takes 2 to 4 business days within Germany. Express is faster.",
        }
    ]
    lookup = {
        "SB-12345": {
            "order_id": "SB-12345",
            "found": True,
            "description": "Trail mug set",
            "total": "24.50",
            "currency": "EUR",
            "status": "delivered",
            "refunded_amount": "0.00",
            "refundable": "24.50",
        }
    }
    actions = [{"type": "refund", "order_id": "SB-12345", "amount": "9.00", "currency": "EUR"}]
    variables = {
        "message": "Refund 9.00 EUR on SB-12345",
        "order_ids": ["SB-12345"],
        "passages": passages,
        "tool_results": {"orders": lookup},
        "actions": actions,
        "history": [],
    }
    answer = responder(request(RESPONDER, variables))
    assert "9.00 EUR for order SB-12345" in answer["reply"] and answer["sources"] == ["Shipping times and costs"]
    payload = {"passages": passages, "tool_results": {"orders": lookup}, "proposed_actions": actions}
    assert reply_check(answer["reply"], payload).reasons == []  # type: ignore[arg-type]


def test_the_fault_mix_is_seeded_and_keeps_its_share() -> None:
    first, second = (FaultMix(share=0.2, seed=3, timeout_seconds=5) for _ in range(2))
    picks = [first.choose("triage") for _ in range(2000)]
    assert picks == [second.choose("triage") for _ in range(2000)]
    assert 0.15 < sum(p is not None for p in picks) / len(picks) < 0.25
    assert {p.split(":")[0] for p in picks if p} == {"429", "500", "sleep", "malformed", "unusable"}


def test_recovery_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 99.0
    assert FaultEvent("worker_kill", 1.0, 1.0).attempts == []
