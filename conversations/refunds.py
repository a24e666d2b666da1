"""The refund policy: which refunds may be executed, by whom, and which need a person first.

One function, `refund_problems`, used alike by the validator (the refunds a run proposes), by deliver (again,
under the customer's and the orders' row locks, just before the refunds are written) and by every reviewer's
decision before it is accepted. It judges a run's refunds together, on their **sums**, never one by one:

- every refund must be a refund of the customer's own order, of a positive amount in cents, in the order's
  currency, and all of a run's refunds of an order together at most what is left to refund on it
  (`NOT_ALLOWED`: nobody may execute it as it stands);
- an amount that was stated but not understood is never guessed (`AMOUNT_UNCLEAR`: a person writes the amount);
- agents (`RefundAuthority.AUTOMATIC`) may moreover refund only orders whose status allows it
  (`ORDER_STATUS`, see `status_allows_automatic_refund`), at most `REFUND_AUTO_LIMIT` per order counting every
  earlier automatic refund of the order (`OVER_LIMIT`), and at most `REFUND_AUTO_CUSTOMER_LIMIT` to one customer
  within `REFUND_AUTO_WINDOW_DAYS` (`OVER_CUSTOMER_LIMIT`). A reviewer's approval lifts these three, never the
  first two.

The limits are amounts in the order's currency at face value: there are no exchange rates here. The per-customer
window adds up automatic refunds in every currency as they are (30 EUR + 30 USD count as 60), so a customer with
orders in several currencies cannot get the limit once per currency; set the limits for the most valuable
currency the shop sells in. What was refunded before comes from the side-effect ledger (`RefundHistory`, built by
`agents.ledger.ledger_refund_history`), which records who approved each refund.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, assert_never

from django.conf import settings
from django.db import models

from conversations.commerce import ShopOrder
from conversations.models import Order
from conversations.orders import CENTS, amount_format, amount_parse, order_id_valid
from conversations.shop import commerce_backend


class RefundProblemCode(enum.StrEnum):
    """Why a refund may not be executed as it stands (the values appear in run and validator reasons)."""

    NOT_ALLOWED = "refund_not_allowed"
    """Never: another customer's order, a bad amount, more than the order's refundable remainder,
    another currency, or not a refund at all."""
    OVER_LIMIT = "refund_over_limit"
    """Above REFUND_AUTO_LIMIT for the order, with its earlier automatic refunds: a person may approve it."""
    AMOUNT_UNCLEAR = "refund_amount_unclear"
    """The amount was stated but not understood (relative, ambiguous, in words): a person must write it."""
    ORDER_STATUS = "refund_order_status"
    """The order's status is not one agents may refund (not yet delivered): a person may approve it."""
    OVER_CUSTOMER_LIMIT = "refund_over_customer_limit"
    """Above REFUND_AUTO_CUSTOMER_LIMIT for the customer within REFUND_AUTO_WINDOW_DAYS: a person may approve it."""


class RefundAuthority(models.TextChoices):
    """Who approves a refund: the policy asks more of agents than of people. Recorded on each ledger row."""

    AUTOMATIC = "automatic"
    """The agents, within every limit (the validator's approval)."""
    REVIEWER = "reviewer"
    """A person in the reviewers group: the limits and the status table are lifted, never `NOT_ALLOWED`."""


@dataclass(frozen=True)
class RefundProblem:
    """One reason a refund may not be executed."""

    code: RefundProblemCode
    """Which rule it breaks."""
    text: str
    """What is wrong, as a sentence for reviewers (e.g. 'order SB-10001 is in EUR.')."""


@dataclass(frozen=True)
class RefundHistory:
    """What agents refunded before, from the ledger: the part of the past the limits count."""

    automatic_by_order: Mapping[str, Decimal] = field(default_factory=dict)
    """Automatic refunds per order id, ever (a missing order: none)."""
    automatic_for_customer: Decimal = Decimal("0")
    """Automatic refunds to the customer in the last REFUND_AUTO_WINDOW_DAYS days, face value, all currencies."""
    pending_by_order: Mapping[str, Decimal] = field(default_factory=dict)
    """Refunds per order sent to a shop whose outcome is unknown (any approver): they may have happened, so they are
    taken off what may still be refunded (if the shop did execute one, it is taken off twice: a person decides)."""


