"""What a reviewer needs beside a proposed refund (reads only): each order as the shop reports it, what was refunded
on it before (the ledger: automatic, reviewer-approved, pending), the customer's automatic refunds in the policy's
window against the limits, why the policy stopped the proposal (its reasons in words) and whether approving it needs
a second reviewer.

The reasons are the refund policy's own (`conversations.refunds.refund_problems`, the function the validator,
deliver and every decision call, with the ledger's history read once for the page), judged now, as agents would
have to: what the page says is what the policy says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings

from agents.ledger import ledger_refund_history, ledger_refunds_of_orders
from agents.models import LedgerEntry
from agents.tools.refunds import refunds_recorded_check
from conversations.commerce import ShopOrder
from conversations.orders import CENTS, amount_format, amount_parse, order_id_valid
from conversations.refunds import (
    RefundAuthority,
    RefundProblem,
    RefundProblemCode,
    refund_auto_customer_limit,
    refund_auto_limit,
    refund_problems,
)
from conversations.selectors import conversation_customer_id
from conversations.shop import commerce_backend
from orchestration.models import ReviewItem
from orchestration.selectors import reviewer_approved_by_order
from project.errors import SwitchboardError


@dataclass(frozen=True)
class OrderFacts:
    """One order a proposal refunds, with its refund history."""

    order_id: str
    """The order id the proposal names."""
    proposed: list[str]
    """The proposal's refunds of it in words, e.g. ['249.00 EUR'] or ['amount not understood: "half of it"']."""
    order: ShopOrder | None
    """The order as the shop reports it now; None when it is not on the customer's account (or not found)."""
    history: list[LedgerEntry]
    """The ledger's refunds of the order, newest first (any approver, any status)."""
    refunded_automatic: Decimal
    """Refunded on agents' approval (pending ones included: they may have happened)."""
    refunded_by_reviewers: Decimal
    """Refunded on a reviewer's approval, and decided by reviewers on its way to deliver."""
    pending: Decimal
    """Sent to the shop with an outcome still unknown (any approver): taken off what is left."""
    left: Decimal | None
    """What may still be refunded: the shop's refundable remainder less the pending refunds (None: no order)."""
    auto_left: Decimal
    """What agents may still refund on it without a person (REFUND_AUTO_LIMIT less `refunded_automatic`)."""

    @property
    def status_text(self) -> str:
        """The order's status in words ('partially refunded'; '' without an order)."""
        return self.order.status.replace("_", " ") if self.order is not None else ""


@dataclass(frozen=True)
class CustomerWindow:
    """The customer's automatic refunds within the policy's window, against the limit per customer."""

    days: int
    """REFUND_AUTO_WINDOW_DAYS."""
    refunded_automatic: Decimal
    """Refunded on agents' approval to this customer in the window (all orders, all currencies at face value)."""
    limit: Decimal
    """REFUND_AUTO_CUSTOMER_LIMIT."""
    left: Decimal
    """What agents may still refund to the customer in the window (never below 0)."""


@dataclass(frozen=True)
class PolicyReason:
    """One reason the refund policy gives against the proposal, for a person."""

    title: str
    """The rule, in words (e.g. 'Above what agents may refund on one order (100.00)')."""
    text: str
    """The policy's sentence about this proposal, as a sentence."""
    reviewer_may_approve: bool
    """Whether a reviewer's approval lifts it (the limits and the status table) or it must be edited (the rest)."""


@dataclass(frozen=True)
class ReviewFacts:
    """Everything the review page shows beside the proposal."""

    orders: list[OrderFacts] = field(default_factory=list)
    """The orders the proposed refunds name, in the proposal's order."""
    window: CustomerWindow | None = None
    """The customer's automatic refunds in the window (None when nothing is proposed)."""
    reasons: list[PolicyReason] = field(default_factory=list)
    """Why the policy stops the proposal as agents would execute it (empty: it allows it; the item is here for
    another reason)."""
    second_approval: str = ""
    """Whether approving the proposal needs a second reviewer, and the threshold, in words ('' without refunds)."""
    shop_error: str = ""
    """What went wrong reading the shop ('' when it answered): the facts are then incomplete."""


def _reason_title(code: RefundProblemCode) -> tuple[str, bool]:
    match code:
        case RefundProblemCode.NOT_ALLOWED:
            return "Nobody may execute this as it stands: edit the refund or reject", False
        case RefundProblemCode.AMOUNT_UNCLEAR:
            return "The amount was not understood: write the amount", False
        case RefundProblemCode.ORDER_STATUS:
            return "Agents refund only delivered orders: you may approve it", True
        case RefundProblemCode.OVER_LIMIT:
            return f"Above what agents may refund on one order ({refund_auto_limit()}): you may approve it", True
        case RefundProblemCode.OVER_CUSTOMER_LIMIT:
            days = settings.REFUND_AUTO_WINDOW_DAYS
            return (
                f"Above what agents may refund to one customer in {days} days ({refund_auto_customer_limit()}): "
                "you may approve it",
                True,
            )
    raise AssertionError(code)


