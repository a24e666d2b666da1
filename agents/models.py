"""The side-effect ledger: every effect an agent has on the world, once per idempotency key."""

from __future__ import annotations

from django.db import models


class LedgerEntry(models.Model):
    """One side effect (a reply stored, a refund executed), keyed so it happens once."""

    class Status(models.TextChoices):
        DONE = "done"

    id = models.BigAutoField(primary_key=True)
    # E.g. "run:<run id>:reply" or "refund:<run id>:<action index>": the second try with a key finds the first.
    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=32, db_index=True)
    run_id = models.CharField(max_length=64, blank=True, db_index=True)
    # What the effect was asked to do, and what it produced.
    request = models.JSONField(default=dict)
    result = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DONE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"
