"""Throttles: per client IP for everyone, per customer for signed-in callers, and for posting messages.

Rates are settings (THROTTLE_IP_RATE, THROTTLE_CUSTOMER_RATE, THROTTLE_MESSAGE_RATE);
counters live in Redis (the cache), shared by every web process. A throttled
request gets 429 with Retry-After.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class SettingsRateThrottle(SimpleRateThrottle):
    """Reads its rate from settings.THROTTLE_RATES when it runs (not once at import), and fails open:
    with Redis (the counters) unreachable, requests are let through rather than all refused."""

    def get_rate(self) -> str | None:
        return settings.THROTTLE_RATES.get(self.scope)

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except RedisError as exc:
            logger.warning("throttle %s not applied: its counters are unreachable (%s)", self.scope, exc)
            return True


class PerIPThrottle(SettingsRateThrottle):
    scope = "ip"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class PerCustomerThrottle(SettingsRateThrottle):
    scope = "customer"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None  # the IP throttle covers anonymous callers
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class MessagePostThrottle(PerCustomerThrottle):
    """Posting messages starts runs (LLM spending): a tighter rate, per customer."""

    scope = "message"

    def allow_request(self, request: Any, view: Any) -> bool:
        return request.method != "POST" or super().allow_request(request, view)
