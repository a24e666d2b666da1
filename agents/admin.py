"""The side-effect ledger in Django admin: view only, for everyone (superusers included).

The ledger is the record the refund policy counts: who approved each refund (automatic or reviewer), how much, on
which order and for which customer, and each key's once-only guard. Changing a row (approved_by from automatic to
reviewer, an amount, an order or a customer) or deleting one would reset the history the refund limits and the
second approval count, or let an effect run twice; rows are written only by `agents.ledger.ledger_once`.
"""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from agents.models import LedgerEntry


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ["key", "kind", "status", "order_id", "amount", "currency", "approved_by", "approver", "created_at"]
    list_filter = ["kind", "status", "approved_by"]
    search_fields = ["key", "run_id", "order_id", "customer_id"]
    readonly_fields = [field.name for field in LedgerEntry._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Nobody adds ledger rows here: effects record their own."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nobody changes a ledger row, superusers included: the page is view only."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nobody deletes a ledger row (no delete page, no bulk delete), superusers included."""
        return False
