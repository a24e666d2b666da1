"""Side effects happen once per idempotency key (`LedgerEntry`).

A database effect (storing a reply, recording a refund) runs in the same
transaction as its ledger row: both happen or neither does, and a second call
with the key returns the first call's result without running the effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction

from agents.models import LedgerEntry


def ledger_once(
    *, key: str, kind: str, run_id: str, request: dict[str, Any], effect: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], bool]:
    """Run `effect` unless an effect with this key was recorded; return (result, executed)."""
    existing = LedgerEntry.objects.filter(key=key).first()
    if existing is not None:
        return existing.result, False
    with transaction.atomic():
        try:
            with transaction.atomic():
                entry = LedgerEntry.objects.create(key=key, kind=kind, run_id=run_id, request=request)
        except IntegrityError:
            # A concurrent call with the same key committed first: its result stands.
            return LedgerEntry.objects.get(key=key).result, False
        entry.result = effect()
        entry.save(update_fields=["result"])
    return entry.result, True
