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
#: Nor whose the order is, or its record: the refund policy checks that an order is the customer's and counts each
#: customer's refunds in a window, so moving an order to another customer would escape that window (and let agents
#: refund it to someone else); the id is what the ledger's refunds are counted by; when it was placed and delivered
#: is history (reviewers read it beside a refund).
ORDER_RECORD_FIELDS = ("id", "customer", "placed_at", "delivered_at")


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Orders: a new one may be entered whole (nothing refunded yet); afterwards only its description, which moves
    no money and decides nothing, may be edited. An order with refunds is not deleted here (nor with its
    customer): deleting it and adding it again would reset what is left to refund on it."""

    list_display = ["id", "customer", "description", "total", "currency", "status", "refunded_amount"]
    list_filter = ["status"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        """On a new order its price and first status (nothing refunded yet); afterwards all but the description."""
        if obj is None:
            return ("refunded_amount", "status_before_refund")
        return (*ORDER_RECORD_FIELDS, *ORDER_MONEY_FIELDS)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nobody deletes an order with refunds, superusers included (the admin asks this of every order a
        delete would remove: one by one, in bulk, or with its customer)."""
        if obj is not None and obj.refunded_amount > 0:
            return False
        return super().has_delete_permission(request, obj)
