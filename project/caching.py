"""Process-wide memoisation that is safe under a thread pool, and the Redis client built with it."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import redis

T = TypeVar("T")


def cached_once(function: Callable[..., T]) -> Callable[..., T]:
    """Like functools.cache, but when many threads miss at once (a burst on a fresh worker), the value
    is built once and the others wait for it — not once per thread (an OpenAI client builds an SSL
    context: about 20 ms of CPU each)."""
    cache: dict[Any, T] = {}
    lock = threading.Lock()

    @functools.wraps(function)
    def wrapper(*args: Any) -> T:
        try:
            return cache[args]
        except KeyError:
            pass
        with lock:
            if args not in cache:
                cache[args] = function(*args)
            return cache[args]

    return wrapper


#: Connections one process's client opens at most; past them a thread waits for one (up to the timeout) rather than
#: failing: a thousand threads of the `llm` worker each read and write the circuit breaker per LLM call (redis-py's
#: own pool raises "Too many connections" past its default of 100).
REDIS_CLIENT_MAX_CONNECTIONS = 100


@cached_once
def redis_client(url: str, timeout: float = 2.0) -> redis.Redis:
    """One client (one connection pool) per process and URL; redis-py clients are thread-safe.
    Short socket timeouts, so that callers that tolerate a Redis outage learn of it quickly."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_CLIENT_MAX_CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return redis.Redis(connection_pool=pool)
