"""The Redis result backend, without a pub/sub subscription per task sent.

Celery's Redis backend subscribes to every sent task's result channel so that the
sender can `.get()` it. Switchboard never waits on a result where it sends tasks
(web requests, the supervisor), and with Redis down that subscription makes a
request hang and then leaves the process unable to send until restarted. The
subscription happens on `.get()` instead (tests and operators' scripts).
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend


class SwitchboardRedisBackend(RedisBackend):
    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None


def backend_url(url: str) -> str:
    """The setting value that selects this class for a redis:// (or rediss://) URL."""
    if url.startswith(("redis://", "rediss://")):
        return f"project.celery_backend:SwitchboardRedisBackend+{url}"
    return url
