"""Reading an amount of money from a customer's words or from a model's tool argument, as `Decimal`.

Pure functions, no database. A reading is one of three things: nothing stated (`None`), an amount understood
exactly (`AmountStated`), or words that state an amount we do not understand for certain (`AmountUnclear`).
The refund policy sends an unclear amount to a person; it is never guessed, and never read as "everything".

What is understood, in a customer's message (`amount_in_message`):
- figures with a currency before or after them: `EUR 30`, `30 EUR`, `€30`, `30€`, `30 euros`, `USD 30`, `$30`,
  `30 dollars`, `£30`, `30 GBP`, `CHF 30` ... (`CURRENCY_WORDS`);
- figures with one decimal separator, a point or a comma, and one or two decimals: `30.50`, `30,50` (with no
  currency they are in the order's currency).

What is unclear (a person reads it): a relative amount (`half of it`, `20%`, `a partial refund`); a number with
thousands separators or several separators (`1.000,50`, `1,000.50`, `1,000`: which separator is the decimal one
differs between countries); a whole number with no currency (`refund 30`: thirty what? and `the 4 mugs` is no
amount); a currency with no figures (`thirty euros`); and several different amounts in one message.

A model's tool argument (`amount_in_argument`) is stricter in shape — the whole value must be one amount — and
looser in one way: the tool's contract says a bare number is in the order's currency, so `30` is 30 of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from conversations.orders import ORDER_IDS_IN_TEXT, amount_parse

#: Currency symbols and words, and the ISO code each means. `$` and "dollars" are US dollars: on an order in
#: another dollar currency they do not match, and the refund goes to a person.
CURRENCY_WORDS: dict[str, str] = {
    "€": "EUR",
    "eur": "EUR",
    "euro": "EUR",
    "euros": "EUR",
    "$": "USD",
    "us$": "USD",
    "usd": "USD",
    "dollar": "USD",
    "dollars": "USD",
    "£": "GBP",
    "gbp": "GBP",
    "pound": "GBP",
    "pounds": "GBP",
    "chf": "CHF",
    "franc": "CHF",
    "francs": "CHF",
    "¥": "JPY",
    "jpy": "JPY",
    "yen": "JPY",
    "cad": "CAD",
    "aud": "AUD",
    "sek": "SEK",
    "nok": "NOK",
    "dkk": "DKK",
    "pln": "PLN",
}
_WORDS = sorted((w for w in CURRENCY_WORDS if w.isalpha()), key=len, reverse=True)
_CURRENCY = rf"(?:us\$|[€$£¥]|(?<![a-z])(?:{'|'.join(_WORDS)})(?![a-z]))"
#: Digits with any separators between them: "30", "30.50", "1.000,50", "12.03.2024" (one token each).
_NUMBER = r"(?<![\d.,'])\d+(?:[.,']\d+)*"
_MENTION = re.compile(
    rf"(?P<pre>{_CURRENCY})?[ \t\u00a0]*(?P<number>{_NUMBER})[ \t\u00a0]*(?P<post>{_CURRENCY})?", re.I
)
_CURRENCY_ALONE = re.compile(_CURRENCY, re.I)
#: Words that make an amount relative to something else.
_RELATIVE = re.compile(
    r"%|\b(?:half|halves|quarters?|thirds?|per ?cent|percentage|partial|partially|part|portion|fraction|some"
    r"|most|double|twice)\b",
    re.I,
)
#: A number we read for certain: digits, optionally one separator and one or two decimals.
_PLAIN_NUMBER = re.compile(r"^(?P<units>\d+)(?:[.,](?P<cents>\d{1,2}))?$")
_ARGUMENT = re.compile(rf"^(?P<pre>{_CURRENCY})?\s*(?P<number>\d[\d.,']*)\s*(?P<post>{_CURRENCY})?$", re.I)
#: At most this much of the customer's words is quoted to a reviewer.
QUOTE_CHARS = 60


@dataclass(frozen=True)
class AmountStated:
    """An amount understood exactly."""

    amount: Decimal
    """The amount, exact (never a float)."""
    currency: str | None
    """The ISO code the words name (e.g. 'EUR'), or None when they name none (the order's currency)."""
    text: str
    """The words it was read from, e.g. '€30'."""


@dataclass(frozen=True)
class AmountUnclear:
    """Words that state an amount we do not understand for certain: a person decides."""

    text: str
    """The words (at most QUOTE_CHARS characters), e.g. 'half of it'."""
    why: str
    """Why it is unclear, e.g. 'a relative amount'."""

    def sentence(self) -> str:
        """For reviewers: 'the amount '1.000,50 EUR' is not understood (ambiguous separators).'"""
        return f"the amount {self.text!r} is not understood ({self.why})."


#: What a text says about an amount: nothing (None), an exact amount, or something unclear.
AmountReading = AmountStated | AmountUnclear | None


def number_read(text: str) -> Decimal | None:
    """'30', '30.5', '30,50' as a Decimal; None for any other shape ('1.000,50', '1,000', '30.505')."""
    match = _PLAIN_NUMBER.match(text)
    if match is None:
        return None
    return Decimal(f"{match['units']}.{(match['cents'] or '').ljust(2, '0')}")


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1] + "…"


