"""Writes to the domain: users and customers, conversations, messages, refunds, demo orders."""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.models import Conversation, Customer, Message, Order
from project.errors import Conflict, InvalidInput, PermanentError


def user_create(*, email: str, password: str | None = None, is_staff: bool = False) -> User:
    """Create a Django user whose username is their email address (lower case).

    InvalidInput if `email` is not an address, Conflict if such a user exists.
    Without a password the user cannot sign in with one (API tokens only).
    """
    email = email.strip().lower()
    if "@" not in email or len(email) > 150:
        raise InvalidInput(f"{email!r} is not an email address.")
    user_model = get_user_model()
    if user_model.objects.filter(username=email).exists():
        raise Conflict(f"A user {email} already exists.")
    return user_model.objects.create_user(username=email, email=email, password=password, is_staff=is_staff)


def customer_create(*, email: str, name: str = "", password: str | None = None) -> Customer:
    """Create a Django user (`user_create`) and its customer profile."""
    with transaction.atomic():
        user = user_create(email=email, password=password)
        return Customer.objects.create(user=user, name=name)


def conversation_create(*, customer: Customer) -> Conversation:
    return Conversation.objects.create(customer=customer)


#: Unicode categories of characters that show nothing on their own: format characters (zero-width spaces
#: and joiners, the BOM, bidi and tag characters), controls, spaces and separators, combining marks (with
#: nothing to combine with), surrogates, private-use and unassigned code points.
INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Mc", "Me"})
#: Letters and symbols that render blank although their category says otherwise: the Hangul fillers and
#: the blank Braille pattern.
BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def message_content_clean(content: object) -> str:
    """The customer's message as stored, or InvalidInput saying what is wrong (not a string, empty,
    nothing visible — only spaces, zero-width or other invisible characters — or too long)."""
    if not isinstance(content, str):
        raise InvalidInput("content must be a string.")
    content = content.strip()
    if not content:
        raise InvalidInput("content must not be empty.")
    if all(unicodedata.category(char) in INVISIBLE_CATEGORIES or char in BLANK_CHARACTERS for char in content):
        raise InvalidInput("content has nothing visible: only spaces, zero-width or other invisible characters.")
    if len(content) > settings.MESSAGE_MAX_CHARS:
        raise InvalidInput(f"content is {len(content)} characters; the limit is {settings.MESSAGE_MAX_CHARS}.")
    return content


