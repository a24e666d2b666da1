"""Reads from the domain. Every customer-facing read is scoped to its customer. What agents read of orders comes
through the shop's interface (`conversations.shop.commerce_backend`): the demo tables or the shop's API."""

from __future__ import annotations

from typing import Any, TypedDict
from uuid import UUID

from django.db.models import QuerySet

from conversations.commerce import ShopOrder
from conversations.models import Conversation, Customer, Message, Order
from conversations.orders import order_id_valid
from conversations.shop import commerce_backend
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
    return Conversation.objects.filter(customer=customer, replay_of=None).order_by("-created_at")


def conversation_get(*, customer: Customer, conversation_id: object) -> Conversation:
    """The customer's conversation, or NotFound (also for another customer's)."""
    conversation_uuid = uuid_or_none(conversation_id)
    conversation = None
    if conversation_uuid is not None:
        conversation = Conversation.objects.filter(customer=customer, id=conversation_uuid, replay_of=None).first()
    if conversation is None:
        raise NotFound("Conversation not found.")
    return conversation


def message_list(*, conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.order_by("created_at", "id")


def conversation_transcript(*, conversation_id: UUID | str) -> QuerySet[Message]:
    """Every message of a conversation, oldest first (what a reviewer reads)."""
    return Message.objects.filter(conversation_id=conversation_id).order_by("created_at", "id")


class Turn(TypedDict):
    """One message of a conversation as agents see it."""

    role: str
    content: str


def message_history(*, conversation_id: UUID | str, limit: int = 10) -> list[Turn]:
    """The last messages of a conversation, oldest first, as role/content pairs."""
    rows = Message.objects.filter(conversation_id=conversation_id).order_by("-created_at", "-id")[:limit]
    return [Turn(role=m.role, content=m.content) for m in reversed(list(rows))]


def order_list(*, customer_id: str) -> list[ShopOrder]:
    """The customer's orders as the configured shop reports them (COMMERCE_BACKEND), newest first."""
    return commerce_backend().order_list(customer_id=customer_id)


def conversation_customer_id(*, conversation_id: str) -> str:
    """The id of the customer whose conversation this is (Conversation.DoesNotExist if none)."""
    return str(Conversation.objects.values_list("customer_id", flat=True).get(id=conversation_id))


def order_dict(order: Order | ShopOrder) -> dict[str, str]:
    """An order as agents see it in the customer's account facts (amounts as strings)."""
    return {
        "id": order.id,
        "description": order.description,
        "total": str(order.total),
        "currency": order.currency,
        "status": order.status,
        "refunded_amount": str(order.refunded_amount),
        "placed_at": order.placed_at.date().isoformat() if order.placed_at else "",
    }


def customer_facts(*, conversation_id: str) -> dict[str, object]:
    """What an agent may know about the customer of a conversation: name and own orders."""
    conversation = Conversation.objects.select_related("customer").get(id=conversation_id)
    customer = conversation.customer
    orders = [order_dict(order) for order in commerce_backend().order_list(customer_id=str(customer.id))]
    return {"customer_id": str(customer.id), "name": customer.name, "orders": orders}


def order_lookup(*, conversation_id: str, order_id: str) -> dict[str, Any]:
    """One order of the conversation's customer, as the tools agent reports it, or {"found": False, ...}:
    never another customer's data. An `order_id` not shaped like one (`ORDER_ID`) is not looked up: it is not
    found (a NUL or a lone surrogate from a model's arguments never reaches the database)."""
    customer_id = conversation_customer_id(conversation_id=conversation_id)
    if not order_id_valid(order_id):
        return {"order_id": order_id, "found": False, "note": "this is not an order number"}
    order = commerce_backend().orders_get(customer_id=customer_id, order_ids=[order_id]).get(order_id)
    if order is None:
        return {"order_id": order_id, "found": False, "note": "could not find this order on the customer's account"}
    fields = order_dict(order)
    del fields["id"], fields["placed_at"]
    return {"order_id": order.id, "found": True, **fields, "refundable": str(order.refundable)}


def order_currency(*, order_id: str) -> str | None:
    """The currency of an order, or None if there is no such order (or `order_id` is not shaped like an order id:
    then there is no query)."""
    if not order_id_valid(order_id):
        return None
    return Order.objects.filter(id=order_id).values_list("currency", flat=True).first()