def _currency_of(pre: str | None, post: str | None) -> tuple[str | None, bool]:
    """The currency named before and/or after a number, and whether the two agree."""
    codes = {CURRENCY_WORDS[word.lower()] for word in (pre, post) if word}
    if len(codes) > 1:
        return None, False
    return (codes.pop() if codes else None), True


def amount_in_message(text: str) -> AmountReading:
    """What a customer's message says about the amount they want (see the module's docstring)."""
    text = ORDER_IDS_IN_TEXT.sub(" ", text)
    relative = _RELATIVE.search(text)
    if relative:
        start = max(0, relative.start() - 20)
        return AmountUnclear(_quote(text[start : relative.end() + 20]), "a relative amount")
    stated: list[AmountStated] = []
    currencies_used = 0
    for mention in _MENTION.finditer(text):
        words = _quote(mention.group(0))
        number = number_read(mention["number"])
        currency, agree = _currency_of(mention["pre"], mention["post"])
        currencies_used += bool(mention["pre"]) + bool(mention["post"])
        if number is None:
            return AmountUnclear(words, "ambiguous separators: which one is the decimal point?")
        if not agree:
            return AmountUnclear(words, "two different currencies")
        if currency is None and "." not in mention["number"] and "," not in mention["number"]:
            return AmountUnclear(words, "a whole number without a currency")
        stated.append(AmountStated(number, currency, words))
    if len(_CURRENCY_ALONE.findall(text)) > currencies_used:
        return AmountUnclear(_quote(text), "a currency without an amount in figures")
    if not stated:
        return None
    if len({(s.amount, s.currency) for s in stated}) > 1:
        return AmountUnclear(_quote(", ".join(s.text for s in stated)), "several different amounts")
    return stated[0]


def amount_in_argument(value: object) -> AmountReading:
    """A model's `amount` argument: null (nothing stated), a number, or a string holding one amount with an
    optional currency. Anything else is unclear. A bare number is in the order's currency (the tool's contract)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return AmountUnclear(repr(value), "not an amount")
    if isinstance(value, int | float):
        # JSON numbers arrive as int or float; repr is the shortest text that reads back as the same number,
        # i.e. what the model wrote, and Decimal reads that text exactly.
        amount = amount_parse(repr(value))
        if amount is None:
            return AmountUnclear(repr(value), "more than two decimals, or not a number")
        return AmountStated(amount, None, repr(value))
    if not isinstance(value, str):
        return AmountUnclear(_quote(repr(value)), "not an amount")
    match = _ARGUMENT.match(value.strip())
    if match is None:
        return AmountUnclear(_quote(value), "not one amount in figures")
    number = number_read(match["number"])
    currency, agree = _currency_of(match["pre"], match["post"])
    if number is None:
        return AmountUnclear(_quote(value), "ambiguous separators: which one is the decimal point?")
    if not agree:
        return AmountUnclear(_quote(value), "two different currencies")
    return AmountStated(number, currency, _quote(value))


def refund_amount_requested(*, argument: AmountReading, message: AmountReading, order_currency: str) -> AmountReading:
    """What one refund call asks for, from the model's `amount` argument and the customer's own message.

    None means "the whole refundable remainder": only when neither the model nor the customer named an amount.
    The customer's words are never overridden: an unclear message stays unclear whatever the model computed from
    it ("half of it" -> 45.00 is a person's call), and a model that disagrees with the amount the customer stated
    (or proposes everything when the customer stated an amount) is unclear too. A model's amount where the
    customer's message names none stands (it may come from earlier messages); the policy limits it like any other.
    """
    if isinstance(message, AmountUnclear):
        return message
    if isinstance(argument, AmountUnclear):
        return argument
    if argument is None:
        if message is None:
            return None
        return AmountUnclear(message.text, "the customer asked for this amount; the model proposed everything")
    if message is None:
        return argument
    asked = (message.amount, message.currency or order_currency)
    proposed = (argument.amount, argument.currency or order_currency)
    if asked != proposed:
        return AmountUnclear(
            f"{argument.text} / {message.text}", "the model's amount is not the one the customer asked for"
        )
    return argument
