"""Reading an amount of money from a customer's words or from a model's tool argument, as `Decimal`.

Pure functions, no database. A reading is one of three things: nothing stated (`None`), an amount understood
exactly (`AmountStated`), or words that say something about an amount we do not understand for certain
(`AmountUnclear`). The refund policy sends an unclear amount to a person; it is never guessed, and never read as
"everything".

The principle: when in doubt, a person decides. A wrong reading may cost a review, never money, so the reading is
conservative by construction: "nothing stated" (which the tools agent reads as the order's whole refundable
remainder, within the policy's limits) is only a message with no amount-like content at all, and an amount is
understood only when nothing amount-like is left around it.

In a customer's message (`amount_in_message`), once order ids are taken out:
- understood: figures with a currency we know right before or after them and nothing else amount-like in the
  message: `EUR 30`, `30 EUR`, `€30`, `30€`, `30 euros`, `USD 30`, `$30`, `30 dollars`, `£12,50`, `CHF 30` ...
  (`CURRENCY_WORDS`); one decimal separator, a point or a comma, with one or two decimals (`30.50 EUR`);
- nothing stated: no digit or other numeric character, no currency sign of any kind, no currency word, no
  percent sign or mathematical symbol, and none of the words in `DOUBT_WORDS` (numbers in words, fractions,
  exclusions, approximations, parts of the price, currencies we do not handle);
- unclear, everything else, e.g. figures without a currency (`refund 30`, `30.50`: and `12.03` may be a date,
  `2.5 kg` a weight, `4 mugs` a quantity), an unknown currency (`30 rupees`, `30 ₹`, `A$30`, `R$ 30`), a relative
  amount (`half`, `a tenth`, `20%`, `the shipping cost`, `one of the two mugs`), an amount beside words that change
  it (`everything except €30`), thousands separators (`1.000,50 EUR`), numbers in words (`thirty euros`) and
  several different amounts. Numbers that are dates, times or quantities make the message unclear too: a person
  reads it. That is the price of the rule, and accepted. The word lists are English; words of other languages are
  not recognised (the figures and currency signs around them still are).

A model's tool argument (`amount_in_argument`) is stricter in shape — the whole value must be one amount, with an
optional currency we know — and looser in one way: the tool's contract says a bare number is in the order's
currency, so `30` is 30 of it. The customer's words still bind it (`refund_amount_requested`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal

from conversations.orders import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, ORDER_IDS_IN_TEXT, amount_parse

#: Currency symbols and words we handle, and the ISO code each means. `$` and "dollars" are US dollars: a dollar
#: with a letter before it (A$, C$, HK$, R$ ...) is another currency, and on an order in another dollar currency
#: `$` does not match: the refund goes to a person.
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

#: Words that make what a message says about money unclear, and why: in a message, any of them sends the amount
#: to a person, even beside an amount in figures ("everything except €30"). The one list of such words; keep it
#: small. English; matched as whole words, case-insensitively, after Unicode compatibility normalisation.
_DOUBTS: dict[str, str] = {
    "a number in words": (
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty thirty forty fourty fifty sixty seventy eighty ninety hundred hundreds "
        "thousand thousands million millions billion dozen dozens couple pair few several single double triple "
        "twice thrice"
    ),
    "a relative amount": (
        "half halves halve third thirds quarter quarters fourth fourths fifth fifths sixth seventh eighth ninth "
        "tenth tenths hundredth percent percentage pct partial partially part parts portion fraction some most "
        "majority each per apiece"
    ),
    "an amount relative to another": (
        "except excepting excluding exclude excl but minus less without only difference deduct deducted deducting "
        "subtract off discount plus extra additional more"
    ),
    "an approximate amount": "about around approximately approx roughly nearly almost circa max maximum min minimum",
    "a part of the price": (
        "shipping postage delivery fee fees cost costs price prices charge charges tax taxes vat duty duties "
        "customs handling"
    ),
    # Any currency word not in CURRENCY_WORDS: names, codes, slang, and the qualifiers of other dollars.
    "a currency we do not handle": (
        "rupee rupees rs inr krona kronor krone kroner kr zloty zlotys zł yuan renminbi rmb cny won krw peso pesos "
        "mxn ars real reais brl rand zar lira liras lire baht thb ruble rubles rouble roubles rub forint huf koruna "
        "czk dirham dirhams aed riyal riyals rial sar shekel shekels ils ringgit rupiah dinar dinars naira hryvnia "
        "lei leu hkd nzd sgd twd cent cents pence penny pennies buck bucks quid grand sterling bitcoin bitcoins btc "
        "crypto eth ether ethereum usdt tether sats satoshi australian canadian hong kong zealand singapore mexican"
    ),
}
#: Each word of `_DOUBTS` with why it makes an amount unclear.
DOUBT_WORDS: dict[str, str] = {word: why for why, words in _DOUBTS.items() for word in words.split()}

_KNOWN_WORDS = sorted((w for w in CURRENCY_WORDS if w.isalpha()), key=len, reverse=True)
#: A currency we know: a symbol with no letter right before it (`A$` is not `$`), or a code or name.
_CURRENCY = rf"(?:(?<![^\W\d_])us\$|(?<![^\W\d_])[€$£¥]|(?<![^\W\d_])(?:{'|'.join(_KNOWN_WORDS)})(?![^\W\d_]))"
#: ASCII digits with any separators between them: "30", "30.50", "1.000,50", "12.03.2024" (one token each).
_NUMBER = r"(?<![0-9.,'])[0-9]+(?:[.,'][0-9]+)*"
#: Figures with an optional currency before and after, glued to no letter or digit on either side.
_MENTION = re.compile(
    rf"(?<![^\W_])(?:(?P<pre>{_CURRENCY})[ \t\u00a0]*)?(?P<number>{_NUMBER})(?:[ \t\u00a0]*(?P<post>{_CURRENCY}))?"
    r"(?![^\W_])",
    re.I,
)
#: Words, with letters of any script and inner apostrophes ("won't" is one word, not "won").
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")
#: Percent signs (other relative and approximate signs are mathematical symbols, category Sm).
_PERCENT = frozenset("%\u2030\u2031\u066a\ufe6a\uff05")  # % per mille, per ten thousand, Arabic, small, wide
#: At most this many digits before the decimal point: what an order's amount columns hold.
_UNITS_MAX = AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES
#: A number we read for certain: digits, optionally one separator and one or two decimals.
_PLAIN_NUMBER = re.compile(rf"^(?P<units>[0-9]{{1,{_UNITS_MAX}}})(?:[.,](?P<cents>[0-9]{{1,2}}))?\Z")
_ARGUMENT = re.compile(rf"^(?P<pre>{_CURRENCY})?\s*(?P<number>[0-9][0-9.,']*)\s*(?P<post>{_CURRENCY})?\Z", re.I)
#: At most this much of the customer's words is quoted to a reviewer.
QUOTE_CHARS = 60
#: Characters quoted on each side of what made a message unclear.
_AROUND = 20


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
    """'30', '30.5', '30,50' as a Decimal; None for any other shape ('1.000,50', '1,000', '30.505') and for more
    digits before the separator than an order's amount holds."""
    match = _PLAIN_NUMBER.match(text)
    if match is None:
        return None
    return Decimal(f"{match['units']}.{(match['cents'] or '').ljust(2, '0')}")


