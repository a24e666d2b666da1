"""What makes a model's answer malformed or unusable, and the fallback that stands in for it: the schema checker,
each prompt's schema and check, and each agent's fallback — called directly, with a stub provider."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from agents import llm
from agents.base import Outcome, Usage
from agents.llm.base import AnswerProblems, Fault, LLMRejected, Prompt, answer_problems
from agents.llm.errors import LLMMalformedOutput
from agents.llm.openai_provider import parse_answer
from agents.llm.schema import schema_errors
from agents.planner import DEFAULT_SLIP, TOOLS_SLIP, plan_problems, planner_offline
from agents.planner import PROMPT as PLANNER
from agents.registry import agent_get
from agents.tools.agent import PROMPT as TOOLS
from agents.tools.agent import fallback_calls, usable_calls
from agents.triage import INTENTS
from agents.triage import PROMPT as TRIAGE
from agents.validator import PROMPT as VALIDATOR
from conversations.orders import ORDER_ID_SCHEMA_PATTERN
from tests.test_agents import shipping_payload
from tests.test_envelope import make_envelope

# --- The schema checker -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "schema", "error"),
    [
        ("SB-1234", {"type": "string", "pattern": r"^SB-\d{5}$"}, r"$ must match ^SB-\d{5}$, got 'SB-1234'."),
        ("", {"type": "string", "minLength": 1}, "$ must have at least 1 characters."),
        ("abcd", {"type": "string", "maxLength": 3}, "$ must have at most 3 characters."),
        (1.5, {"type": "number", "minimum": 0, "maximum": 1}, "$ must be at most 1, got 1.5."),
        (-1, {"type": "integer", "minimum": 0}, "$ must be at least 0, got -1."),
        (True, {"type": "number"}, "$ must be number, got bool."),
        ([1], {"type": "array", "minItems": 2}, "$ must have at least 2 items, got 1."),
        ([1, 2, 3], {"type": "array", "maxItems": 2}, "$ must have at most 2 items, got 3."),
        (["a", "a"], {"type": "array", "uniqueItems": True}, "$ must not repeat an item."),
        (
            {"a": 1, "b": 2},
            {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
            "$.b is not allowed.",
        ),
        ({}, {"type": ["string", "null"]}, "$ must be string or null, got dict."),
        ("x" * 100, {"enum": ["a"]}, "$ must be one of ['a'], got '" + "x" * 56 + "...."),
    ],
)
def test_the_schema_checker_refuses_with_a_sentence(value: Any, schema: dict, error: str) -> None:
    assert schema_errors(value, schema) == [error]


@pytest.mark.parametrize(
    ("value", "schema"),
    [
        (None, {"type": ["string", "number", "null"]}),
        (12.5, {"type": ["string", "number", "null"]}),
        ("SB-12345", {"type": "string", "pattern": ORDER_ID_SCHEMA_PATTERN}),
        (0, {"type": "number", "minimum": 0, "maximum": 1}),
        (["a", "b"], {"type": "array", "minItems": 2, "maxItems": 2, "uniqueItems": True}),
        ({"a": 1}, {"type": "object", "properties": {"a": {}}, "additionalProperties": False}),
    ],
)
def test_the_schema_checker_accepts_what_fits(value: Any, schema: dict) -> None:
    assert schema_errors(value, schema) == []


def test_any_of_reports_the_errors_of_the_option_of_the_values_type() -> None:
    items = PLANNER.schema["properties"]["slip"]["items"]  # type: ignore[index]
    assert schema_errors("rm_rf", items, "$.slip[1]") == [
        "$.slip[1] must be one of ['retrieval', 'account', 'tools', 'responder', 'validator', 'deliver'], got 'rm_rf'."
    ]
    assert schema_errors(["retrieval", "tools"], items) == [
        "$[1] must be one of ['retrieval', 'account'], got 'tools'."
    ]
    assert schema_errors(3, items) == ["$ matches none of the allowed shapes."]


# --- What each prompt constrains --------------------------------------------------------------------------------


def test_the_schemas_constrain_intents_agents_order_ids_and_tool_arguments() -> None:
    triage = TRIAGE.schema["properties"]  # type: ignore[index]
    assert triage["intent"]["enum"] == list(INTENTS)
    assert triage["order_ids"]["items"]["pattern"] == ORDER_ID_SCHEMA_PATTERN  # the one pattern, not a copy
    assert (triage["confidence"]["minimum"], triage["confidence"]["maximum"]) == (0, 1)
    tools = {tool["name"]: tool["parameters"]["properties"] for tool in TOOLS.tools or []}
    assert (
        tools["order_lookup"]["order_id"]["pattern"]
        == tools["refund"]["order_id"]["pattern"]
        == ORDER_ID_SCHEMA_PATTERN
    )
    assert tools["refund"]["amount"]["type"] == ["string", "number", "null"]
    assert tools["escalate_to_human"]["reason"]["minLength"] == 1


@pytest.mark.parametrize("intent", INTENTS)
@pytest.mark.parametrize("order_ids", [[], ["SB-12345"]])
def test_the_default_plans_are_usable_plans(intent: str, order_ids: list[str]) -> None:
    variables = {"intent": intent, "order_ids": order_ids}
    assert answer_problems(PLANNER, planner_offline(variables), variables) is None


@pytest.mark.parametrize(
    ("slip", "problem"),
    [
        ([["retrieval", "account"]], "at least 3 items"),
        ([["retrieval", "account"], ["retrieval", "account"], "responder", "validator", "deliver"], "no single agent"),
        (["retrieval", "retrieval", "responder", "validator", "deliver"], "more than once"),
        (["retrieval", "responder", "deliver", "validator"], "must end with responder, validator, deliver"),
        (["retrieval", "validator", "deliver", "responder"], "must end with responder"),
        ([["retrieval", "tools"], "responder", "validator", "deliver"], "got 'tools'"),
    ],
)
def test_unusable_plans(slip: list, problem: str) -> None:
    variables = {"intent": "shipping", "order_ids": []}
    found = answer_problems(PLANNER, {"slip": slip}, variables)
    assert found is not None and problem in found.text, found


def test_a_plan_without_tools_is_unusable_when_the_customer_names_an_order() -> None:
    plan = [["retrieval", "account"], "responder", "validator", "deliver"]
    assert plan_problems(plan, intent="shipping", order_ids=[]) == []
    assert "must use tools" in plan_problems(plan, intent="shipping", order_ids=["SB-12345"])[0]
    assert "must use tools" in plan_problems(plan, intent="human", order_ids=[])[0]


def test_triage_may_list_only_order_ids_the_message_names() -> None:
    variables = {"message": "Where is sb-12345?", "intents": ""}
    good = {"intent": "order_status", "confidence": 0.8, "order_ids": ["SB-12345"]}
    assert answer_problems(TRIAGE, good, variables) is None
    invented = answer_problems(TRIAGE, good | {"order_ids": ["SB-12345", "SB-99999"]}, variables)
    assert invented is not None and invented.fault == Fault.UNUSABLE and "SB-99999" in invented.text
    shape = answer_problems(TRIAGE, good | {"order_ids": ["12345"]}, variables)
    assert shape is not None and shape.fault == Fault.MALFORMED


def test_a_verdict_must_say_why_it_fails_and_nothing_when_it_passes() -> None:
    for verdict in ({"pass": False, "reasons": []}, {"pass": True, "reasons": ["looks odd"]}):
        found = answer_problems(VALIDATOR, verdict, {})
        assert found is not None and found.fault == Fault.UNUSABLE
    assert answer_problems(VALIDATOR, {"pass": False, "reasons": ["no source"]}, {}) is None


# --- Tool calls ---------------------------------------------------------------------------------------------------

TOOL_VARIABLES = {"intent": "refund", "order_ids": ["SB-12345"], "message": "Please refund SB-12345."}


def test_unusable_tool_calls_are_dropped_and_the_named_orders_looked_up() -> None:
    answer = {
        "calls": [
            {"tool": "cancel_order", "arguments": {"order_id": "SB-12345"}},  # no such tool
            {"tool": "refund", "arguments": {"order_id": "SB-99999", "amount": "10"}},  # not the customer's words
            {"tool": "refund", "arguments": {"order_id": "SB-12345", "amount": ["10"]}},  # not an amount type
            {"tool": "order_lookup", "arguments": "{not json"},
            {"tool": "refund", "arguments": {"order_id": "SB-12345", "amount": 10}},
        ]
    }
    found = answer_problems(TOOLS, answer, TOOL_VARIABLES)
    assert found is not None and found.fault == Fault.MALFORMED
    usable = usable_calls(answer, TOOL_VARIABLES)
    assert usable == [answer["calls"][-1]]
    assert fallback_calls(usable, TOOL_VARIABLES) == [
        {"tool": "order_lookup", "arguments": {"order_id": "SB-12345"}},
        answer["calls"][-1],
    ]
    assert usable_calls(None, TOOL_VARIABLES) == []
    person = TOOL_VARIABLES | {"intent": "human", "order_ids": []}
    assert [call["tool"] for call in fallback_calls([], person)] == ["escalate_to_human"]


def test_tool_calls_with_unreadable_arguments_keep_the_other_calls() -> None:
    def call(name: str, arguments: str) -> Any:
        return SimpleNamespace(function=SimpleNamespace(name=name, arguments=arguments))

    message = SimpleNamespace(
        content=None, tool_calls=[call("order_lookup", '{"order_id": "SB-12345"}'), call("refund", "{oops")]
    )
    text, data, problems = parse_answer(TOOLS, SimpleNamespace(choices=[SimpleNamespace(message=message)]), {})
    assert problems is not None and problems.fault == Fault.MALFORMED and "refund are not JSON" in problems.text
    assert usable_calls(data, TOOL_VARIABLES) == [{"tool": "order_lookup", "arguments": {"order_id": "SB-12345"}}]
    assert "refund({oops)" in text


# --- Fallbacks ----------------------------------------------------------------------------------------------------


def rejected(prompt: Prompt, data: Any, fault: Fault = Fault.UNUSABLE) -> LLMRejected:
    return LLMRejected(
        label=prompt.label,
        answers=("first", "second"),
        data=data,
        problems=AnswerProblems(fault, ("it is wrong.",)),
        usage=Usage(input_tokens=7, output_tokens=3, model="stub", prompt_version=prompt.label),
    )


@pytest.fixture
def answer_with(monkeypatch: pytest.MonkeyPatch):
    """Make every completion return `answer` (an LLMRejected, say)."""

    def set_answer(answer: Any) -> None:
        provider = SimpleNamespace(
            name="stub", deterministic=False, complete=lambda prompt, variables, *, agent: answer
        )
        monkeypatch.setattr(llm, "provider_get", lambda: provider)

    return set_answer


@pytest.mark.parametrize("fault", list(Fault))
def test_the_planner_falls_back_to_the_default_plan_and_says_so(answer_with, caplog, fault: Fault) -> None:
    answer_with(rejected(PLANNER, {"slip": ["rm_rf"]}, fault))
    payload = {"message": "Where is SB-12345?", "intent": "order_status", "order_ids": ["SB-12345"]}
    with caplog.at_level(logging.WARNING, logger="agents.llm.agent"):
        result = agent_get("planner").handle(make_envelope(payload=payload))
    assert result.slip == TOOLS_SLIP and result.usage.tokens == 10
    note = result.payload["llm_fallbacks"]["planner"]
    assert note == {"fault": fault.value, "problems": ["it is wrong."], "fallback": "the default plan for the intent"}
    assert (
        "planner used its fallback (the default plan for the intent)" in caplog.text and "it is wrong." in caplog.text
    )


def test_triage_falls_back_to_the_keyword_triage_with_the_messages_order_ids(answer_with) -> None:
    answer_with(rejected(TRIAGE, None, Fault.MALFORMED))
    result = agent_get("triage").handle(make_envelope(payload={"message": "Where is my parcel sb-12345?"}))
    assert result.payload["intent"] == "shipping" and result.payload["order_ids"] == ["SB-12345"]
    assert result.payload["llm_fallbacks"]["triage"]["fault"] == "malformed"


def test_a_responder_answer_malformed_after_asking_afresh_fails_the_try(answer_with) -> None:
    answer_with(rejected(agent_get("responder").prompt, None, Fault.MALFORMED))  # type: ignore[attr-defined]
    with pytest.raises(LLMMalformedOutput, match=r"malformed output twice .* First answer: 'first'"):
        agent_get("responder").handle(make_envelope(payload={"message": "Hi", "passages": []}))


def test_the_default_plans_are_the_offline_planners() -> None:
    assert planner_offline({"intent": "shipping", "order_ids": []})["slip"] == DEFAULT_SLIP


@pytest.mark.django_db
def test_an_unusable_verdict_never_approves_anything(answer_with) -> None:
    from conversations.services import conversation_create, customer_create

    conversation_id = str(conversation_create(customer=customer_create(email="v@example.com")).id)
    answer_with(rejected(VALIDATOR, {"pass": False, "reasons": []}))
    draft = "Standard shipping takes 2 to 4 business days within Germany."
    envelope = make_envelope(conversation_id=conversation_id, payload=shipping_payload() | {"draft": draft})
    result = agent_get("validator").handle(envelope)
    assert result.outcome == Outcome.ESCALATE and result.reason == "validation_failed"
    assert "approved_actions" not in result.payload
    [reason] = result.payload["verdict"]["reasons"]
    assert reason.startswith("llm_unusable: the model gave no usable verdict (it is wrong.)")
    assert result.payload["llm_fallbacks"]["validator"]["fallback"] == "fail closed: the run goes to review"
