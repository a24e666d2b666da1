"""System checks: delivery settings that would make Redis redeliver work still under way."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning as CheckWarning
from django.core.checks import register

from agents.registry import agents_all
from orchestration.routing import HARD_LIMIT_GRACE


@register()
def visibility_timeout_check(app_configs: Any = None, **kwargs: Any) -> list[CheckWarning]:
    longest_step = max(agent.time_limit for agent in agents_all().values()) + HARD_LIMIT_GRACE
    # Retries (and steps postponed while the LLM's breaker is open) wait in a worker, unacknowledged, for their
    # countdown.
    longest_wait = max(
        longest_step, settings.AGENT_RETRY_BACKOFF_MAX_SECONDS, settings.LLM_BREAKER_COOLDOWN_SECONDS + 1
    )
    if longest_wait < settings.BROKER_VISIBILITY_TIMEOUT:
        return []
    return [
        CheckWarning(
            f"BROKER_VISIBILITY_TIMEOUT is {settings.BROKER_VISIBILITY_TIMEOUT}s but a message may wait "
            f"{longest_wait:.0f}s unacknowledged (longest step, run deadline, retry backoff); Redis would "
            "deliver it a second time while the first delivery is still under way.",
            hint="Raise BROKER_VISIBILITY_TIMEOUT above that.",
            id="switchboard.W001",
        )
    ]
