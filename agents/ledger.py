"""Side effects happen once per idempotency key (`LedgerEntry`); the refunds recorded are what the refund
policy counts (automatic ones) and what the second approval counts (reviewers' ones).

A database effect (storing a reply, recording a refund) runs in the same
transaction as its ledger row: both happen or neither does, and a second call
with the key returns the first call's result without running the effect. A
remote effect (a refund through a shop's API, an acting MCP tool) is recorded as
requested and committed before it is sent (`ledger_request`), then sent with its
key and settled (`ledger_send`): no transaction waits on the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet, Sum
from django.utils import timezone

from agents.models import LedgerEntry
from conversations.refunds import RefundAuthority, RefundHistory
from project import recording
from project.errors import PermanentError, TransientError

REFUND = "refund"


def ledger_once(
    *,
    key: str,
    kind: str,
    run_id: str,
    request: dict[str, Any],
    effect: Callable[[], dict[str, Any]],
    columns: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Run `effect` unless an effect with this key was recorded; return (result, executed).

    `columns` are further fields of the row (a refund's order, amount and approver), written with it."""
    existing = LedgerEntry.objects.filter(key=key).first()
    if existing is not None:
        return existing.result, False
    with transaction.atomic():
        try:
            with transaction.atomic():
                entry = LedgerEntry.objects.create(
                    key=key, kind=kind, run_id=run_id, request=request, **(columns or {})
                )
        except IntegrityError:
            # A concurrent call with the same key committed first: its result stands.
            return LedgerEntry.objects.get(key=key).result, False
        entry.result = effect()
        entry.save(update_fields=["result"])
    return entry.result, True


