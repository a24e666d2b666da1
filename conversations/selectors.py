"""Reads from the domain. Every customer-facing read is scoped to its customer."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from conversations.models import Conversation, Customer, Message, Order
from project.errors import NotFound
from project.ids import uuid_or_none


def customer_for_user(user: object) -> Customer | None:
    """The customer profile of a Django user, or None (staff, anonymous). No query when it was
    loaded with the user (API token authentication)."""
    try:
        return user.customer  # type: ignore[attr-defined]
    except (Customer.DoesNotExist, AttributeError):
        return None


def conversation_list(*, customer: Customer) -> QuerySet[Conversation]:
    return Conversation.objects.filter(customer=customer).order_by("-created_at")


def conversation_get(*, customer: Customer, conversation_id: object) -> Conversation:
    """The customer's conversation, or NotFound (also for another customer's)."""
    conversation_uuid = uuid_or_none(conversation_id)
    conversation = conversation_uuid and Conversation.objects.filter(customer=customer, id=conversation_uuid).first()
    if conversation is None:
        raise NotFound("Conversation not found.")
    return conversation


def message_list(*, conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.order_by("created_at", "id")


def conversation_transcript(*, conversation_id: uuid.UUID | str) -> QuerySet[Message]:
    """Every message of a conversation, oldest first (what a reviewer reads)."""
    return Message.objects.filter(conversation_id=conversation_id).order_by("created_at", "id")


def message_history(*, conversation_id: object, limit: int = 10) -> list[dict[str, str]]:
    """The last messages of a conversation, oldest first, as role/content pairs."""
    rows = Message.objects.filter(conversation_id=conversation_id).order_by("-created_at", "-id")[:limit]
    return [{"role": m.role, "content": m.content} for m in reversed(list(rows))]


def order_list(*, customer: Customer) -> QuerySet[Order]:
    return Order.objects.filter(customer=customer).order_by("-placed_at")


def customer_facts(*, conversation_id: object) -> dict[str, object]:
    """What an agent may know about the customer of a conversation: name and own orders."""
    conversation = Conversation.objects.select_related("customer").get(id=conversation_id)
    customer = conversation.customer
    orders = [
        {
            "id": order.id,
            "description": order.description,
            "total": str(order.total),
            "currency": order.currency,
            "status": order.status,
            "refunded_amount": str(order.refunded_amount),
            "placed_at": order.placed_at.date().isoformat(),
        }
        for order in order_list(customer=customer)
    ]
    return {"customer_id": str(customer.id), "name": customer.name, "orders": orders}
