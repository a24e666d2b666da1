from django.contrib import admin

from agents.models import LedgerEntry


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ["key", "kind", "run_id", "status", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["key", "run_id"]
    readonly_fields = ["key", "kind", "run_id", "request", "result", "status", "created_at"]
