"""The refund policy where it is applied, and executing refunds: the domain's policy with the ledger's history,
and the domain's refund write through the ledger, once per run and action.

`refund_check` is what the validator, deliver and reviewers' decisions call: the domain's `refund_problems`
over all of a run's refunds, with what the ledger says agents refunded before. `refunds_execute` (deliver) takes
the customer's and the orders' row locks first, decides again under them and writes every refund or none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents.ledger import (
    REFUND,
    ledger_once,
    ledger_refund_history,
    ledger_request,
    ledger_results,
    ledger_send,
    ledger_settle,
    ledger_statuses,
)
from agents.models import LedgerEntry
from conversations.commerce import Commerce, CommerceUnavailable, DatabaseCommerce, RefundRefused
from conversations.orders import amount_parse, order_id_valid
from conversations.refunds import RefundAuthority, RefundProblem, refund_problems
from conversations.selectors import conversation_customer_id, order_currency
from conversations.services import refund_orders_lock
from conversations.shop import commerce_backend
from project.errors import PermanentError


def refund_key(run_id: str, index: int) -> str:
    return f"refund:{run_id}:{index}"


def refund_check(
    *, customer_id: str, actions: Sequence[Mapping[str, Any]], authority: RefundAuthority
) -> list[RefundProblem]:
    """The refund policy over all these actions together, with the customer's automatic refunds so far."""
    if not actions:
        return []
    history = ledger_refund_history(customer_id=customer_id, order_ids=_order_ids(actions))
    return refund_problems(customer_id=customer_id, actions=actions, history=history, authority=authority)


def _order_ids(actions: Sequence[Mapping[str, Any]]) -> list[str]:
    """The actions' order ids that are shaped like order ids (the others are refused by the policy, unqueried)."""
    return [order_id for action in actions if order_id_valid(order_id := str(action.get("order_id", "")))]


@dataclass(frozen=True)
class RefundsExecuted:
    """Every refund was executed (now or by an earlier delivery of the same run)."""

    results: list[dict[str, Any]]
    """One ledger result per action, in order: order_id, amount, currency, order_status."""


@dataclass(frozen=True)
class RefundsRefused:
    """The policy refused the refunds under the locks: nothing was executed, a person decides."""

    problems: list[RefundProblem]
    """Why."""


def refunds_execute(
    *,
    actions: Sequence[Mapping[str, Any]],
    run_id: str,
    conversation_id: str,
    authority: RefundAuthority,
    approver: str = "",
) -> RefundsExecuted | RefundsRefused:
    """Execute a run's refunds, all or none, each once per (run, action index) through the ledger.

    Under the customer's and the orders' row locks (`refund_orders_lock`), the policy decides again on the sum of
    the refunds not yet executed, with the history the ledger has now: two runs on one order at once are decided
    one after the other. `authority` is who approved them (a reviewer lifts the limits, never the rest);
    `approver` their username(s), recorded on each ledger row.

    With the built-in database the refunds are written in that transaction with their ledger rows. With a shop's
    API (not transactional) they are recorded there as requested (PENDING) and committed; then each is sent with its
    key as Idempotency-Key and its outcome recorded (`_refund_send`). A try that dies or times out in between
    leaves the row pending: the next try sends the same key, never a new one.
    """
    if not actions:
        return RefundsExecuted([])
    shop = commerce_backend()
    customer_id = conversation_customer_id(conversation_id=conversation_id)
    keys = [refund_key(run_id, index) for index in range(len(actions))]
    with transaction.atomic():
        refund_orders_lock(customer_id=customer_id, order_ids=_order_ids(actions))
        recorded = ledger_statuses(keys)
        changed = (
            refunds_recorded_check(run_id=run_id, actions=actions, keep_recorded=False).conflicts if recorded else []
        )
        if changed:  # never executed as asked: a recorded refund is sent again only as recorded
            raise PermanentError("refunds refused: " + " ".join(changed))
        done = ledger_results(keys)
        todo = [action for key, action in zip(keys, actions, strict=True) if key not in recorded]
        problems = refund_check(customer_id=customer_id, actions=todo, authority=authority)
        if problems:
            return RefundsRefused(problems)
        columns = {"customer_id": customer_id, "approved_by": authority, "approver": approver[:320]}
        if shop.transactional:
            results = [
                done[key] if key in done else _refund_once(key=key, action=action, run_id=run_id, columns=columns)
                for key, action in zip(keys, actions, strict=True)
            ]
            return RefundsExecuted(results)
        for key, action in zip(keys, actions, strict=True):
            if key not in recorded:
                order_id, amount, currency = _refund_terms(action, shop, customer_id)
                ledger_request(
                    key=key,
                    kind=REFUND,
                    run_id=run_id,
                    request=dict(action),
                    columns={**columns, "order_id": order_id, "amount": amount, "currency": currency},
                )
    return RefundsExecuted([_refund_send(shop, key) for key in keys])


