"""Executing a refund: the domain's refund write, through the ledger, once per run and action."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from agents.ledger import ledger_once
from conversations.selectors import conversation_customer_id
from conversations.services import order_refund


def refund_key(run_id: str, index: int) -> str:
    return f"refund:{run_id}:{index}"


def refund_execute(
    *, action: Mapping[str, Any], run_id: str, index: int, conversation_id: str, approved_by_person: bool
) -> tuple[dict[str, Any], bool]:
    """Refund once per (run, action index); returns (result, executed now).

    An agent's refund must be within the policy limit; a person's approval lifts
    only the limit, never the ownership and amount checks (`order_refund` checks
    the policy again under the order's row lock).
    """
    customer_id = conversation_customer_id(conversation_id=conversation_id)

    def effect() -> dict[str, Any]:
        order = order_refund(action=action, customer_id=customer_id, enforce_limit=not approved_by_person)
        return {
            "order_id": order.id,
            "amount": str(Decimal(str(action["amount"]))),
            "currency": order.currency,
            "order_status": order.status,
        }

    return ledger_once(key=refund_key(run_id, index), kind="refund", run_id=run_id, request=dict(action), effect=effect)
