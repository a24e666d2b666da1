"""The side-effect ledger: every effect an agent has on the world, once per idempotency key."""

from __future__ import annotations

from django.db import models

from conversations.refunds import RefundAuthority


class LedgerEntry(models.Model):
    """One side effect (a reply stored, a refund executed), keyed so it happens once."""

    class Status(models.TextChoices):
        DONE = "done"
        # A remote effect (a refund through the shop's API) asked for and not yet answered: its outcome is unknown
        # until the same key is sent again (`agents.tools.refunds`). Counted by the refund policy as if done.
        PENDING = "pending"
        # A remote effect the other side refused for good (a 4xx): nothing happened; the result holds the evidence.
        FAILED = "failed"

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
    # Refunds only (blank otherwise): which order, whose, how much, and who approved it. The refund policy sums
    # these (`agents.ledger.ledger_refund_history`): automatic refunds count against the agents' limits, reviewers'
    # toward the second approval (`agents.ledger.ledger_reviewer_refunds`). Read-only in the admin.
    order_id = models.CharField(max_length=32, blank=True)
    customer_id = models.CharField(max_length=64, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    approved_by = models.CharField(max_length=16, choices=RefundAuthority.choices, blank=True)
    # The reviewer's username (two, "first + second", when a second approval was needed); blank for automatic.
    approver = models.CharField(max_length=320, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["order_id", "approved_by"], name="ledger_refund_order"),
            models.Index(fields=["customer_id", "approved_by", "created_at"], name="ledger_refund_customer"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"
