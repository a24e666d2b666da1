"""Each agent's own behaviour, called directly with an envelope (offline LLM provider)."""

from __future__ import annotations

import pytest

from agents.base import Outcome
from agents.grounding import reply_check
from agents.registry import agent_get, agents_all
from agents.triage import triage_offline
from project.errors import PermanentError
from tests.test_envelope import make_envelope


def test_registry_names_every_agent_once() -> None:
    from django.utils.module_loading import import_string

    from agents.registry import AGENT_CLASSES

    built_in = {"triage", "planner", "retrieval", "account", "tools", "responder", "validator", "deliver", "mcp"}
    assert {import_string(path).name for path in AGENT_CLASSES} == built_in
    assert built_in <= set(agents_all())  # the tests add their fault agents
    assert agent_get("triage").queue == "llm"
    with pytest.raises(KeyError, match="No agent named 'nope'"):
        agent_get("nope")


@pytest.mark.parametrize(
    ("message", "intent"),
    [
        ("How long does shipping take?", "shipping"),
        ("I want to return my headphones", "returns"),
        ("When do I get my money back?", "refund"),
        ("Is my tent covered by the warranty?", "warranty"),
        ("Do you accept PayPal?", "payments"),
        ("I forgot my password", "account"),
        ("Where is my order SB-12345?", "order_status"),
        ("Hello there", "other"),
    ],
)
def test_triage_intents(message: str, intent: str) -> None:
    assert triage_offline({"message": message})["intent"] == intent


def test_triage_extracts_order_ids_and_records_usage() -> None:
    result = agent_get("triage").handle(make_envelope(payload={"message": "Where is sb-12345?"}))
    assert result.payload["order_ids"] == ["SB-12345"]
    assert result.usage.input_tokens > 0 and result.usage.prompt_version == "triage@2"


def test_planner_writes_a_slip_with_a_parallel_lookup() -> None:
    result = agent_get("planner").handle(make_envelope(payload={"message": "x", "intent": "shipping"}))
    assert result.slip == [["retrieval", "account"], "responder", "validator", "deliver"]


def test_planner_finds_plans_with_unknown_agents_or_a_wrong_end_unusable() -> None:
    from agents.planner import plan_problems

    [unknown] = plan_problems(["rm_rf", "responder", "validator", "deliver"], intent="shipping", order_ids=[])
    assert "may not be planned: ['rm_rf']" in unknown
    [end] = plan_problems(["responder", "deliver"], intent="shipping", order_ids=[])
    assert "must end with responder, validator, deliver" in end


@pytest.mark.django_db
def test_retrieval_finds_the_shipping_document() -> None:
    result = agent_get("retrieval").handle(make_envelope(payload={"message": "How long does shipping take?"}))
    passages = result.payload["passages"]
    assert passages[0]["doc_id"] == "shipping"
    assert passages[0]["section"] == "Delivery times within Germany and the EU"


@pytest.mark.django_db
def test_retrieval_returns_nothing_for_unrelated_text() -> None:
    result = agent_get("retrieval").handle(make_envelope(payload={"message": "zzz qqq"}))
    assert result.payload["passages"] == []


def shipping_payload() -> dict:
    message = "How long does shipping take?"
    passages = agent_get("retrieval").handle(make_envelope(payload={"message": message})).payload["passages"]
    return {"message": message, "passages": passages, "account": {"orders": []}, "order_ids": []}


@pytest.mark.django_db
def test_responder_answers_from_the_passages() -> None:
    result = agent_get("responder").handle(make_envelope(payload=shipping_payload()))
    draft = result.payload["draft"]
    assert "2 to 4 business days" in draft
    assert draft.endswith("Source: Shipping times and costs")
    assert reply_check(draft, shipping_payload()).reasons == []


def test_responder_with_nothing_to_say_hands_the_run_to_a_person() -> None:
    payload = {"message": "zzz", "passages": [], "account": {}, "order_ids": []}
    result = agent_get("responder").handle(make_envelope(payload=payload))
    assert result.payload["draft"] == ""
    assert result.outcome == Outcome.ESCALATE and result.reason == "reply_unusable"
    assert result.payload["llm_fallbacks"]["responder"]["fault"] == "unusable"


@pytest.fixture
def conversation_id(db) -> str:
    from conversations.services import conversation_create, customer_create

    return str(conversation_create(customer=customer_create(email="v@example.com")).id)


def test_validator_passes_a_grounded_reply(conversation_id) -> None:
    payload = shipping_payload() | {"draft": "Standard shipping takes 2 to 4 business days within Germany."}
    result = agent_get("validator").handle(make_envelope(conversation_id=conversation_id, payload=payload))
    assert result.outcome == Outcome.CONTINUE
    assert result.payload["verdict"] == {"pass": True, "reasons": []}


@pytest.mark.parametrize(
    ("draft", "reason"),
    [
        ("", "empty_reply"),
        ("   \n\nSource: Shipping times and costs", "empty_reply"),
        ("Standard shipping takes 9 business days within Germany.", "unsupported_facts: 9"),
        ("Your order SB-99999 was refunded.", "unsupported_facts: SB-99999"),
        ("We will send you a free unicorn with every purchase.", "ungrounded"),
        ("Standard shipping takes 2 to 4 business days.\n\nSource: Secret memo", "unknown_source"),
        ("Goodwill refunds up to 20 EUR may be granted without a return.", "internal_note"),
    ],
)
def test_validator_rejects_empty_or_ungrounded_replies(conversation_id, draft: str, reason: str) -> None:
    payload = shipping_payload() | {"draft": draft}
    result = agent_get("validator").handle(make_envelope(conversation_id=conversation_id, payload=payload))
    assert result.outcome == Outcome.ESCALATE
    assert result.reason == "validation_failed"
    assert any(r.startswith(reason) for r in result.payload["verdict"]["reasons"]), result.payload["verdict"]


@pytest.mark.django_db
def test_account_sees_only_the_customers_own_orders(django_user_model) -> None:
    from conversations.services import conversation_create, customer_create, order_create_demo

    mine = customer_create(email="mine@example.com")
    other = customer_create(email="other@example.com")
    my_orders = order_create_demo(customer=mine, count=2)
    order_create_demo(customer=other, count=2)
    conversation = conversation_create(customer=mine)
    envelope = make_envelope(conversation_id=str(conversation.id))
    facts = agent_get("account").handle(envelope).payload["account"]
    assert sorted(o["id"] for o in facts["orders"]) == sorted(o.id for o in my_orders)


@pytest.mark.django_db
def test_deliver_stores_one_reply_however_often_it_runs() -> None:
    from conversations.models import Message
    from conversations.services import conversation_create, customer_create

    conversation = conversation_create(customer=customer_create(email="c@example.com"))
    envelope = make_envelope(
        conversation_id=str(conversation.id),
        payload={"draft": "Hello.", "verdict": {"pass": True, "reasons": []}},
    )
    first = agent_get("deliver").handle(envelope)
    second = agent_get("deliver").handle(envelope)
    assert first.outcome == Outcome.COMPLETE
    assert first.payload == second.payload
    assert Message.objects.filter(conversation=conversation, role="assistant").count() == 1


def test_deliver_refuses_an_unvalidated_draft() -> None:
    envelope = make_envelope(payload={"draft": "Hello.", "verdict": {"pass": False, "reasons": ["x"]}})
    with pytest.raises(PermanentError):
        agent_get("deliver").handle(envelope)
