"""Throttles: per client IP for everyone, per customer for signed-in callers, and for posting messages.

Rates are settings (THROTTLE_IP_RATE, THROTTLE_CUSTOMER_RATE, THROTTLE_MESSAGE_RATE);
counters live in Redis (the cache), shared by every web process. A throttled
request gets 429 with Retry-After. Throttles that need no caller (`needs_caller`
False: per IP) run before authentication, so a request they refuse costs no
database query (`api.views.APIView`; the event stream counts its openings in the
same per-IP counter before it authenticates, `api.streams.stream_ip_count`). The
health endpoint counts only requests with credentials: probes are never throttled.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from project import metrics
from project.caching import redis_client

logger = logging.getLogger(__name__)

KEY_PREFIX = "switchboard:"


def counter_hit(key: str, window_seconds: int) -> tuple[int, int]:
    """Count one request in `key`'s current window (started by its first request, `window_seconds`
    long); return the count so far and the seconds left in the window. One round trip."""
    return counters_hit([(key, window_seconds)])[0]


def counters_hit(counters: list[tuple[str, int]]) -> list[tuple[int, int]]:
    """`counter_hit` for several (key, window) at once: one round trip for all."""
    pipe = redis_client(settings.CACHES["default"]["LOCATION"], 1.0).pipeline(transaction=False)
    for key, window_seconds in counters:
        pipe.set(KEY_PREFIX + key, 0, ex=window_seconds, nx=True)
        pipe.incr(KEY_PREFIX + key)
        pipe.ttl(KEY_PREFIX + key)
    replies = pipe.execute()
    return [(int(replies[3 * i + 1]), int(replies[3 * i + 2])) for i in range(len(counters))]


def _count_throttled(scope: str) -> None:
    metrics.THROTTLED.labels(scope=scope).inc()


def throttle_needs_caller(throttle: BaseThrottle) -> bool:
    """Whether `throttle` reads the authenticated caller (any throttle not of ours is assumed to)."""
    return getattr(throttle, "needs_caller", True)


class SettingsRateThrottle(SimpleRateThrottle):
    """A fixed-window counter per caller in Redis: one round trip per request whatever the rate.

    (DRF's SimpleRateThrottle keeps the time of every request in the window and rewrites that list
    on each request: its cost grows with the rate.) A window may let through up to twice the rate
    across its boundary with the next one, the usual price of a fixed window. Reads its rate from
    settings.THROTTLE_RATES when it runs (not once at import), and fails open: with Redis (the
    counters) unreachable, requests are let through rather than all refused.
    """

    scope: str
    #: Whether the throttle reads the authenticated caller (request.user): if not, it runs before
    #: authentication.
    needs_caller: bool = True
    # Set by SimpleRateThrottle.__init__ from the rate (used only when there is one).
    num_requests: int
    duration: int
    retry_after: float = 0.0

    def get_rate(self) -> str | None:
        return settings.THROTTLE_RATES.get(self.scope)

    def counter_key(self, request: Any, view: Any) -> str | None:
        """The counter this request counts in; None when the throttle does not apply to it."""
        return None if self.rate is None else self.get_cache_key(request, view)

    def allow_request(self, request: Any, view: Any) -> bool:
        return not throttles_refusing([self], request, view)

    def verdict(self, count: int, ttl: int) -> bool:
        """Whether a request that made the count `count` (the window with `ttl` seconds left) may pass."""
        if count <= self.num_requests:
            return True
        self.retry_after = max(1, ttl if ttl > 0 else self.duration)
        return False

    def wait(self) -> float:
        return self.retry_after


class PerIPThrottle(SettingsRateThrottle):
    scope = "ip"
    needs_caller = False

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def credentials_sent(request: Any) -> bool:
    """Whether the request carries anything the API's authenticators would look up in the database: an
    Authorization header (a token) or the session cookie."""
    return "HTTP_AUTHORIZATION" in request.META or settings.SESSION_COOKIE_NAME in request.COOKIES


class PerIPCredentialsThrottle(PerIPThrottle):
    """The per-IP throttle (the same counter) for requests that carry credentials, before they are looked up;
    requests without any pass uncounted. For the health endpoint: a flood of bad tokens is refused before each
    costs a query, while a probe (anonymous) is never answered 429 however busy its address is."""

    def counter_key(self, request: Any, view: Any) -> str | None:
        return super().counter_key(request, view) if credentials_sent(request) else None


class PerCustomerThrottle(SettingsRateThrottle):
    scope = "customer"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None  # the IP throttle covers anonymous callers
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class MessagePostThrottle(PerCustomerThrottle):
    """Posting messages starts runs (LLM spending): a tighter rate, per customer."""

    scope = "message"

    def counter_key(self, request: Any, view: Any) -> str | None:
        return super().counter_key(request, view) if request.method == "POST" else None


def throttles_refusing(throttles: list[BaseThrottle], request: Any, view: Any) -> list[BaseThrottle]:
    """The throttles among `throttles` that refuse this request; every one counts it. Ours (SettingsRateThrottle)
    count in one Redis round trip together, and fail open when the counters are unreachable; any other throttle
    is asked on its own."""
    ours = [t for t in throttles if isinstance(t, SettingsRateThrottle)]
    refusing = [t for t in throttles if not isinstance(t, SettingsRateThrottle) and not t.allow_request(request, view)]
    counted = [(throttle, key) for throttle in ours if (key := throttle.counter_key(request, view)) is not None]
    if counted:
        try:
            hits = counters_hit([(key, throttle.duration) for throttle, key in counted])
        except RedisError as exc:
            scopes = [throttle.scope for throttle, _ in counted]
            logger.warning("throttles %s not applied: their counters are unreachable (%s)", scopes, exc)
        else:
            refusing += [t for (t, _), (count, ttl) in zip(counted, hits, strict=True) if not t.verdict(count, ttl)]
    for throttle in refusing:  # bounded labels: the throttles' scopes
        metrics.count(partial(_count_throttled, getattr(throttle, "scope", None) or type(throttle).__name__))
    return refusing
