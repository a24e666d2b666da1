"""The refund policy where it is applied, and executing refunds: the domain's policy with the ledger's history,
and the domain's refund write through the ledger, once per run and action.

`refund_check` is what the validator, deliver and reviewers' decisions call: the domain's `refund_problems`
over all of a run's refunds, with what the ledger says agents refunded before. `refunds_execute` (deliver) takes
the customer's and the orders' row locks first, decides again under them and writes every refund or none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from agents.ledger import REFUND, ledger_once, ledger_refund_history, ledger_results
from conversations.orders import amount_format, amount_parse, order_id_valid
from conversations.refunds import RefundAuthority, RefundProblem, refund_problems
from conversations.selectors import conversation_customer_id, order_currency
from conversations.services import order_refund, refund_orders_lock
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
    """
    if not actions:
        return RefundsExecuted([])
    customer_id = conversation_customer_id(conversation_id=conversation_id)
    keys = [refund_key(run_id, index) for index in range(len(actions))]
    with transaction.atomic():
        refund_orders_lock(customer_id=customer_id, order_ids=_order_ids(actions))
        done = ledger_results(keys)
        todo = [action for key, action in zip(keys, actions, strict=True) if key not in done]
        problems = refund_check(customer_id=customer_id, actions=todo, authority=authority)
        if problems:
            return RefundsRefused(problems)
        results = [
            done[key]
            if key in done
            else _refund_once(
                key=key, action=action, run_id=run_id, customer_id=customer_id, authority=authority, approver=approver
            )
            for key, action in zip(keys, actions, strict=True)
        ]
    return RefundsExecuted(results)


def _refund_once(
    *, key: str, action: Mapping[str, Any], run_id: str, customer_id: str, authority: RefundAuthority, approver: str
) -> dict[str, Any]:
    amount = amount_parse(action.get("amount"))
    if amount is None:  # the policy allowed it, so this cannot be; never guess an amount
        raise PermanentError(f"refund refused: amount {action.get('amount')!r} is not an amount.")
    order_id = str(action["order_id"])
    currency = str(action.get("currency") or "") or order_currency(order_id=order_id)

    def effect() -> dict[str, Any]:
        order = order_refund(order_id=order_id, customer_id=customer_id, amount=amount, currency=currency)
        return {
            "order_id": order.id,
            "amount": amount_format(amount),
            "currency": order.currency,
            "order_status": order.status,
        }

    result, _ = ledger_once(
        key=key,
        kind=REFUND,
        run_id=run_id,
        request=dict(action),
        effect=effect,
        columns={
            "order_id": order_id,
            "customer_id": customer_id,
            "amount": amount,
            "currency": currency or "",
            "approved_by": authority,
            "approver": approver[:320],
        },
    )
    return result
