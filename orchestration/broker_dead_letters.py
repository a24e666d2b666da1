"""RabbitMQ's dead letters into ours: a consumer, in every worker, of the queue RabbitMQ dead-letters into.

On RabbitMQ the agents' queues are quorum queues with a delivery limit (project.celery.task_queues): a message
returned more than BROKER_DELIVERY_LIMIT times (its worker died with it each time, or rejected it) is moved by the
broker to the `switchboard.dead` exchange, at least once. This consumer records each such message as a `DeadLetter`
(reason `delivery_limit`, with the broker's account of why in `x-death`) and gives up its step and run if they still
wait for it (`recovery.message_dead_lettered`); then it acknowledges the message. A database error requeues it.
Redis has no dead-letter queue: there, only the database's own cap (STEP_MAX_LOST) applies.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps
from django.conf import settings
from django.db import DatabaseError, connection
from kombu import Consumer, Message

from orchestration import recovery
from project.celery import app, broker_is_amqp, dead_letter_queue

logger = logging.getLogger(__name__)


def broker_death_detail(headers: dict[str, Any]) -> str:
    """Why RabbitMQ dead-lettered a message, from its headers: the reason, the queue, and how often."""
    deaths = headers.get("x-death") or []
    first = deaths[0] if deaths and isinstance(deaths[0], dict) else {}
    reason = first.get("reason") or headers.get("x-first-death-reason") or "unknown"
    queue = first.get("queue") or headers.get("x-first-death-queue") or "?"
    count = headers.get("x-delivery-count") or first.get("count") or "?"
    return f"RabbitMQ dead-lettered the message from queue {queue} ({reason}; deliveries: {count})"


class DeadLetterConsumer(bootsteps.ConsumerStep):
    """Consumes `switchboard.dead` in the worker's consumer (declared here, bound to its fanout exchange)."""

    def get_consumers(self, channel: Any) -> list[Consumer]:
        return [Consumer(channel, queues=[dead_letter_queue()], callbacks=[self.on_message], accept=["json"])]

    def on_message(self, body: Any, message: Message) -> None:
        headers = dict(message.headers or {})
        args = body[0] if isinstance(body, list | tuple) and body else None
        try:
            recovery.message_dead_lettered(
                task_name=str(headers.get("task") or "?"),
                task_id=str(headers.get("id") or message.delivery_tag),
                args=args,
                detail=broker_death_detail(headers),
            )
        except DatabaseError:
            logger.warning("a broker dead letter could not be recorded; it is requeued", exc_info=True)
            connection.close()
            time.sleep(1.0)  # the database is away: not a hot loop of requeues meanwhile
            message.requeue()
            return
        message.ack()


def dead_letter_consumer_install() -> None:
    """Add the consumer to every worker when the broker is RabbitMQ."""
    if broker_is_amqp(settings.CELERY_BROKER_URL):
        app.steps["consumer"].add(DeadLetterConsumer)
