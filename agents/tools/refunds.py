"""Executing a refund: through the ledger, once per run and action, re-checked under a row lock."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agents.ledger import ledger_once
from agents.tools.orders import customer_id_of, refund_problems
from conversations.models import Order
from project.errors import PermanentError


def refund_key(run_id: str, index: int) -> str:
    return f"refund:{run_id}:{index}"


def refund_execute(
    *, action: dict[str, Any], run_id: str, index: int, conversation_id: str, approved_by_person: bool
) -> tuple[dict[str, Any], bool]:
    """Refund once per (run, action index); returns (result, executed now).

    An agent's refund must be within the policy limit; a person's approval lifts
    only the limit, never the ownership and amount checks.
    """
    customer_id = customer_id_of(conversation_id)

    def effect() -> dict[str, Any]:
        order = Order.objects.select_for_update().get(id=action["order_id"])
        problems = refund_problems(customer_id=customer_id, action=action, enforce_limit=not approved_by_person)
        if problems:
            raise PermanentError("refund refused: " + " ".join(text for _, text in problems))
        order.refunded_amount += Decimal(str(action["amount"]))
        order.status = (
            Order.Status.REFUNDED if order.refunded_amount >= order.total else Order.Status.PARTIALLY_REFUNDED
        )
        order.save(update_fields=["refunded_amount", "status"])
        return {
            "order_id": order.id,
            "amount": str(Decimal(str(action["amount"]))),
            "currency": order.currency,
            "order_status": order.status,
        }

    return ledger_once(key=refund_key(run_id, index), kind="refund", run_id=run_id, request=action, effect=effect)