def _refund_terms(action: Mapping[str, Any], shop: Commerce, customer_id: str) -> tuple[str, Decimal, str]:
    """The order, amount and currency of a refund the policy allowed (the order's currency when none was given)."""
    amount = amount_parse(action.get("amount"))
    if amount is None:  # the policy allowed it, so this cannot be; never guess an amount
        raise PermanentError(f"refund refused: amount {action.get('amount')!r} is not an amount.")
    order_id = str(action["order_id"])
    currency = str(action.get("currency") or "")
    if not currency:
        order = shop.orders_get(customer_id=customer_id, order_ids=[order_id]).get(order_id)
        currency = order.currency if order else ""
    return order_id, amount, currency


def _refund_once(*, key: str, action: Mapping[str, Any], run_id: str, columns: dict[str, Any]) -> dict[str, Any]:
    """A refund in the built-in database: the write and its ledger row in one transaction."""
    amount = amount_parse(action.get("amount"))
    if amount is None:  # the policy allowed it, so this cannot be; never guess an amount
        raise PermanentError(f"refund refused: amount {action.get('amount')!r} is not an amount.")
    order_id = str(action["order_id"])
    currency = str(action.get("currency") or "") or order_currency(order_id=order_id)
    customer_id = columns["customer_id"]

    def effect() -> dict[str, Any]:
        outcome = DatabaseCommerce().refund(
            key=key, customer_id=customer_id, order_id=order_id, amount=amount, currency=currency or ""
        )
        return outcome.as_result()

    result, _ = ledger_once(
        key=key,
        kind=REFUND,
        run_id=run_id,
        request=dict(action),
        effect=effect,
        columns={**columns, "order_id": order_id, "amount": amount, "currency": currency or ""},
    )
    return result


def _refund_send(shop: Commerce, key: str) -> dict[str, Any]:
    """Send a requested refund to the shop with its key as Idempotency-Key and record the outcome (`ledger_send`):
    2xx done; a refusal (4xx) failed, RefundRefused; no answer (5xx, timeout) still pending with the evidence,
    CommerceUnavailable, so the step retries with the same key and, when the retries run out, deliver hands the run
    to a person (`Deliver.review_when_exhausted`)."""

    def send(entry: LedgerEntry) -> dict[str, Any]:
        assert entry.amount is not None  # a refund row always has one (ledger_request)
        outcome = shop.refund(
            key=entry.key,
            customer_id=entry.customer_id,
            order_id=entry.order_id,
            amount=entry.amount,
            currency=entry.currency,
        )
        return outcome.as_result()

    return ledger_send(
        key=key,
        send=send,
        describe=lambda entry: f"refund {entry.key} of {entry.amount} {entry.currency} on order {entry.order_id}",
        unavailable=CommerceUnavailable,
        refused=RefundRefused,
    )


# --- A run's refunds already recorded, as reviewers see and decide them ----------------------------------------------