def _number_unclear(text: str) -> str:
    """Why `number_read` did not read `text`."""
    units = re.split(r"[.,']", text, maxsplit=1)[0]
    if len(units) > _UNITS_MAX:
        return f"more than {_UNITS_MAX} digits before the decimal point"
    return "ambiguous separators: which one is the decimal point?"


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1] + "…"


def _around(text: str, start: int, end: int, why: str) -> AmountUnclear:
    """Unclear, quoting `text[start:end]` with a few characters on each side."""
    return AmountUnclear(_quote(text[max(0, start - _AROUND) : end + _AROUND]), why)


def _currency_of(pre: str | None, post: str | None) -> tuple[str | None, bool]:
    """The currency named before and/or after a number, and whether the two agree."""
    codes = {CURRENCY_WORDS[word.lower()] for word in (pre, post) if word}
    if len(codes) > 1:
        return None, False
    return (codes.pop() if codes else None), True


def _word_doubt(word: str) -> str | None:
    """Why a word makes an amount unclear, or None."""
    folded = unicodedata.normalize("NFKC", word).casefold()
    if folded in DOUBT_WORDS:
        return DOUBT_WORDS[folded]
    if folded in CURRENCY_WORDS:
        return "a currency without an amount in figures"
    if any(char.isascii() for char in folded) and any(_not_latin(char) for char in folded):
        return "a word written with look-alike letters"
    return None


