"""The refund policy under random sequences of refund requests, through the real pipeline: real worker
subprocesses, PostgreSQL, the openai provider against the fake OpenAI-compatible server, scripted to answer each
run's tools prompt with its own refund calls (several per run, amounts in many formats and currencies, or none).

Each example is a customer with one or two orders (totals, statuses and currencies drawn), then a few batches
of runs started at once (several on the same order), each batch followed by reviewers' decisions on what went to
review (approve, edit, reject; a second reviewer confirms large approvals). After each example the invariants:
the automatic refunds per order stay within REFUND_AUTO_LIMIT and per customer within REFUND_AUTO_CUSTOMER_LIMIT,
no order is refunded above its total, every refund is exactly one ledger row (in the order's currency), every
refund beyond the agents' limits has a reviewer's decision, once reviewers' refunds of an order come to more than
REFUND_SECOND_APPROVAL_ABOVE every decision from there on was confirmed by a second reviewer, and no run fails.

`make test` runs a few derandomized examples; `make fuzz-money` runs FUZZ_MONEY_EXAMPLES (500) random ones.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from agents.models import LedgerEntry
from conversations.models import Order
from conversations.services import conversation_create, customer_create
from harness.fake_openai import SHIPPING_ANSWERS, refund_calls, scripted
from orchestration.models import DeadLetter, ReviewDecision, ReviewItem, Run
from orchestration.reviews import review_decide
from orchestration.runs import conversation_message_post
from project.errors import InvalidInput, PermissionDenied
from tests.conftest import llm_env, run_wait
from tests.money import make_staff, order_in

pytestmark = [pytest.mark.e2e]

EXAMPLES = int(os.environ.get("FUZZ_MONEY_EXAMPLES", "5"))
LIMITS = {
    "REFUND_AUTO_LIMIT": "100.00",
    "REFUND_AUTO_CUSTOMER_LIMIT": "150.00",
    "REFUND_AUTO_WINDOW_DAYS": "30",
    "REFUND_SECOND_APPROVAL_ABOVE": "200.00",
}
DESCRIPTION = "Aurora noise-cancelling headphones"
AMOUNTS = ["1", "20", "30.50", "45", "49.99", "50", "60", "70", "99", "100", "100.01", "150", "250"]
FORMATS = ["{}", "{} EUR", "EUR {}", "€{}", "{}€", "{} euros", "{}EUR", "USD {}", "${}", "{} dollars", "{} GBP"]
UNCLEAR = ["half", "half of it", "1.000,50 EUR", "1,000.50", "everything", "20%", "thirty euros"]
SAME = "the model's first amount"
DELIVERED_249 = ("249.00", "delivered", "EUR")
APPROVE = [("approve", None)]
SCRIPTS: dict[str, list[tuple[str, Any]]] = {}
_keys = itertools.count()
_order_numbers = itertools.count(60000)


def written(amount: str, fmt: str, comma: bool) -> str:
    text = fmt.format(amount)
    return text.replace(".", ",") if comma else text


amount_words = st.builds(written, st.sampled_from(AMOUNTS), st.sampled_from(FORMATS), st.booleans())
#: What the model passes as `amount`: mostly clean (null: everything; a JSON number; a bare string, both in the
#: order's currency), else written with a currency, or words that are not understood.
clean_amount = st.one_of(st.none(), st.sampled_from(AMOUNTS).map(json.loads), st.sampled_from(AMOUNTS))
tool_amount = st.one_of(clean_amount, clean_amount, amount_words, st.sampled_from(UNCLEAR))
order_spec = st.tuples(
    st.sampled_from(["45.00", "90.00", "249.00", "329.00", "329.00"]),
    st.sampled_from(["delivered", "delivered", "delivered", "shipped", "processing"]),
    st.sampled_from(["EUR", "EUR", "EUR", "USD"]),
)
messy_run = st.tuples(
    st.lists(st.tuples(st.integers(0, 1), tool_amount), min_size=1, max_size=3),  # refund calls: (order, amount)
    # What the customer's message says: mostly nothing (the model names the amounts), the model's own first
    # amount, another amount, or words that are not understood.
    st.one_of(st.none(), st.none(), st.none(), st.just(SAME), amount_words, st.sampled_from(UNCLEAR)),
)
#: A run the agents may well execute: amounts the policy understands, nothing in the message to disagree with.
small = st.sampled_from(["20", "30.50", "45", "49.99", "50", "60", "70"])
clean_run = st.tuples(
    st.lists(st.tuples(st.integers(0, 1), st.one_of(small.map(json.loads), small)), min_size=1, max_size=2),
    st.none(),
)
run_spec = st.one_of(messy_run, clean_run, clean_run)
decision_spec = st.one_of(
    st.just(("approve", None)), st.just(("reject", None)), st.tuples(st.just("edit"), st.sampled_from(AMOUNTS))
)
batch_spec = st.tuples(st.lists(run_spec, min_size=1, max_size=3), st.lists(decision_spec, min_size=1, max_size=3))
example_spec = st.tuples(st.lists(order_spec, min_size=1, max_size=2), st.lists(batch_spec, min_size=1, max_size=4))


def order_ids_in(text: str) -> list[str]:
    return sorted(set(re.findall(r"SB-\d{5}", text)))


def customer_words(text: str) -> str:
    """The customer's message in a prompt (its templates put it after "Message:" or "Customer message:")."""
    match = re.search(r"(?:^|\n)(?:Customer message|Message): ([^\n]*)", text)
    return match.group(1) if match else ""


