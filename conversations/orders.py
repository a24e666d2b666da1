"""Pure rules about orders: what an order id looks like, and money as `Decimal`.

No database here; the selectors and services use these, and so do the agents
(triage, grounding, the validator and the tools agent), so that there is one
order-id pattern and one way to read and write an amount.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_ORDER_ID = r"SB-\d{5}"
#: "Is this an order id?": `ORDER_ID.match(value)` (upper case, nothing around it).
ORDER_ID = re.compile(rf"^{_ORDER_ID}$")
#: Order ids in a text, any case, as whole words.
ORDER_IDS_IN_TEXT = re.compile(rf"\b{_ORDER_ID}\b", re.IGNORECASE)

#: Amounts carry two decimal places (cents).
CENTS = Decimal("0.01")


def order_ids_in(text: str) -> list[str]:
    """The order ids a text mentions, upper-cased, each once, sorted."""
    return sorted({match.upper() for match in ORDER_IDS_IN_TEXT.findall(text)})


def amount_parse(value: object) -> Decimal | None:
    """An amount from the outside world (a model's or a reviewer's JSON, a string or a number):
    a finite Decimal with at most two decimal places, or None. The sign is not checked here."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite():
        return None
    exponent = amount.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -2:
        return None
    return amount


def amount_format(amount: Decimal) -> str:
    """An amount as payloads carry it: a string with two decimal places, e.g. '24.50'."""
    return f"{amount:.2f}"