def refund_auto_limit() -> Decimal:
    """The most agents may refund on one order, all their refunds of it together (REFUND_AUTO_LIMIT)."""
    return Decimal(settings.REFUND_AUTO_LIMIT).quantize(CENTS)


def refund_auto_customer_limit() -> Decimal:
    """The most agents may refund to one customer within the window (REFUND_AUTO_CUSTOMER_LIMIT)."""
    return Decimal(settings.REFUND_AUTO_CUSTOMER_LIMIT).quantize(CENTS)


def status_allows_automatic_refund(status: Order.Status) -> bool:
    """The status table: may agents refund an order in this status without a person?

    | status               | agents may refund | why                                                          |
    |----------------------|-------------------|--------------------------------------------------------------|
    | `processing`         | no                | not yet delivered: the help centre says a person checks it   |
    | `shipped`            | no                | on its way, not yet delivered: likewise                      |
    | `delivered`          | yes               |                                                              |
    | `partially_refunded` | as before it      | the status before its first refund decides (unknown: no)     |
    | `refunded`           | no                | nothing is left to refund                                    |
    """
    match status:
        case Order.Status.DELIVERED:
            return True
        case Order.Status.PROCESSING | Order.Status.SHIPPED | Order.Status.REFUNDED:
            return False
        case Order.Status.PARTIALLY_REFUNDED:
            return False  # the status before the first refund is unknown (see order_allows_automatic_refund)
        case _:
            assert_never(status)


def order_allows_automatic_refund(order: Order | ShopOrder) -> bool:
    """`status_allows_automatic_refund` for the order; a partially refunded order is judged by the status it had
    before its first refund (`Order.status_before_refund`; unknown for orders refunded before it was recorded: no)."""
    status = Order.Status(order.status)
    if status == Order.Status.PARTIALLY_REFUNDED and order.status_before_refund:
        status = Order.Status(order.status_before_refund)
    return status_allows_automatic_refund(status)


def problem_severity(code: RefundProblemCode) -> int:
    """How grave a problem is; the gravest names a run's reason. A person may approve the limits and the status,
    must first write an unclear amount, and may never execute what is not allowed."""
    match code:
        case RefundProblemCode.NOT_ALLOWED:
            return 3
        case RefundProblemCode.AMOUNT_UNCLEAR:
            return 2
        case RefundProblemCode.OVER_LIMIT | RefundProblemCode.OVER_CUSTOMER_LIMIT | RefundProblemCode.ORDER_STATUS:
            return 1
        case _:
            assert_never(code)


def problems_gravest(problems: Sequence[RefundProblem]) -> RefundProblemCode:
    """The code of the gravest problem (the first of the gravest): a run's reason."""
    return max((problem.code for problem in problems), key=problem_severity)


