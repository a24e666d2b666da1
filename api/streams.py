"""What bounds the live-progress streams (api/events.py): who may open one, and the Redis channels that
wake an open stream when its run changes, so that a waiting stream holds no database connection.

Admission is counted in Redis, shared by every web process: per client IP, in the API's per-IP throttle,
before the caller is authenticated; per customer, SSE_OPENS_PER_MINUTE openings (a fixed window,
`api.throttles.counter_hit`, counted before the run is looked up) and SSE_MAX_STREAMS_PER_CUSTOMER
streams open at once; SSE_MAX_STREAMS open in total. An open stream holds a
slot: a member of two sorted sets (the customer's and everyone's) scored by when it expires — its
lifetime plus a margin — and gives it back when it ends; the slot of a stream that never started (its
client left at once) or whose process died frees itself. Without Redis no stream opens (503: poll instead).

Wake-ups: `changed_publish_many` sends a "changed" ping on a run's or a conversation's channel (see
api/signals.py); `Wakeups` is one stream's subscription (redis.asyncio: waiting holds no thread).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from dataclasses import dataclass

import redis.asyncio
from django.conf import settings
from django.http import HttpRequest
from redis.exceptions import RedisError
from rest_framework import exceptions

from api.throttles import PerIPThrottle, counter_hit
from project.caching import redis_client

logger = logging.getLogger(__name__)

STREAMS_KEY = "switchboard:throttle_streams"
#: How long past its lifetime a slot is counted if its stream never released it (a process died).
SLOT_MARGIN_SECONDS = 30
#: Retry-After when Redis, which counts the streams, cannot be reached.
UNAVAILABLE_RETRY_SECONDS = 5

# Prune expired slots, refuse when the customer's (1) or everyone's (2) set is full — answering with the
# expiry of its oldest slot — else add the slot to both. Atomic: parallel openings cannot overshoot.
ADMIT_SCRIPT = """
local now = tonumber(ARGV[1])
local limits = {tonumber(ARGV[4]), tonumber(ARGV[5])}
for i = 1, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) >= limits[i] then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    return {i, oldest[2] or ARGV[2]}
  end
end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2]) - now))
end
return {0, ARGV[2]}
"""


@dataclass(frozen=True)
class Slot:
    """An open stream's place in the counts, given back by `stream_release`."""

    customer_id: uuid.UUID
    """Whose stream it is (the customer's id)."""
    member: str
    """Its member in the customer's and everyone's sorted sets."""


@dataclass(frozen=True)
class Refused:
    """No stream: too many openings or open streams (429), or nothing to count them with (503)."""

    status: int
    """429 or 503."""
    code: str
    """The error code of the JSON error body."""
    message: str
    """Why, for the error body."""
    retry_after: int
    """Seconds after which trying again may succeed (the Retry-After header)."""


def customer_key(customer_id: uuid.UUID) -> str:
    return f"{STREAMS_KEY}:customer:{customer_id}"


def everyone_key() -> str:
    return f"{STREAMS_KEY}:all"


def unavailable(exc: RedisError) -> Refused:
    logger.warning("event stream refused: its counters are unreachable (%s)", exc)
    message = "Live progress is unavailable right now; poll GET /api/v1/runs/{id}/ instead."
    return Refused(503, "unavailable", message, UNAVAILABLE_RETRY_SECONDS)


def stream_opening_count(*, customer_id: uuid.UUID) -> Refused | None:
    """Count an opening of the customer's (every one, even of a run that is not theirs): refused past
    SSE_OPENS_PER_MINUTE. One Redis round trip, before any lookup."""
    try:
        opened, window_left = counter_hit(f"throttle_stream_open_{customer_id}", 60)
    except RedisError as exc:
        return unavailable(exc)
    if opened > settings.SSE_OPENS_PER_MINUTE:
        message = f"More than {settings.SSE_OPENS_PER_MINUTE} event streams opened in a minute."
        return Refused(429, "throttled", message, max(1, window_left))
    return None


def stream_ip_count(request: HttpRequest) -> Refused | None:
    """Count an opening in the API's per-IP throttle (THROTTLE_IP_RATE, the counter every API request from the
    address counts in): refused past it, before the caller is authenticated, so that a flood of bad tokens costs
    no database query. One Redis round trip; with Redis unreachable, let through (as the API's throttles)."""
    throttle = PerIPThrottle()
    if throttle.allow_request(request, None):
        return None
    wait = math.ceil(throttle.wait())
    return Refused(429, "throttled", str(exceptions.Throttled(wait).detail), wait)


