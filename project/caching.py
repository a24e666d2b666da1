"""Process-wide memoisation that is safe under a thread pool."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

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
