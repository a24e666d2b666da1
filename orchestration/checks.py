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
    # The deadline watchdog and retries wait in a worker, unacknowledged, for their countdown.
    longest_wait = max(longest_step, settings.RUN_DEADLINE_SECONDS + 1, settings.AGENT_RETRY_BACKOFF_MAX_SECONDS)
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