def stream_slot_take(*, customer_id: uuid.UUID) -> Slot | Refused:
    """A slot for a new stream of the customer's, or refused: their streams or everyone's are at the limit.
    One Redis round trip."""
    now = time.time()
    expires = now + settings.SSE_MAX_SECONDS + SLOT_MARGIN_SECONDS
    member = uuid.uuid4().hex
    try:
        full, oldest = redis_client(settings.CACHES["default"]["LOCATION"], 1.0).eval(
            ADMIT_SCRIPT,
            2,
            customer_key(customer_id),
            everyone_key(),
            now,
            expires,
            member,
            settings.SSE_MAX_STREAMS_PER_CUSTOMER,
            settings.SSE_MAX_STREAMS,
        )
    except RedisError as exc:
        return unavailable(exc)
    if int(full) == 0:
        return Slot(customer_id=customer_id, member=member)
    # The oldest stream ends by its lifetime at the latest, freeing a slot.
    retry_after = max(1, math.ceil(float(oldest) - SLOT_MARGIN_SECONDS - now))
    if int(full) == 1:
        limit = settings.SSE_MAX_STREAMS_PER_CUSTOMER
        return Refused(429, "too_many_streams", f"You have {limit} event streams open; close one first.", retry_after)
    return Refused(429, "too_many_streams", "The server has as many event streams open as it allows.", retry_after)


def stream_release(slot: Slot) -> None:
    """Give a stream's slot back (if Redis is unreachable, it expires by itself)."""
    try:
        pipe = redis_client(settings.CACHES["default"]["LOCATION"], 1.0).pipeline(transaction=False)
        pipe.zrem(customer_key(slot.customer_id), slot.member)
        pipe.zrem(everyone_key(), slot.member)
        pipe.execute()
    except RedisError as exc:
        logger.warning("event stream slot not released, it expires by itself (%s)", exc)


def run_channel(run_id: object) -> str:
    """The channel pinged when a run, its steps or its review items change."""
    return f"switchboard:events:run:{run_id}"


def conversation_channel(conversation_id: object) -> str:
    """The channel pinged when a message is added to a conversation."""
    return f"switchboard:events:conversation:{conversation_id}"


def changed_publish_many(channels: list[str]) -> None:
    """Tell the streams listening on these channels to read again, in one round trip. A lost ping only delays them
    (SSE_POLL_SECONDS)."""
    try:
        pipe = redis_client(settings.REDIS_URL, 0.5).pipeline(transaction=False)
        for channel in channels:
            pipe.publish(channel, "changed")
        pipe.execute()
    except RedisError as exc:
        logger.warning("live-progress ping not sent, open streams poll instead (%s)", exc)


class Wakeups:
    """One stream's subscription to its channels. Without Redis (or when the subscription breaks) it
    degrades to waiting out the timeout: the stream then only polls."""

    def __init__(self, client: redis.asyncio.Redis | None, pubsub: redis.asyncio.client.PubSub | None) -> None:
        self.client = client
        self.pubsub = pubsub

    @classmethod
    async def subscribe(cls, channels: list[str]) -> Wakeups:
        client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        wakeups = cls(client, pubsub)
        try:
            await pubsub.subscribe(*channels)
        except (RedisError, OSError) as exc:
            logger.warning("live-progress stream not subscribed, it polls instead (%s)", exc)
            await wakeups.close()
        return wakeups

    async def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a ping: True if one came (pings already queued are taken
        with it: one read serves them all)."""
        if self.pubsub is None:
            await asyncio.sleep(timeout)
            return False
        try:
            if await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout) is None:
                return False
            while await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0) is not None:
                pass
            return True
        except (RedisError, OSError) as exc:
            logger.warning("live-progress subscription lost, the stream polls instead (%s)", exc)
            await self.close()
            return False

    async def close(self) -> None:
        pubsub, client = self.pubsub, self.client
        self.pubsub = self.client = None
        try:
            if pubsub is not None:
                await pubsub.aclose()
            if client is not None:
                await client.aclose()
        except (RedisError, OSError) as exc:
            logger.info("live-progress subscription closed with an error (%s)", exc)
