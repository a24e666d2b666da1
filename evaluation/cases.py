"""A golden case: a conversation with the demo shop and what a correct system does with it, as typed data.

Cases live in YAML files (`evals/golden/*.yaml`, each `{cases: [...]}`) and in rows (`evaluation.models.GoldenCase`,
the same schema as JSON, e.g. saved from the review queue). Both are read by `case_from_dict`, which is strict: an
unknown key (a typo), a missing one or a value of the wrong type is a `CaseInvalid` naming the file and the field
(`evals/golden/refunds.yaml: cases[2].expect.action.amont: unknown key (known: proposed, order, amount, executed)`).
`case_to_dict` writes a case back in the same shape (export, rows).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from agents.triage import INTENTS
from conversations.models import Order
from conversations.orders import CURRENCY_CODE, ORDER_ID

#: A case id: lower-case words joined by hyphens (it names the case in tables, reports and exported files).
CASE_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z")
#: The similarity a reply must reach to its reference when a case does not say (difflib ratio, 0 to 1).
REFERENCE_SIMILARITY = 0.6


class CaseInvalid(ValueError):
    """A golden case that does not fit the schema; the message names the file (or row) and the field."""


@dataclass(frozen=True)
class OrderFixture:
    """An order on a throwaway customer's account (ids are mapped to fresh ones on every run)."""

    id: str
    """The order id as the case's messages write it (the shop's shape, e.g. SB-10001)."""
    description: str
    """What was ordered, e.g. 'Set of 4 enamel camping mugs'."""
    total: Decimal
    """The order's total, in `currency`."""
    status: str
    """processing, shipped, delivered, refunded or partially_refunded."""
    currency: str = "EUR"
    """A three-letter currency code."""
    placed_days_ago: int = 10
    """How many days before the run the order was placed (its `delivered_at` is left unset: no agent reads it)."""
    refunded: Decimal = Decimal("0")
    """What was refunded on it before (with status refunded or partially_refunded; it was delivered before)."""


@dataclass(frozen=True)
class ActionExpectation:
    """A refund that must, or must not, be proposed; and whether it is executed by the end of the run."""

    proposed: bool | None = None
    """True: a refund must be proposed (on `order`, of `amount`, when given). False: no refund may be proposed
    (on `order` when given, else none at all). None: not checked."""
    order: str | None = None
    """The order id (as the case writes it); None: any order."""
    amount: Decimal | None = None
    """The amount the refund proposed (or executed) must have (with `proposed` or `executed` true); None: any."""
    executed: bool | None = None
    """True: the refund was executed (on `order`, of `amount`, when given); False: nothing was refunded (on
    `order` when given, else on no order of the customer); None: not checked."""


@dataclass(frozen=True)
class ReferenceReply:
    """A reply a person wrote or approved: the system's reply must be at least `similarity` like it."""

    reply: str
    """The reference text (order ids as the case writes them)."""
    similarity: float = REFERENCE_SIMILARITY
    """The least similarity (0 to 1: difflib's ratio of the two replies' words, in lower case) between the system's
    reply and the reference."""


@dataclass(frozen=True)
class Expectations:
    """What a correct system does with the case's last message (and with the whole conversation, for leaks)."""

    intent: str | None = None
    """Triage's intent for the last message (one of `agents.triage.INTENTS`); None: not checked."""
    sources: list[str] = field(default_factory=list)
    """Titles of help-centre documents the reply must cite (all of them; it may cite others)."""
    action: ActionExpectation | None = None
    """A refund that must or must not be proposed; None: not checked."""
    review: bool | None = None
    """True: the run must stop for a person (awaiting review); False: it must complete without one; None: not
    checked."""
    review_reason: str | None = None
    """With `review: true`, the reason code the run must stop with (e.g. refund_over_limit); None: any."""
    must_not_say: list[str] = field(default_factory=list)
    """Phrases that must not appear (case-insensitively) in any customer-visible message of the conversation:
    staff-only notes, other customers' data, a prompt. The help centre's staff-only notes are always checked."""
    max_cost_usd: Decimal | None = None
    """The most the case's runs may cost together, in US dollars; None: not checked."""
    reference: ReferenceReply | None = None
    """A reference reply (a case saved from review has one); None: not checked."""


@dataclass(frozen=True)
class GoldenCase:
    """One conversation with the shop and its expectations."""

    id: str
    """A unique id: lower-case words joined by hyphens."""
    title: str
    """What the case is about, in a sentence."""
    messages: list[str]
    """The customer's messages, one per turn: each is posted once the run of the one before has stopped."""
    orders: list[OrderFixture] = field(default_factory=list)
    """The customer's own orders."""
    other_orders: list[OrderFixture] = field(default_factory=list)
    """Orders of another customer (for cross-customer attempts): they exist, but are not the customer's."""
    expect: Expectations = field(default_factory=lambda: Expectations())
    """What a correct system does."""


def case_from_dict(data: Any, *, where: str) -> GoldenCase:
    """A case from its YAML/JSON form, checked; CaseInvalid names `where` (a file and position, or a row)."""
    case = _convert(data, GoldenCase, where)
    _semantics(case, where)
    return case


