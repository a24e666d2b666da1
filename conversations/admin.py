from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from conversations.models import Conversation, Customer, Message, Order


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("created_at", "role", "content")
    readonly_fields = fields
    can_delete = False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["__str__", "user", "created_at"]
    search_fields = ["name", "user__email"]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "customer", "status", "created_at"]
    list_filter = ["status"]
    inlines = [MessageInline]


#: What no one edits here: money moves only through the ledger (a refund by the agents or a reviewer's
#: decision), which also sets the refund status; the total and currency are what the refund policy counts against.
ORDER_MONEY_FIELDS = ("total", "currency", "status", "refunded_amount", "status_before_refund")


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["id", "customer", "description", "total", "currency", "status", "refunded_amount"]
    list_filter = ["status"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:  # a new order: its price and first status, but nothing refunded yet
            return ("refunded_amount", "status_before_refund")
        return ("id", *ORDER_MONEY_FIELDS)
