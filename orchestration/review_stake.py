"""What a review item has at stake: the sum of its proposed refunds, stored on the item when it is opened
(`orchestration.runs.review_item_open`) so that the queue sorts by it in SQL on every database.

Why a column and not an annotation: the amounts are strings inside a JSON list (`proposed_action`); summing a
JSON array's elements needs a set-returning function in a subquery (`jsonb_array_elements` on PostgreSQL,
`json_each` on SQLite) that Django's expressions do not offer portably. An item's proposed actions never change
after it is opened (decisions are recorded in `final_action`), so the stored sum cannot go stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from conversations.orders import amount_parse

#: Room for the currencies of a mixed proposal, e.g. 'EUR+USD' (the column's length).
STAKE_CURRENCY_CHARS = 16


@dataclass(frozen=True)
class Stake:
    """The proposed refunds of one item together."""

    amount: Decimal | None
    """Their understood amounts summed at face value (None: no refund proposed)."""
    currency: str
    """Their currencies, e.g. 'EUR', or 'EUR+USD' for a mixed proposal ('' when none is named)."""
    unclear: int
    """How many of them have no understood amount (a person writes it): not in `amount`."""

    def text(self) -> str:
        """As the queue shows it, e.g. '249.00 EUR', '30.00 EUR + 1 unclear', '-' (no refund)."""
        if self.amount is None:
            return "-"
        shown = f"{self.amount:.2f} {self.currency}".strip()
        return f"{shown} + {self.unclear} unclear" if self.unclear else shown


def refunds_at_stake(actions: Iterable[Mapping[str, Any]] | None) -> Stake:
    """The stake of a list of proposed actions (refunds only; other actions, if any, are not money)."""
    refunds = [action for action in actions or [] if isinstance(action, Mapping) and action.get("type") == "refund"]
    if not refunds:
        return Stake(amount=None, currency="", unclear=0)
    amounts = [amount_parse(action.get("amount")) for action in refunds]
    currencies = sorted({str(action.get("currency") or "") for action in refunds} - {""})
    return Stake(
        amount=sum((amount for amount in amounts if amount is not None), Decimal("0")),
        currency="+".join(currencies)[:STAKE_CURRENCY_CHARS],
        unclear=sum(1 for amount in amounts if amount is None),
    )