@dataclass(frozen=True)
class RecordedRefunds:
    """A decision's refund actions against what the ledger recorded for the run under their keys."""

    new: list[Mapping[str, Any]]
    """The actions whose key has no row yet: the ones the policy must still allow."""
    conflicts: list[str]
    """Why the decision would change a refund already recorded (sent, or executed): empty when it does not."""


def refunds_recorded(run_id: str) -> list[LedgerEntry]:
    """The run's refunds the ledger recorded (requested, done or refused), in action order: the evidence a reviewer
    sees (status; for an unknown outcome, the tries and the last error)."""
    entries = LedgerEntry.objects.filter(run_id=str(run_id), kind=REFUND)
    return sorted(entries, key=lambda entry: int(entry.key.rpartition(":")[2]))


def refunds_recorded_check(
    *, run_id: str, actions: Sequence[Mapping[str, Any]], keep_recorded: bool = True
) -> RecordedRefunds:
    """Split a decision's actions into new ones and those recorded under their key (`refund_key(run_id, index)`),
    which must stay exactly as recorded: deliver sends a recorded refund again with its key and its recorded
    order, amount and currency — an edit of them would never be executed as edited (and a new key for another
    amount could refund twice). With `keep_recorded` (approve, edit), a recorded refund may not be dropped either;
    a rejection drops them all and leaves them recorded (`refunds_pending_leave`)."""
    recorded = {entry.key: entry for entry in refunds_recorded(run_id)}
    new, conflicts = [], []
    for index, action in enumerate(actions):
        entry = recorded.pop(refund_key(run_id, index), None)
        if entry is None:
            new.append(action)
            continue
        amount = amount_parse(action.get("amount"))
        currency = str(action.get("currency") or "") or entry.currency
        if (str(action.get("order_id")), amount, currency) != (entry.order_id, entry.amount, entry.currency):
            conflicts.append(
                f"refund {index + 1} was already {_recorded_text(entry)}; it cannot be changed to "
                f"{action.get('amount')} {currency} on order {action.get('order_id')}. Approve it as it stands "
                "(the same key is sent again), or reject."
            )
    if keep_recorded:
        conflicts += [
            f"refund {int(key.rpartition(':')[2]) + 1} was already {_recorded_text(entry)}; it cannot be left out. "
            "Approve it as it stands (the same key is sent again), or reject."
            for key, entry in recorded.items()
            if entry.status != LedgerEntry.Status.FAILED
        ]
    return RecordedRefunds(new=new, conflicts=conflicts)


def _recorded_text(entry: LedgerEntry) -> str:
    what = f"{entry.amount} {entry.currency} on order {entry.order_id} (key {entry.key})"
    match entry.status:
        case LedgerEntry.Status.PENDING:
            return f"sent to the shop as {what} and its outcome is unknown"
        case LedgerEntry.Status.DONE:
            return f"executed as {what}"
        case _:
            return f"refused by the shop as {what}"


def refunds_recorded_pending(*, run_id: str) -> bool:
    """Whether the run has a refund sent to the shop whose outcome is still unknown."""
    return any(entry.status == LedgerEntry.Status.PENDING for entry in refunds_recorded(run_id))


def refunds_pending_leave(*, run_id: str, decision: str, by: str) -> int:
    """A person ended the run without the run's pending refunds (a rejection, an expiry): nothing more is sent for
    them, and each row stays PENDING — counted by the policy as if done, since the shop may have executed it — with
    its evidence and who decided, until someone settles it against the shop's own record. Returns the rows noted."""
    noted = 0
    for entry in refunds_recorded(run_id):
        if entry.status == LedgerEntry.Status.PENDING:
            left = {"decision": decision, "by": by, "at": timezone.now().isoformat()}
            noted += ledger_settle(
                key=entry.key, status=LedgerEntry.Status.PENDING, result={**entry.result, "left": left}
            )
    return noted