def refund_problems(
    *,
    customer_id: str,
    actions: Sequence[Mapping[str, Any]],
    history: RefundHistory,
    authority: RefundAuthority,
) -> list[RefundProblem]:
    """Why the refund actions of one run may not be executed together; empty when they may.

    An action is a refund as agents propose it and reviewers edit it: `type` ('refund'), `order_id`,
    `amount` (a string in the order's currency; None when it was not understood, with the reason in
    `amount_note`) and optionally `currency` (the order's when missing). See the module's docstring.
    """
    problems: list[RefundProblem] = []
    order_ids = {str(action.get("order_id", "")) for action in actions}
    # Through the shop's interface (the built-in database or the shop's API): the same policy whatever the backend.
    orders = commerce_backend().orders_get(customer_id=str(customer_id), order_ids=filter(order_id_valid, order_ids))
    run_by_order: dict[str, Decimal] = {}
    for action in actions:
        order_id = str(action.get("order_id", ""))
        order = orders.get(order_id)
        if action.get("type") != "refund":
            problems.append(
                RefundProblem(RefundProblemCode.NOT_ALLOWED, f"unknown action type {action.get('type')!r}.")
            )
        elif not order_id_valid(order_id):
            problems.append(RefundProblem(RefundProblemCode.NOT_ALLOWED, f"{order_id[:40]!r} is not an order number."))
        elif order is None:  # not found, or another customer's (the interface never returns those)
            problems.append(
                RefundProblem(RefundProblemCode.NOT_ALLOWED, f"order {order_id} is not on this customer's account.")
            )
        elif action.get("amount") is None:
            note = action.get("amount_note") or "no amount was given."
            problems.append(RefundProblem(RefundProblemCode.AMOUNT_UNCLEAR, str(note)))
        elif (amount := amount_parse(action.get("amount"))) is None or amount <= 0:
            problems.append(
                RefundProblem(
                    RefundProblemCode.NOT_ALLOWED, f"refund amount {action.get('amount')!r} is not a positive amount."
                )
            )
        else:
            if (action.get("currency") or order.currency) != order.currency:
                problems.append(
                    RefundProblem(RefundProblemCode.NOT_ALLOWED, f"order {order_id} is in {order.currency}.")
                )
            run_by_order[order_id] = run_by_order.get(order_id, Decimal("0")) + amount
    single = len(actions) == 1
    for order_id, amount in run_by_order.items():
        problems += _order_problems(orders[order_id], amount, history, authority, single=single)
    if authority == RefundAuthority.AUTOMATIC and run_by_order:
        problems += _customer_problems(sum(run_by_order.values(), Decimal("0")), history)
    return problems


def _order_problems(
    order: ShopOrder, amount: Decimal, history: RefundHistory, authority: RefundAuthority, *, single: bool
) -> list[RefundProblem]:
    """The problems of refunding `amount` (this run's refunds of the order together) on `order`."""
    what = (
        f"refund of {amount_format(amount)} {order.currency}"
        if single
        else (f"refunds of {amount_format(amount)} {order.currency} on order {order.id} in this run")
    )
    problems = []
    pending = history.pending_by_order.get(order.id, Decimal("0"))
    if amount > order.refundable - pending:
        verb = "exceeds" if single else "exceed"
        left = f"the refundable {order.refundable}"
        if pending:
            left += f" less {amount_format(pending)} sent to the shop with an outcome still unknown"
        problems.append(RefundProblem(RefundProblemCode.NOT_ALLOWED, f"{what} {verb} {left}."))
    if authority == RefundAuthority.REVIEWER:
        return problems
    if not order_allows_automatic_refund(order):
        problems.append(
            RefundProblem(
                RefundProblemCode.ORDER_STATUS,
                f"order {order.id} is {order.status.replace('_', ' ')}: a person checks refunds of orders "
                "not yet delivered.",
            )
        )
    before = history.automatic_by_order.get(order.id, Decimal("0"))
    limit = refund_auto_limit()
    if before + amount > limit:
        earlier = f", with {amount_format(before)} already refunded automatically," if before else ""
        verb = "is" if single else "are"
        problems.append(
            RefundProblem(RefundProblemCode.OVER_LIMIT, f"{what}{earlier} {verb} above the {limit} limit for agents.")
        )
    return problems


def _customer_problems(amount: Decimal, history: RefundHistory) -> list[RefundProblem]:
    """The problem, if any, of refunding `amount` (this run's refunds together) to the customer automatically."""
    limit = refund_auto_customer_limit()
    before = history.automatic_for_customer
    if before + amount <= limit:
        return []
    return [
        RefundProblem(
            RefundProblemCode.OVER_CUSTOMER_LIMIT,
            f"refunds of {amount_format(amount)} in this run, with {amount_format(before)} refunded automatically "
            f"to this customer in the last {settings.REFUND_AUTO_WINDOW_DAYS} days, are above the {limit} limit "
            "per customer for agents.",
        )
    ]