def script_key() -> str:
    """A new key for a run's script, in letters (digits would be read as an amount in the customer's message)."""
    number, letters = next(_keys), ""
    while True:
        number, digit = divmod(number, 26)
        letters = chr(ord("a") + digit) + letters
        if not number:
            return letters


def tools_answer(text: str) -> dict[str, Any]:
    match = re.search(r"\[script ([a-z]+)\]", text)
    return refund_calls(SCRIPTS[match.group(1)] if match else [])


def responder_answer(text: str) -> dict[str, Any]:
    ids = order_ids_in(customer_words(text))
    return {"reply": f"Your order {ids[0]} is the {DESCRIPTION}." if ids else "", "sources": []}


def fake_answers() -> dict[str, Any]:
    return {
        **SHIPPING_ANSWERS,
        "triage": scripted(
            lambda text: {"intent": "refund", "confidence": 0.9, "order_ids": order_ids_in(customer_words(text))}
        ),
        "planner": {"slip": [["retrieval", "account"], "tools", "responder", "validator", "deliver"]},
        "tools": scripted(tools_answer),
        "responder": scripted(responder_answer),
        "validator": {"pass": True, "reasons": []},
    }


@pytest.fixture
def money_stack(fake, worker_factory, transactional_db, settings) -> dict[str, Any]:
    """A worker on the fake LLM with the fuzz limits (the test process decides reviews with the same ones)."""
    for name, value in LIMITS.items():
        setattr(settings, name, int(value) if name.endswith("_DAYS") else Decimal(value))
    fake.answers = fake_answers()
    worker_factory("fuzz", env=llm_env(fake, **LIMITS), concurrency=4)
    first, _ = make_staff("first-reviewer@example.com", reviewer=True)
    second, _ = make_staff("second-reviewer@example.com", reviewer=True)
    return {"reviewers": (first, second)}


def start(customer: Any, order_ids: list[str], calls: list[tuple[int, Any]], words: str | None) -> Run:
    key = script_key()
    SCRIPTS[key] = [(order_ids[index % len(order_ids)], amount) for index, amount in calls]
    named = sorted({order_id for order_id, _ in SCRIPTS[key]} or {order_ids[0]})
    if words == SAME:
        words = next((amount for _, amount in calls if isinstance(amount, str)), None)
    content = f"Please refund order {' and '.join(named)} [script {key}]" + (f", {words}." if words else ".")
    conversation = conversation_create(customer=customer)
    _, run, _ = conversation_message_post(
        customer=customer, conversation_id=conversation.id, content=content, trace_id=f"fuzz{key:z>28}"
    )
    return run


def decide(item: ReviewItem, decision: tuple[str, str | None], reviewers: tuple[Any, Any]) -> None:
    """A reviewer's decision; one the policy refuses is refused (that is the point), nothing else may fail."""
    kind, amount = decision
    arguments: dict[str, Any] = {"decision": kind}
    if kind == "edit":
        order_id = order_ids_in(json.dumps(item.proposed_action or [])) or order_ids_in(
            item.run.trigger_message.content
        )
        arguments |= {"reply": "A colleague refunded this.", "action": {"order_id": order_id[0], "amount": amount}}
    try:
        decided = review_decide(item_id=item.id, reviewer=reviewers[0], **arguments)
        if decided.pending_decision_id is not None:
            review_decide(item_id=item.id, reviewer=reviewers[1], decision="approve")
    except (InvalidInput, PermissionDenied):
        pass


def settle(runs: list[Run]) -> list[Run]:
    return [run_wait(run.id, timeout=90, statuses=("completed", "failed", "awaiting_review")) for run in runs]