def _not_latin(char: str) -> bool:
    """Whether a letter is of another script than Latin ('half' spelt with a Cyrillic a looks like 'half')."""
    return char.isalpha() and "LATIN" not in unicodedata.name(char, "")


def _char_doubt(text: str, index: int) -> str | None:
    """Why the character at `index` makes an amount unclear, or None: numeric characters (any script, fractions
    like ½), currency signs, percent signs and mathematical symbols (+, ~, <, ±, ≈ ...)."""
    char = text[index]
    category = unicodedata.category(char)
    if category.startswith("N"):
        return "figures that are not an amount with a currency"
    if category == "Sc":
        lettered = index > 0 and text[index - 1].isalpha()
        known = unicodedata.normalize("NFKC", char) in CURRENCY_WORDS and not lettered
        return "a currency without an amount in figures" if known else "a currency we do not handle"
    if char in _PERCENT:
        return "a relative amount"
    if category == "Sm":
        return "an amount computed or approximated"
    return None


def _doubt_in(text: str, *, rest: str) -> AmountUnclear | None:
    """The first amount-like thing in `rest` (`text`, the same length, with its figures and their currencies
    blanked out), quoted from `text`; None when there is none: no such words, no such characters."""
    doubts = [(word.start(), word.end(), _word_doubt(word.group(0))) for word in _WORD.finditer(rest)]
    doubts += [(index, index + 1, _char_doubt(rest, index)) for index in range(len(rest))]
    found = [(start, end, why) for start, end, why in doubts if why is not None]
    if not found:
        return None
    start, end, why = min(found)
    return _around(text, start, end, why)


def _mention_read(mention: re.Match[str]) -> AmountStated | AmountUnclear:
    """One figure with its currency, as found by `_MENTION`."""
    words = _quote(mention.group(0))
    number = number_read(mention["number"])
    currency, agree = _currency_of(mention["pre"], mention["post"])
    if number is None:
        return AmountUnclear(words, _number_unclear(mention["number"]))
    if not agree:
        return AmountUnclear(words, "two different currencies")
    if currency is None:
        return AmountUnclear(words, "figures without a currency")
    return AmountStated(number, currency, words)


def amount_in_message(text: str) -> AmountReading:
    """What a customer's message says about the amount they want (see the module's docstring): None only when it
    has nothing amount-like at all; an amount only when it is understood and nothing amount-like is left."""
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")  # zero-width and format characters
    text = ORDER_IDS_IN_TEXT.sub(lambda match: " " * len(match.group(0)), text)
    mentions = list(_MENTION.finditer(text))
    rest = text
    for mention in mentions:
        rest = rest[: mention.start()] + " " * (mention.end() - mention.start()) + rest[mention.end() :]
    doubt = _doubt_in(text, rest=rest)
    if doubt is not None:
        return doubt
    stated: list[AmountStated] = []
    for mention in mentions:
        reading = _mention_read(mention)
        if isinstance(reading, AmountUnclear):
            return reading
        stated.append(reading)
    if not stated:
        return None
    if len({(s.amount, s.currency) for s in stated}) > 1:
        return AmountUnclear(_quote(", ".join(s.text for s in stated)), "several different amounts")
    return stated[0]


def amount_in_argument(value: object) -> AmountReading:
    """A model's `amount` argument: null (nothing stated), a JSON number, or a string holding one amount in
    figures with an optional currency we know. Anything else is unclear. A bare number is in the order's currency
    (the tool's contract)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return AmountUnclear(repr(value), "not an amount")
    if isinstance(value, int | float):
        # JSON numbers arrive as int or float; `amount_parse` reads a float from its repr, the shortest text that
        # reads back as the same number (what the model wrote), exactly, and refuses exponents and long numbers.
        amount = amount_parse(value)
        if amount is None:
            return AmountUnclear(
                _quote(repr(value)) if isinstance(value, float) else "an integer", "not a plain amount in cents"
            )
        return AmountStated(amount, None, repr(value))
    if not isinstance(value, str):
        return AmountUnclear(_quote(repr(value)), "not an amount")
    match = _ARGUMENT.match(value.strip())
    if match is None:
        return AmountUnclear(_quote(value), "not one amount in figures")
    number = number_read(match["number"])
    currency, agree = _currency_of(match["pre"], match["post"])
    if number is None:
        return AmountUnclear(_quote(value), _number_unclear(match["number"]))
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
    Several refund calls together are held to the customer's amount by the tools agent (`refunds_held_to`).
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
