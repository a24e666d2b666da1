"""A circuit breaker per remote dependency, its state in Redis (shared by every worker): per LLM provider and model
(`openai:<model>`, agents/llm/breaker.py gives it the LLM's defaults), per remote A2A agent (`a2a:<name>`,
agents/remote.py), per MCP server (`mcp:<name>`) and per shop API (`commerce:<url>`, conversations/commerce_http.py).
Here, in the lowest layer, so that the domain's adapters may use it as the agents do.

closed: calls go through; consecutive failures are counted. After `threshold` in a
row it opens: calls fail at once with its `open_error` (a `Postponed` error: the step
waits, using up no retry; no request is sent) for `cooldown` seconds.
Then it is half-open: one caller at a time is let through as a probe; success closes
it, failure opens it again.
"""

from __future__ import annotations

import random
import time

from django.conf import settings

from project.caching import redis_client
from project.errors import Postponed

KEY_PREFIX = "switchboard:breaker:"
#: A Redis set of the names of breakers that ever failed: what `/metrics` reads (`orchestration.metrics_state`).
NAMES_KEY = "switchboard:breakers"
# State outlives any cool-down but not forever.
STATE_TTL_SECONDS = 24 * 3600


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        threshold: int,
        cooldown: float,
        call_seconds: float,
        open_error: type[Postponed],
    ) -> None:
        """`name` is the dependency's key (`openai:gpt-4o-mini`, `a2a:warranty_desk`); `threshold` failures in a row
        open it for `cooldown` seconds; `call_seconds` is the longest a call may take (a probe that never reports back
        frees its slot after twice that); `open_error` is what a paused call raises."""
        self.name = name
        self.key = KEY_PREFIX + name
        self.probe_key = self.key + ":probe"
        self.client = redis_client(settings.REDIS_URL)
        self.threshold = threshold
        self.cooldown = cooldown
        self.call_seconds = call_seconds
        self.open_error = open_error

    def before_call(self) -> bool:
        """Raise `open_error` if calls are paused; return True if this call is the half-open probe."""
        data = self.client.hgetall(self.key)
        if data.get(b"state") != b"open":
            return False
        waited = time.time() - float(data.get(b"opened_at", b"0"))
        if waited < self.cooldown:
            raise self.open_error(
                f"{self.name} failed {self.threshold} times in a row; calls are paused for "
                f"{self.cooldown - waited:.0f} more seconds.",
                retry_after=self.cooldown - waited + random.uniform(0, 1),
            )
        probe_ttl = int(self.call_seconds * 2) + 5
        if not self.client.set(self.probe_key, "1", nx=True, ex=probe_ttl):
            raise self.open_error(
                f"{self.name} is being probed after failures; calls are paused until it answers.",
                retry_after=random.uniform(1, 3),
            )
        return True

    def record_success(self) -> None:
        self.client.delete(self.key, self.probe_key)

    def record_failure(self, probing: bool) -> None:
        with self.client.pipeline() as pipe:
            pipe.hincrby(self.key, "failures", 1)
            pipe.expire(self.key, STATE_TTL_SECONDS)
            pipe.sadd(NAMES_KEY, self.name)  # the breakers there are, for the metrics (no scan of the keyspace)
            failures = pipe.execute()[0]
        if probing or failures >= self.threshold:
            self.client.hset(self.key, mapping={"state": "open", "opened_at": str(time.time())})
            self.client.delete(self.probe_key)
