"""Pure rules about orders: what an order id looks like, and money as `Decimal`.

No database here; the selectors and services use these, and so do the agents
(triage, grounding, the validator and the tools agent), so that there is one
order-id pattern and one way to read and write an amount.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TypeGuard

from django.conf import settings

#: The shop's order-id shape (settings COMMERCE_ORDER_ID_PATTERN, the demo's `SB-[0-9]{5}`), read once at start-up:
#: the patterns below, and the agents' patterns built on them, are compiled at import.
_ORDER_ID = (
    f"(?:{settings.COMMERCE_ORDER_ID_PATTERN})"  # an alternation stays one unit between the anchors around it
    if "|" in settings.COMMERCE_ORDER_ID_PATTERN
    else settings.COMMERCE_ORDER_ID_PATTERN
)
#: "Is this an order id?": `ORDER_ID.match(value)` (the shape exactly, nothing around it, not even a trailing
#: newline). Check it before an outside string reaches a query.
ORDER_ID = re.compile(rf"^{_ORDER_ID}\Z", re.ASCII)
#: The same shape as a JSON Schema `pattern` (ECMA-262, for the model's structured outputs, where `\Z` does not
#: exist and `$` ends the value).
ORDER_ID_SCHEMA_PATTERN = rf"^{_ORDER_ID}$"
#: Order ids in a text, as whole words: in any case when ids are upper-case (COMMERCE_ORDER_ID_UPPERCASE), else
#: exactly.
ORDER_IDS_IN_TEXT = re.compile(
    rf"\b{_ORDER_ID}\b", re.ASCII | (re.IGNORECASE if settings.COMMERCE_ORDER_ID_UPPERCASE else re.NOFLAG)
)

#: "Is this a currency code?": three upper-case ASCII letters (ISO 4217 shape), e.g. 'EUR'.
CURRENCY_CODE = re.compile(r"^[A-Z]{3}\Z")

#: Amounts carry two decimal places (cents).
CENTS = Decimal("0.01")
#: The digits an order's amount columns hold (`Order.total`, `Order.refunded_amount`; the ledger's holds more),
#: of which AMOUNT_DECIMAL_PLACES after the point: no amount from outside may have more.
AMOUNT_MAX_DIGITS = 10
#: The decimal places of an amount column (cents).
AMOUNT_DECIMAL_PLACES = 2
#: The one shape an amount from outside may have: a plain decimal, no sign, no exponent, no separators but one
#: point, at most as many digits as the columns hold.
_AMOUNT = re.compile(
    rf"^[0-9]{{1,{AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES}}}(?:\.[0-9]{{1,{AMOUNT_DECIMAL_PLACES}}})?\Z"
)


def order_id_valid(value: object) -> TypeGuard[str]:
    """Whether `value` is a string shaped like an order id (`ORDER_ID`): safe to look up."""
    return isinstance(value, str) and ORDER_ID.match(value) is not None


def order_ids_in(text: str) -> list[str]:
    """The order ids a text mentions, each once, sorted (upper-cased when ids are upper-case)."""
    found = ORDER_IDS_IN_TEXT.findall(text)
    return sorted({match.upper() for match in found} if settings.COMMERCE_ORDER_ID_UPPERCASE else set(found))


def amount_text(value: object) -> str | None:
    """The text of an amount from the outside world, before it is read: a string as it is, a JSON integer or
    float as its shortest representation (`repr`: what was written, e.g. 30.5), a Decimal as its string;
    None for anything else (booleans, containers, integers too long to be an amount)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        # Bounded before it is turned into text: str() of an integer of thousands of digits is refused
        # (ValueError) or slow.
        return str(value) if abs(value) < 10**AMOUNT_MAX_DIGITS else None
    if isinstance(value, float | Decimal):
        return repr(value) if isinstance(value, float) else str(value)
    return value if isinstance(value, str) else None


def amount_parse(value: object) -> Decimal | None:
    """An amount from the outside world (a model's or a reviewer's JSON: a string or a number): a plain decimal in
    cents — digits, optionally a point and one or two decimals, at most AMOUNT_MAX_DIGITS digits in all, no sign —
    as an exact Decimal; None for anything else ('1e3', '30_00', '-5', ' 30', '1.005', 1e16, True).

    The bound makes every later sum and comparison of amounts exact and cheap: no amount read here overflows a
    Decimal context or a database column, and no error message quoting one can be large."""
    text = amount_text(value)
    if text is None or _AMOUNT.match(text) is None:
        return None
    return Decimal(text)


def amount_format(amount: Decimal) -> str:
    """An amount as payloads carry it: a string with two decimal places, e.g. '24.50'."""
    return f"{amount:.2f}"
