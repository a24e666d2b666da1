"""Customers, their conversations and messages, and their orders."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models

from conversations.orders import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS


class Customer(models.Model):
    """A person who chats with the shop; tied one-to-one to a Django user."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="customer")
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name or self.user.get_username()


class Conversation(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        CLOSED = "closed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="conversations")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # A replay's throwaway copy of the conversation it replays (`orchestration.replay`): never shown to the customer.
    replay_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="replays")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["customer", "-created_at"])]

    def __str__(self) -> str:
        return f"conversation {self.id}"


class Message(models.Model):
    class Role(models.TextChoices):
        CUSTOMER = "customer"
        ASSISTANT = "assistant"
        HUMAN_AGENT = "human_agent"
        SYSTEM = "system"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField()
    # Writers that may run more than once (a redelivered agent message) pass a key:
    # the unique constraint makes the second write a no-op.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"


class Order(models.Model):
    class Status(models.TextChoices):
        PROCESSING = "processing"
        SHIPPED = "shipped"
        DELIVERED = "delivered"
        REFUNDED = "refunded"
        PARTIALLY_REFUNDED = "partially_refunded"

    id = models.CharField(primary_key=True, max_length=32)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    description = models.CharField(max_length=300)
    total = models.DecimalField(max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES)
    currency = models.CharField(max_length=3, default="EUR")
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.PROCESSING)
    refunded_amount = models.DecimalField(
        max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES, default=Decimal("0.00")
    )
    # The status before the first refund replaced it (processing, shipped or delivered): the refund policy reads
    # it for partially refunded orders. Blank for orders never refunded (or refunded before it was recorded).
    status_before_refund = models.CharField(max_length=24, choices=Status.choices, blank=True)
    placed_at = models.DateTimeField()
    # When it was delivered, as the shop knows it (null: not delivered, or not recorded); shown to reviewers.
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-placed_at"]

    def __str__(self) -> str:
        return self.id

    @property
    def refundable(self) -> Decimal:
        """What may still be refunded: the total less what was refunded already."""
        return self.total - self.refunded_amount