def money_invariants(customer: Any, initial_status: dict[str, str], runs: list[Run]) -> None:
    refunds = LedgerEntry.objects.filter(kind="refund", customer_id=str(customer.id))
    automatic = refunds.filter(approved_by="automatic")
    assert (automatic.aggregate(total=Sum("amount"))["total"] or 0) <= Decimal(LIMITS["REFUND_AUTO_CUSTOMER_LIMIT"])
    for order in Order.objects.filter(customer=customer):
        rows = refunds.filter(order_id=order.id)
        assert (automatic.filter(order_id=order.id).aggregate(t=Sum("amount"))["t"] or 0) <= Decimal("100.00")
        assert order.refunded_amount <= order.total
        assert order.refunded_amount == (rows.aggregate(total=Sum("amount"))["total"] or 0)
        assert set(rows.values_list("currency", flat=True)) <= {order.currency}
        if initial_status[order.id] != "delivered":
            assert not automatic.filter(order_id=order.id).exists(), "an order not yet delivered, refunded by agents"
    for run in runs:
        assert run.status != "failed", (run.reason, run.reason_detail)
        assert not DeadLetter.objects.filter(run=run).exists()
        rows = list(refunds.filter(run_id=str(run.id)))
        event(f"run {run.status} ({run.reason or 'no reason'}), refunds {sorted({r.approved_by for r in rows})}")
        executed = [
            action
            for step in run.steps.filter(agent="deliver", status="completed")  # a refused deliver, then a decided one
            for action in step.output["envelope"]["payload"].get("executed_actions", [])
        ]
        assert len(rows) == len(executed), "every refund is exactly one ledger row"
        decisions = ReviewDecision.objects.filter(
            item__run=run, reviewer__isnull=False, decision__in=["approve", "edit"]
        )
        for row in rows:
            if row.approved_by == "reviewer":
                assert decisions.filter(needs_second_approval=False).exists(), "a reviewer's refund without a decision"
            else:
                assert row.approved_by == "automatic" and not decisions.exists()
    for order in Order.objects.filter(customer=customer):
        approved = Decimal("0")
        for decision, amount in reviewer_refunds_in_decision_order(refunds.filter(order_id=order.id)):
            approved += amount
            if approved > Decimal(LIMITS["REFUND_SECOND_APPROVAL_ABOVE"]):
                assert decision.confirms_id is not None, (
                    "reviewers' refunds of an order above the threshold, one reviewer"
                )


def reviewer_refunds_in_decision_order(rows: Any) -> list[tuple[ReviewDecision, Decimal]]:
    """An order's reviewer-approved refunds, one total per run, with the decision that executed them (a single
    approval, or the second that confirmed a first), in the order those decisions were made."""
    per_run = rows.filter(approved_by="reviewer").values("run_id").annotate(total=Sum("amount"))
    decided = [
        (
            ReviewDecision.objects.filter(
                item__run_id=row["run_id"],
                reviewer__isnull=False,
                decision__in=["approve", "edit"],
                needs_second_approval=False,
            ).latest("id"),
            row["total"],
        )
        for row in per_run
    ]
    return sorted(decided, key=lambda pair: pair[0].id)


@pytest.mark.timeout(300 + 30 * EXAMPLES)  # make fuzz-money runs hundreds of examples in this one test
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="FUZZ_MONEY_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(example=example_spec)
# The findings of issue 12, always among the examples: 99, 99 and 51 on a 249 order in three messages; the same
# refund three times at once on one order; refund(100) twice in one run, and two orders of one customer at once;
# a processing order, approved by a reviewer.
@example(
    example=(
        [DELIVERED_249],
        [([([(0, "99")], None)], APPROVE), ([([(0, "99")], None)], APPROVE), ([([(0, "51")], None)], APPROVE)],
    )
)
@example(
    example=([("329.00", "delivered", "EUR")], [([([(0, 60)], None)] * 3, APPROVE), ([([(0, "45")], None)], APPROVE)])
)
@example(
    example=(
        [DELIVERED_249, ("329.00", "delivered", "USD")],
        [([([(0, "100"), (0, "100")], None), ([(1, 80)], None), ([(1, "80")], None)], [("edit", "150")])],
    )
)
@example(example=([("45.00", "processing", "EUR")], [([([(0, None)], None)], APPROVE)]))
def test_refunds_in_any_sequence_stay_within_the_policy(money_stack: dict[str, Any], example: Any) -> None:
    orders, batches = example
    customer = customer_create(email=f"fuzz-{script_key()}@example.com", name="Fuzz")
    order_ids, initial_status = [], {}
    for total, status, currency in orders:
        order = order_in(customer, f"SB-{next(_order_numbers)}", total, currency=currency, status=status)
        order_ids.append(order.id)
        initial_status[order.id] = status
    runs: list[Run] = []
    for run_specs, decisions in batches:
        batch = settle([start(customer, order_ids, calls, words) for calls, words in run_specs])
        waiting = ReviewItem.objects.filter(run__in=batch, status="open").select_related("run__trigger_message")
        for item, decision in zip(waiting, itertools.cycle(decisions), strict=False):
            decide(item, decision, money_stack["reviewers"])
        runs += settle(batch)
    money_invariants(customer, initial_status, runs)
