"""Duplicate deliveries, made on the broker itself: a Celery task message sent by task name (protocol 2, built
here, so no task code is imported), and a copy of a message taken from a queue.

Both publish through the default exchange straight to a queue by name and declare nothing, so they work on Redis
and on RabbitMQ whatever arguments the product declares its queues with (quorum queues, delivery limits).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from kombu import Connection, Producer


def task_signature(name: str) -> dict[str, Any]:
    """A signature of a task by name with no arguments (the previous task's result is its argument)."""
    return {
        "task": name,
        "args": [],
        "kwargs": {},
        "options": {},
        "subtask_type": None,
        "immutable": False,
        "chord_size": None,
    }


def task_send(broker_url: str, queue: str, name: str, args: list[Any], chain: list[str] | None = None) -> str:
    """Send task `name` with `args` to `queue`; `chain` names the tasks that follow it, in order. Its task id."""
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "(chaos duplicate)",
        "kwargsrepr": "{}",
        "origin": "chaos",
        "ignore_result": False,
    }
    # Protocol 2 keeps the rest of a chain in reverse order (the next task last).
    embed = {
        "callbacks": None,
        "errbacks": None,
        "chain": [task_signature(next_name) for next_name in reversed(chain)] if chain else None,
        "chord": None,
    }
    body = json.dumps([args, {}, embed]).encode()
    with Connection(broker_url, connect_timeout=5) as connection:
        Producer(connection.default_channel).publish(
            body,
            exchange="",
            routing_key=queue,
            headers=headers,
            content_type="application/json",
            content_encoding="utf-8",
            correlation_id=task_id,
            delivery_mode=2,
            retry=False,
        )
    return task_id


def message_duplicate(broker_url: str, queues: list[str], copies: int = 2) -> dict[str, Any] | None:
    """Take one message waiting in the first queue that has one, publish it `copies` times (the same task id,
    headers and body), and acknowledge the original. None if every queue was empty."""
    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.default_channel
        for queue in queues:
            message = channel.basic_get(queue=queue, no_ack=False)
            if message is None:
                continue
            producer = Producer(channel)
            for _ in range(copies):
                producer.publish(
                    message.body,
                    exchange="",
                    routing_key=queue,
                    headers=dict(message.headers or {}),
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    correlation_id=message.properties.get("correlation_id"),
                    delivery_mode=2,
                    retry=False,
                )
            message.ack()
            headers = message.headers or {}
            return {"queue": queue, "task": headers.get("task"), "task_id": headers.get("id"), "copies": copies}
    return None