def ledger_results(keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The recorded results of the effects with these keys (those done)."""
    done = LedgerEntry.objects.filter(key__in=list(keys), status=LedgerEntry.Status.DONE)
    return dict(done.values_list("key", "result"))


def ledger_statuses(keys: Iterable[str]) -> dict[str, str]:
    """The status of each effect with these keys that has a row (done, pending or failed)."""
    return dict(LedgerEntry.objects.filter(key__in=list(keys)).values_list("key", "status"))


def ledger_request(
    *, key: str, kind: str, run_id: str, request: dict[str, Any], columns: Mapping[str, Any] | None = None
) -> None:
    """Record a remote effect as requested (PENDING), before it is sent: committed, it makes every later try send
    the same key, and the policy count it, whatever becomes of the process sending it. The caller holds the locks
    and has checked that no row has the key."""
    LedgerEntry.objects.create(
        key=key, kind=kind, run_id=run_id, request=request, status=LedgerEntry.Status.PENDING, **(columns or {})
    )


def ledger_settle(*, key: str, status: str, result: dict[str, Any]) -> int:
    """Record a pending effect's outcome (DONE with its result, FAILED with the evidence) or, still PENDING, the
    evidence so far; a row already settled is left as it is. Returns the rows changed (0 or 1)."""
    pending = LedgerEntry.objects.filter(key=key, status=LedgerEntry.Status.PENDING)
    return pending.update(status=status, result=result)


def ledger_send(
    *,
    key: str,
    send: Callable[[LedgerEntry], dict[str, Any]],
    describe: Callable[[LedgerEntry], str],
    unavailable: type[TransientError],
    refused: type[PermanentError],
) -> dict[str, Any]:
    """Send a remote effect recorded as requested (`ledger_request`, committed) with its key, and record its outcome;
    one done before returns its result, one refused before is never sent again (`refused` is raised).

    `send(entry)` acts (sending `entry.key` as the idempotency key) and returns the result: the row is DONE with it.
    `refused` (the remote said no): FAILED with the evidence, and re-raised. `unavailable` (no answer: unreachable,
    5xx, timeout): the row stays PENDING with the evidence (tries, error, at) and `unavailable` is raised again, so
    the step retries with backoff and sends the same key, never a new one; when the retries run out the agent hands
    the run to a person with that evidence (`Agent.review_when_exhausted`). Any other PermanentError (an answer that
    makes no sense): the outcome stays unknown, the row PENDING with the evidence, for a person. `describe(entry)`
    names the effect in those errors."""
    entry = LedgerEntry.objects.get(key=key)
    if entry.status == LedgerEntry.Status.DONE:
        return entry.result
    if entry.status == LedgerEntry.Status.FAILED:
        raise refused(f"{describe(entry)} was refused before: {entry.result.get('error', '')}")
    try:
        result = send(entry)
    except unavailable as exc:
        tries = int(entry.result.get("tries", 0)) + 1
        evidence = {"outcome": "unknown", "tries": tries, "error": exc.message[:500], "at": timezone.now().isoformat()}
        ledger_settle(key=key, status=LedgerEntry.Status.PENDING, result=evidence)
        raise unavailable(
            f"{describe(entry)}: outcome unknown after {tries} tries ({exc.message}); it is sent again with the same "
            "key, never a new one."
        ) from exc
    except refused as exc:
        ledger_settle(key=key, status=LedgerEntry.Status.FAILED, result={"error": exc.message[:500]})
        raise
    except PermanentError as exc:
        evidence = {"outcome": "unknown", "error": exc.message[:500], "at": timezone.now().isoformat()}
        ledger_settle(key=key, status=LedgerEntry.Status.PENDING, result=evidence)
        raise
    ledger_settle(key=key, status=LedgerEntry.Status.DONE, result=result)
    return result


def ledger_refund_history(*, customer_id: str, order_ids: Iterable[str], now: datetime | None = None) -> RefundHistory:
    """What agents refunded automatically before: on each of these orders ever, and to the customer within the
    last REFUND_AUTO_WINDOW_DAYS days (face value, every currency). Reviewer-approved refunds are not counted."""
    # Pending refunds count (they may have happened); refunds the shop refused (failed) do not.
    automatic = _as_of_replay(LedgerEntry.objects.filter(kind=REFUND, approved_by=RefundAuthority.AUTOMATIC)).exclude(
        status=LedgerEntry.Status.FAILED
    )
    by_order = (
        automatic.filter(order_id__in=sorted(set(order_ids)))
        .values("order_id")
        .annotate(total=Sum("amount"))
        .values_list("order_id", "total")
    )
    replay = recording.replaying()
    now = now or (replay.as_of if replay is not None else None) or timezone.now()
    since = now - timedelta(days=settings.REFUND_AUTO_WINDOW_DAYS)
    window = automatic.filter(customer_id=str(customer_id), created_at__gte=since).aggregate(total=Sum("amount"))
    pending = (
        _as_of_replay(LedgerEntry.objects.filter(kind=REFUND, status=LedgerEntry.Status.PENDING))
        .filter(order_id__in=sorted(set(order_ids)))
        .values("order_id")
        .annotate(total=Sum("amount"))
        .values_list("order_id", "total")
    )
    return RefundHistory(
        automatic_by_order={order_id: total or Decimal("0") for order_id, total in by_order},
        automatic_for_customer=window["total"] or Decimal("0"),
        pending_by_order={order_id: total or Decimal("0") for order_id, total in pending},
    )


def ledger_reviewer_refunds(*, order_ids: Iterable[str]) -> dict[str, Decimal]:
    """What was refunded on each of these orders, ever, on a reviewer's approval (the orders with any): what a
    reviewer's next refunds of them are added to before the second approval's threshold
    (`orchestration.reviews.needs_second_approval`)."""
    reviewed = _as_of_replay(LedgerEntry.objects.filter(kind=REFUND, approved_by=RefundAuthority.REVIEWER)).exclude(
        status=LedgerEntry.Status.FAILED
    )
    rows = (
        reviewed.filter(order_id__in=sorted(set(order_ids)))
        .values("order_id")
        .annotate(total=Sum("amount"))
        .values_list("order_id", "total")
    )
    return {order_id: total for order_id, total in rows if total}


def ledger_refunds_of_orders(*, order_ids: Iterable[str], limit: int = 50) -> list[LedgerEntry]:
    """The refunds the ledger recorded on these orders (any approver, any status), newest first, at most `limit`:
    what a reviewer reads as an order's refund history beside a proposed refund."""
    entries = LedgerEntry.objects.filter(kind=REFUND, order_id__in=sorted(set(order_ids)))
    return list(entries.order_by("-created_at", "-id")[:limit])


def _as_of_replay(entries: QuerySet[LedgerEntry]) -> QuerySet[LedgerEntry]:
    """In a replay, the ledger as it was when the replayed run started (not counting what it, or later runs, did)."""
    replay = recording.replaying()
    if replay is None or replay.as_of is None:
        return entries
    return entries.filter(created_at__lt=replay.as_of)