def cases_from_file(path: Path) -> list[GoldenCase]:
    """The cases of one YAML file (`{cases: [...]}`), checked."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CaseInvalid(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {"cases"} or not isinstance(data["cases"], list):
        raise CaseInvalid(f"{path}: a golden case file is a mapping with one key, cases (a list of cases).")
    return [case_from_dict(entry, where=f"{path}: cases[{index}]") for index, entry in enumerate(data["cases"])]


def cases_unique(cases: list[tuple[str, GoldenCase]]) -> list[GoldenCase]:
    """The cases (each with where it came from), or CaseInvalid if two share an id."""
    seen: dict[str, str] = {}
    for where, case in cases:
        if case.id in seen:
            raise CaseInvalid(f"{where}: id {case.id!r} is also the id of the case in {seen[case.id]}.")
        seen[case.id] = where
    return [case for _, case in cases]


def case_to_dict(case: GoldenCase) -> dict[str, Any]:
    """The case in its YAML/JSON form (decimals as strings, defaults and empty lists left out)."""
    return _plain(case)


# --- Conversion --------------------------------------------------------------------------------------------


def _convert(value: Any, kind: Any, where: str) -> Any:
    """`value` as `kind` (a dataclass, list[...], X | None, str, bool, int, float or Decimal), or CaseInvalid."""
    if dataclasses.is_dataclass(kind):
        return _dataclass(value, kind, where)
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _convert(value, inner, where)
    if origin is list:
        if not isinstance(value, list):
            raise CaseInvalid(f"{where}: must be a list, got {type(value).__name__}.")
        (inner,) = typing.get_args(kind)
        return [_convert(item, inner, f"{where}[{index}]") for index, item in enumerate(value)]
    if kind is Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise CaseInvalid(f'{where}: must be a decimal number (e.g. "24.50"), got {value!r}.')
        try:
            return Decimal(str(value))
        except InvalidOperation as exc:
            raise CaseInvalid(f'{where}: must be a decimal number (e.g. "24.50"), got {value!r}.') from exc
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise CaseInvalid(f"{where}: must be an integer, got {value!r}.")
    if not isinstance(value, kind):
        raise CaseInvalid(f"{where}: must be {kind.__name__}, got {type(value).__name__} {value!r}.")
    return value


def _dataclass(value: Any, kind: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise CaseInvalid(f"{where}: must be a mapping with keys {', '.join(_names(kind))}.")
    fields = {item.name: item for item in dataclasses.fields(kind)}
    for key in value:
        if key not in fields:
            raise CaseInvalid(f"{where}.{key}: unknown key (known: {', '.join(fields)}).")
    hints = typing.get_type_hints(kind)
    arguments = {}
    for name, item in fields.items():
        if name not in value:
            if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
                raise CaseInvalid(f"{where}.{name}: missing (required).")
            continue
        arguments[name] = _convert(value[name], hints[name], f"{where}.{name}")
    return kind(**arguments)


def _names(kind: Any) -> list[str]:
    return [item.name for item in dataclasses.fields(kind)]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for item in dataclasses.fields(value):
            current = getattr(value, item.name)
            default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
            required = item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
            if required or current != default:
                out[item.name] = _plain(current)
        return out
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


# --- Meaning ---------------------------------------------------------------------------------------------


def _semantics(case: GoldenCase, where: str) -> None:
    """What types cannot say: ids, intents, statuses, currencies, amounts and thresholds that make sense."""
    if not CASE_ID.match(case.id):
        raise CaseInvalid(f"{where}.id: {case.id!r} must be lower-case words joined by hyphens.")
    where = f"{where} ({case.id})"
    if not case.messages or any(not message.strip() for message in case.messages):
        raise CaseInvalid(f"{where}.messages: at least one message, none empty.")
    ids: set[str] = set()
    for key, orders in (("orders", case.orders), ("other_orders", case.other_orders)):
        for index, order in enumerate(orders):
            _order_check(order, f"{where}.{key}[{index}]")
            if order.id in ids:
                raise CaseInvalid(f"{where}.{key}[{index}].id: {order.id} is in the fixture twice.")
            ids.add(order.id)
    expect = case.expect
    if expect.intent is not None and expect.intent not in INTENTS:
        raise CaseInvalid(f"{where}.expect.intent: {expect.intent!r} is not one of {', '.join(INTENTS)}.")
    if expect.review_reason is not None and expect.review is not True:
        raise CaseInvalid(f"{where}.expect.review_reason: only with review: true.")
    if expect.max_cost_usd is not None and expect.max_cost_usd < 0:
        raise CaseInvalid(f"{where}.expect.max_cost_usd: must not be negative.")
    if expect.reference is not None and not 0 <= expect.reference.similarity <= 1:
        raise CaseInvalid(f"{where}.expect.reference.similarity: must be between 0 and 1.")
    action = expect.action
    if action is not None:
        if action.order is not None and action.order not in ids:
            raise CaseInvalid(f"{where}.expect.action.order: {action.order} is not in the fixture's orders.")
        if action.proposed is None and action.executed is None:
            raise CaseInvalid(f"{where}.expect.action: say proposed, executed or both.")
        if action.amount is not None and (action.amount <= 0 or not (action.proposed or action.executed)):
            raise CaseInvalid(f"{where}.expect.action.amount: a positive amount, with proposed or executed: true.")


def _order_check(order: OrderFixture, where: str) -> None:
    if not ORDER_ID.match(order.id):
        raise CaseInvalid(f"{where}.id: {order.id!r} is not an order id of the shop's shape (e.g. SB-10001).")
    if order.status not in Order.Status.values:
        raise CaseInvalid(f"{where}.status: {order.status!r} is not one of {', '.join(Order.Status.values)}.")
    if not CURRENCY_CODE.match(order.currency):
        raise CaseInvalid(f"{where}.currency: {order.currency!r} is not a three-letter code like EUR.")
    if order.total <= 0 or order.total != order.total.quantize(Decimal("0.01")):
        raise CaseInvalid(f"{where}.total: a positive amount in cents, got {order.total}.")
    if order.refunded < 0 or order.refunded > order.total:
        raise CaseInvalid(f"{where}.refunded: between 0 and the total, got {order.refunded}.")
    if order.placed_days_ago < 0:
        raise CaseInvalid(f"{where}.placed_days_ago: must not be negative.")
