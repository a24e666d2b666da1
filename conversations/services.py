"""Writes to the domain: customers, conversations, messages, demo orders."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.models import Conversation, Customer, Message, Order
from project.errors import Conflict, InvalidInput


def customer_create(*, email: str, name: str = "", password: str | None = None) -> Customer:
    """Create a Django user (username = email) and its customer profile."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 150:
        raise InvalidInput(f"{email!r} is not an email address.")
    user_model = get_user_model()
    with transaction.atomic():
        if user_model.objects.filter(username=email).exists():
            raise Conflict(f"A user {email} already exists.")
        user = user_model.objects.create_user(username=email, email=email, password=password)
        return Customer.objects.create(user=user, name=name)


def conversation_create(*, customer: Customer) -> Conversation:
    return Conversation.objects.create(customer=customer)


def message_content_clean(content: object) -> str:
    """The customer's message as stored, or InvalidInput saying what is wrong."""
    if not isinstance(content, str):
        raise InvalidInput("content must be a string.")
    content = content.strip()
    if not content:
        raise InvalidInput("content must not be empty.")
    if len(content) > settings.MESSAGE_MAX_CHARS:
        raise InvalidInput(f"content is {len(content)} characters; the limit is {settings.MESSAGE_MAX_CHARS}.")
    return content


def message_create(
    *, conversation_id: object, role: str, content: str, idempotency_key: str | None = None
) -> tuple[Message, bool]:
    """Store a message; with a key, a repeated call returns the first message.

    Returns (message, created).
    """
    if role not in Message.Role.values:
        raise InvalidInput(f"Unknown role {role!r}.")
    if idempotency_key is None:
        message = Message.objects.create(conversation_id=conversation_id, role=role, content=content)
        Conversation.objects.filter(id=conversation_id).update(updated_at=timezone.now())
        return message, True
    existing = Message.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            message = Message.objects.create(
                conversation_id=conversation_id, role=role, content=content, idempotency_key=idempotency_key
            )
    except IntegrityError:
        # A concurrent writer with the same key won the race: theirs is the message.
        return Message.objects.get(idempotency_key=idempotency_key), False
    Conversation.objects.filter(id=conversation_id).update(updated_at=timezone.now())
    return message, True


_DEMO_ITEMS = [
    ("Trailhead 40L hiking backpack", Decimal("89.90")),
    ("Aurora noise-cancelling headphones", Decimal("249.00")),
    ("Set of 4 enamel camping mugs", Decimal("24.50")),
    ("Nimbus 2-person tent", Decimal("329.00")),
    ("Merino wool base layer", Decimal("59.95")),
    ("Pocket espresso maker", Decimal("74.00")),
]


def order_create_demo(*, customer: Customer, count: int = 3, seed: int | None = None) -> list[Order]:
    """Give a customer a few demo orders (ids like SB-10423), for the demo and tests."""
    rng = random.Random(seed if seed is not None else str(customer.id))
    statuses = [Order.Status.DELIVERED, Order.Status.SHIPPED, Order.Status.PROCESSING]
    orders = []
    now = timezone.now()
    for index, (description, total) in enumerate(rng.sample(_DEMO_ITEMS, k=min(count, len(_DEMO_ITEMS)))):
        while True:
            order_id = f"SB-{rng.randint(10000, 99999)}"
            if not Order.objects.filter(id=order_id).exists():
                break
        orders.append(
            Order.objects.create(
                id=order_id,
                customer=customer,
                description=description,
                total=total,
                status=statuses[index % len(statuses)],
                placed_at=now - timedelta(days=3 + 9 * index),
            )
        )
    return orders
