"""kombu's Redis transport, with one fix: a channel whose connection is already gone says so with a connection error.

When Redis goes away, Celery's consumer closes its connection and reconnects. The old channel lives on a moment:
closing it hands its unacknowledged messages back to Redis, and a task still running acknowledges its message on it
when it ends. Both reach Redis through that channel's connection, which was released a moment before, and kombu
fails with `AttributeError: 'NoneType' object has no attribute 'hostname'` (in `_connparams`). Celery takes that for
an unrecoverable error and the worker process exits (kombu 5.7, seen under `make chaos`'s Redis restart; under
honcho one process exiting stops them all). Raised as a connection error instead, both paths are ones Celery
expects and logs; the messages are not lost: Redis hands them out again after its visibility timeout, and the
supervisor resumes their runs from the database within seconds.

Used for redis:// brokers through Celery's `broker_transport` (project/celery.py).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if getattr(self.connection, "client", None) is None:
            raise RedisConnectionError("the broker connection of this channel is closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]  # a private method the stubs omit


class RedisTransport(kombu_redis.Transport):
    Channel = Channel