def policy_reasons(problems: Sequence[RefundProblem]) -> list[PolicyReason]:
    """The policy's problems in words: the rule's title and its sentence, capitalised."""
    reasons = []
    for problem in problems:
        title, lifted = _reason_title(problem.code)
        text = problem.text[:1].upper() + problem.text[1:]
        reasons.append(PolicyReason(title=title, text=text, reviewer_may_approve=lifted))
    return reasons


def _proposed_text(action: Mapping[str, Any]) -> str:
    amount = amount_parse(action.get("amount"))
    if amount is None:
        note = str(action.get("amount_note") or "no amount was given")
        return f"amount not understood: {note}"
    return f"{amount_format(amount)} {action.get('currency') or ''}".strip()


def review_refund_facts(item: ReviewItem) -> ReviewFacts:
    """The facts of an item's proposed refunds (see the module's docstring). A shop that does not answer leaves the
    facts it would have given out and says so in `shop_error`."""
    refunds = [a for a in item.proposed_action or [] if isinstance(a, dict) and a.get("type") == "refund"]
    if not refunds:
        return ReviewFacts()
    customer_id = conversation_customer_id(conversation_id=str(item.run.conversation_id))
    order_ids = list(dict.fromkeys(str(action.get("order_id", "")) for action in refunds))
    valid = [order_id for order_id in order_ids if order_id_valid(order_id)]
    history = ledger_refund_history(customer_id=customer_id, order_ids=valid)  # also what the policy counts
    shop_error, reasons = "", []
    try:
        orders = commerce_backend().orders_get(customer_id=customer_id, order_ids=valid)
        new = refunds_recorded_check(run_id=str(item.run_id), actions=refunds).new
        if new:
            problems = refund_problems(
                customer_id=customer_id, actions=new, history=history, authority=RefundAuthority.AUTOMATIC
            )
            reasons = policy_reasons(problems)
    except SwitchboardError as exc:
        orders, shop_error = {}, f"The shop did not answer: {exc.message}"
    by_reviewers = reviewer_approved_by_order(order_ids=valid)
    rows = ledger_refunds_of_orders(order_ids=valid)
    facts = []
    for order_id in order_ids:
        order = orders.get(order_id)
        automatic = history.automatic_by_order.get(order_id, Decimal("0")).quantize(CENTS)
        pending = history.pending_by_order.get(order_id, Decimal("0")).quantize(CENTS)
        facts.append(
            OrderFacts(
                order_id=order_id,
                proposed=[_proposed_text(a) for a in refunds if str(a.get("order_id", "")) == order_id],
                order=order,
                history=[row for row in rows if row.order_id == order_id],
                refunded_automatic=automatic,
                refunded_by_reviewers=by_reviewers.get(order_id, Decimal("0")).quantize(CENTS),
                pending=pending,
                left=order.refundable - pending if order is not None else None,
                auto_left=max(refund_auto_limit() - automatic, Decimal("0")),
            )
        )
    limit = refund_auto_customer_limit()
    window = CustomerWindow(
        days=settings.REFUND_AUTO_WINDOW_DAYS,
        refunded_automatic=history.automatic_for_customer.quantize(CENTS),
        limit=limit,
        left=max(limit - history.automatic_for_customer, Decimal("0")),
    )
    approved_before = sum((fact.refunded_by_reviewers for fact in facts), Decimal("0"))
    return ReviewFacts(
        orders=facts,
        window=window,
        reasons=reasons,
        second_approval=second_approval_text(refunds, approved_before=approved_before),
        shop_error=shop_error,
    )


def second_approval_text(refunds: Sequence[Mapping[str, Any]], *, approved_before: Decimal) -> str:
    """Whether approving these refunds is only a first approval (`orchestration.reviews.needs_second_approval`'s
    rule, read without its locks), in words, with what one reviewer may still approve alone."""
    threshold = Decimal(settings.REFUND_SECOND_APPROVAL_ABOVE)
    total = sum((amount_parse(a.get("amount")) or Decimal("0") for a in refunds), Decimal("0"))
    before = (
        f", with {amount_format(approved_before)} reviewers already approved on these orders,"
        if approved_before
        else ""
    )
    if total + approved_before > threshold:
        return (
            f"A second reviewer is needed: these refunds ({amount_format(total)}){before} come to more than "
            f"{amount_format(threshold)}. Your approval is a first approval; nothing is executed until another "
            "reviewer approves."
        )
    alone = max(threshold - approved_before, Decimal("0"))
    already = f" ({amount_format(approved_before)} already approved by reviewers)" if approved_before else ""
    return (
        f"One reviewer alone may approve up to {amount_format(alone)} more on these orders{already}; above "
        f"{amount_format(threshold)} in all, a second reviewer must approve too."
    )