def message_create(
    *, conversation_id: UUID | str, role: str, content: str, idempotency_key: str | None = None
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
    # No lookup first: the insert finds a repeated key (callers that must know before writing anything else, like
    # `conversation_message_post`, look it up themselves), so the usual new message costs no extra query.
    try:
        with transaction.atomic():
            message = Message.objects.create(
                conversation_id=conversation_id, role=role, content=content, idempotency_key=idempotency_key
            )
    except IntegrityError:
        # The key was used before (or a concurrent writer with it won the race): that is the message.
        return Message.objects.get(idempotency_key=idempotency_key), False
    Conversation.objects.filter(id=conversation_id).update(updated_at=timezone.now())
    return message, True


def refund_orders_lock(*, customer_id: str, order_ids: Iterable[str]) -> None:
    """Lock the customer's row, then the customer's orders among `order_ids` (in id order), until the
    transaction ends. Every refund of a customer is decided and written under these locks, always taken in
    this order (customer, then orders by id), so that two runs refunding one order, or two orders of one
    customer, at once are decided one after the other and cannot together exceed a limit."""
    list(Customer.objects.select_for_update().filter(id=customer_id).values_list("id", flat=True))
    ids = sorted(set(order_ids))
    list(Order.objects.select_for_update().filter(id__in=ids, customer_id=customer_id).order_by("id").values("id"))


def order_refund(*, order_id: str, customer_id: str, amount: Decimal, currency: str | None) -> Order:
    """Write one refund that `conversations.refunds.refund_problems` allowed, and return the order.

    The caller holds the locks (`refund_orders_lock`) and decided the policy under them; this checks again what
    must never happen whatever was decided — another customer's order, another currency (None: the order's), a
    non-positive amount, more than the refundable remainder — and raises PermanentError, with nothing written.
    """
    order = Order.objects.select_for_update().filter(id=order_id, customer_id=customer_id).first()
    if order is None:
        raise PermanentError(f"refund refused: order {order_id} is not on this customer's account.")
    if (currency or order.currency) != order.currency or amount <= 0 or amount > order.refundable:
        raise PermanentError(
            f"refund refused: {amount} {currency} on order {order_id} ({order.refundable} {order.currency} left)."
        )
    if order.status not in (Order.Status.REFUNDED, Order.Status.PARTIALLY_REFUNDED):
        order.status_before_refund = order.status
    order.refunded_amount += amount
    order.status = Order.Status.REFUNDED if order.refunded_amount >= order.total else Order.Status.PARTIALLY_REFUNDED
    order.save(update_fields=["refunded_amount", "status", "status_before_refund"])
    return order


@dataclass(frozen=True)
class DemoItem:
    """Something the demo shop sells."""

    description: str
    """What the order is, e.g. 'Set of 4 enamel camping mugs'."""
    total: Decimal
    """Its price in EUR."""


_BACKPACK = DemoItem("Trailhead 40L hiking backpack", Decimal("89.90"))
_HEADPHONES = DemoItem("Aurora noise-cancelling headphones", Decimal("249.00"))
_MUGS = DemoItem("Set of 4 enamel camping mugs", Decimal("24.50"))
#: What demo orders are made of (in this order: a customer's demo orders are drawn from it by a seeded random).
DEMO_ITEMS = (
    _BACKPACK,
    _HEADPHONES,
    _MUGS,
    DemoItem("Nimbus 2-person tent", Decimal("329.00")),
    DemoItem("Merino wool base layer", Decimal("59.95")),
    DemoItem("Pocket espresso maker", Decimal("74.00")),
)
#: The demo customer's fixed orders (the README walks through them): one refundable by the
#: agents, one above the refund limit.
DEMO_CUSTOMER_ORDERS = (
    ("SB-10001", _MUGS, Order.Status.DELIVERED),
    ("SB-10002", _HEADPHONES, Order.Status.DELIVERED),
    ("SB-10003", _BACKPACK, Order.Status.SHIPPED),
)


def demo_delivered_at(status: str, placed_at: datetime) -> datetime | None:
    """When a demo order was delivered: two days after it was placed, if its status says it was."""
    return placed_at + timedelta(days=2) if status == Order.Status.DELIVERED else None


def order_create_demo(*, customer: Customer, count: int = 3) -> list[Order]:
    """Give a customer a few demo orders (ids like SB-10423), the same for the same customer."""
    rng = random.Random(str(customer.id))
    statuses = [Order.Status.DELIVERED, Order.Status.SHIPPED, Order.Status.PROCESSING]
    orders = []
    now = timezone.now()
    for index, item in enumerate(rng.sample(DEMO_ITEMS, k=min(count, len(DEMO_ITEMS)))):
        status = statuses[index % len(statuses)]
        placed_at = now - timedelta(days=3 + 9 * index)
        order = order_create_unique(
            draw_id=lambda: f"SB-{rng.randint(10000, 99999)}",
            customer=customer,
            description=item.description,
            total=item.total,
            status=status,
            placed_at=placed_at,
            delivered_at=demo_delivered_at(status, placed_at),
        )
        orders.append(order)
    return orders


def order_create_unique(*, draw_id: Callable[[], str], **fields: Any) -> Order:
    """Create an order under an id from `draw_id`, drawing again while the id is taken (another customer made at
    the same moment may draw it): each try in a savepoint, so the caller's transaction survives a taken id."""
    while True:
        try:
            with transaction.atomic():
                return Order.objects.create(id=draw_id(), **fields)
        except IntegrityError:
            continue  # taken: draw again


def order_create_demo_customer(*, customer: Customer) -> list[Order]:
    """Give the demo customer its fixed orders SB-10001 to SB-10003 (`DEMO_CUSTOMER_ORDERS`), placed ten days ago."""
    placed_at = timezone.now() - timedelta(days=10)
    return [
        Order.objects.create(
            id=order_id,
            customer=customer,
            description=item.description,
            total=item.total,
            status=status,
            placed_at=placed_at,
            delivered_at=demo_delivered_at(status, placed_at),
        )
        for order_id, item, status in DEMO_CUSTOMER_ORDERS
    ]
