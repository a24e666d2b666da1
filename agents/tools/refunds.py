"""The refund policy where it is applied, and executing refunds: the domain's policy with the ledger's history,
and the domain's refund write through the ledger, once per run and action.

`refund_check` is what the validator, deliver and reviewers' decisions call: the domain's `refund_problems`
over all of a run's refunds, with what the ledger says agents refunded before. `refunds_execute` (deliver) takes
the customer's and the orders' row locks first, decides again under them and writes every refund or none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction

from agents.ledger import (
    REFUND,
    ledger_once,
    ledger_refund_history,
    ledger_request,
    ledger_results,
    ledger_send,
    ledger_statuses,
)
from agents.models import LedgerEntry
from conversations.commerce import Commerce, CommerceUnavailable, DatabaseCommerce, RefundRefused
from conversations.orders import amount_parse, order_id_valid
from conversations.refunds import RefundAuthority, RefundProblem, refund_problems
from conversations.selectors import conversation_customer_id, order_currency
from conversations.services import refund_orders_lock
from conversations.shop import commerce_backend
from project.errors import PermanentError


def refund_key(run_id: str, index: int) -> str:
    return f"refund:{run_id}:{index}"


def refund_check(
    *, customer_id: str, actions: Sequence[Mapping[str, Any]], authority: RefundAuthority
) -> list[RefundProblem]:
    """The refund policy over all these actions together, with the customer's automatic refunds so far."""
    if not actions:
        return []
    history = ledger_refund_history(customer_id=customer_id, order_ids=_order_ids(actions))
    return refund_problems(customer_id=customer_id, actions=actions, history=history, authority=authority)


def _order_ids(actions: Sequence[Mapping[str, Any]]) -> list[str]:
    """The actions' order ids that are shaped like order ids (the others are refused by the policy, unqueried)."""
    return [order_id for action in actions if order_id_valid(order_id := str(action.get("order_id", "")))]


@dataclass(frozen=True)
class RefundsExecuted:
    """Every refund was executed (now or by an earlier delivery of the same run)."""

    results: list[dict[str, Any]]
    """One ledger result per action, in order: order_id, amount, currency, order_status."""


@dataclass(frozen=True)
class RefundsRefused:
    """The policy refused the refunds under the locks: nothing was executed, a person decides."""

    problems: list[RefundProblem]
    """Why."""


def refunds_execute(
    *,
    actions: Sequence[Mapping[str, Any]],
    run_id: str,
    conversation_id: str,
    authority: RefundAuthority,
    approver: str = "",
) -> RefundsExecuted | RefundsRefused:
    """Execute a run's refunds, all or none, each once per (run, action index) through the ledger.

    Under the customer's and the orders' row locks (`refund_orders_lock`), the policy decides again on the sum of
    the refunds not yet executed, with the history the ledger has now: two runs on one order at once are decided
    one after the other. `authority` is who approved them (a reviewer lifts the limits, never the rest);
    `approver` their username(s), recorded on each ledger row.

    With the built-in database the refunds are written in that transaction with their ledger rows. With a shop's
    API (not transactional) they are recorded there as requested (PENDING) and committed; then each is sent with its
    key as Idempotency-Key and its outcome recorded (`_refund_send`). A try that dies or times out in between
    leaves the row pending: the next try sends the same key, never a new one.
    """
    if not actions:
        return RefundsExecuted([])
    shop = commerce_backend()
    customer_id = conversation_customer_id(conversation_id=conversation_id)
    keys = [refund_key(run_id, index) for index in range(len(actions))]
    with transaction.atomic():
        refund_orders_lock(customer_id=customer_id, order_ids=_order_ids(actions))
        recorded = ledger_statuses(keys)
        done = ledger_results(keys)
        todo = [action for key, action in zip(keys, actions, strict=True) if key not in recorded]
        problems = refund_check(customer_id=customer_id, actions=todo, authority=authority)
        if problems:
            return RefundsRefused(problems)
        columns = {"customer_id": customer_id, "approved_by": authority, "approver": approver[:320]}
        if shop.transactional:
            results = [
                done[key] if key in done else _refund_once(key=key, action=action, run_id=run_id, columns=columns)
                for key, action in zip(keys, actions, strict=True)
            ]
            return RefundsExecuted(results)
        for key, action in zip(keys, actions, strict=True):
            if key not in recorded:
                order_id, amount, currency = _refund_terms(action, shop, customer_id)
                ledger_request(
                    key=key,
                    kind=REFUND,
                    run_id=run_id,
                    request=dict(action),
                    columns={**columns, "order_id": order_id, "amount": amount, "currency": currency},
                )
    return RefundsExecuted([_refund_send(shop, key) for key in keys])


def _refund_terms(action: Mapping[str, Any], shop: Commerce, customer_id: str) -> tuple[str, Decimal, str]:
    """The order, amount and currency of a refund the policy allowed (the order's currency when none was given)."""
    amount = amount_parse(action.get("amount"))
    if amount is None:  # the policy allowed it, so this cannot be; never guess an amount
        raise PermanentError(f"refund refused: amount {action.get('amount')!r} is not an amount.")
    order_id = str(action["order_id"])
    currency = str(action.get("currency") or "")
    if not currency:
        order = shop.orders_get(customer_id=customer_id, order_ids=[order_id]).get(order_id)
        currency = order.currency if order else ""
    return order_id, amount, currency


def _refund_once(*, key: str, action: Mapping[str, Any], run_id: str, columns: dict[str, Any]) -> dict[str, Any]:
    """A refund in the built-in database: the write and its ledger row in one transaction."""
    amount = amount_parse(action.get("amount"))
    if amount is None:  # the policy allowed it, so this cannot be; never guess an amount
        raise PermanentError(f"refund refused: amount {action.get('amount')!r} is not an amount.")
    order_id = str(action["order_id"])
    currency = str(action.get("currency") or "") or order_currency(order_id=order_id)
    customer_id = columns["customer_id"]

    def effect() -> dict[str, Any]:
        outcome = DatabaseCommerce().refund(
            key=key, customer_id=customer_id, order_id=order_id, amount=amount, currency=currency or ""
        )
        return outcome.as_result()

    result, _ = ledger_once(
        key=key,
        kind=REFUND,
        run_id=run_id,
        request=dict(action),
        effect=effect,
        columns={**columns, "order_id": order_id, "amount": amount, "currency": currency or ""},
    )
    return result


def _refund_send(shop: Commerce, key: str) -> dict[str, Any]:
    """Send a requested refund to the shop with its key as Idempotency-Key and record the outcome (`ledger_send`):
    2xx done; a refusal (4xx) failed, RefundRefused; no answer (5xx, timeout) still pending with the evidence,
    CommerceUnavailable, so the step retries with the same key and, when the retries run out, deliver hands the run
    to a person (`Deliver.review_when_exhausted`)."""

    def send(entry: LedgerEntry) -> dict[str, Any]:
        assert entry.amount is not None  # a refund row always has one (ledger_request)
        outcome = shop.refund(
            key=entry.key,
            customer_id=entry.customer_id,
            order_id=entry.order_id,
            amount=entry.amount,
            currency=entry.currency,
        )
        return outcome.as_result()

    return ledger_send(
        key=key,
        send=send,
        describe=lambda entry: f"refund {entry.key} of {entry.amount} {entry.currency} on order {entry.order_id}",
        unavailable=CommerceUnavailable,
        refused=RefundRefused,
    )
