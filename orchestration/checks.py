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
    # A running step is the longest a message stays unacknowledged (retries wait as rows in the database, not as
    # countdown messages in a worker).
    longest_wait = max(agent.time_limit for agent in agents_all().values()) + HARD_LIMIT_GRACE
    if longest_wait < settings.BROKER_VISIBILITY_TIMEOUT:
        return []
    return [
        CheckWarning(
            f"BROKER_VISIBILITY_TIMEOUT is {settings.BROKER_VISIBILITY_TIMEOUT}s but a message may wait "
            f"{longest_wait:.0f}s unacknowledged (the longest step and its grace); Redis would "
            "deliver it a second time while the first delivery is still under way.",
            hint="Raise BROKER_VISIBILITY_TIMEOUT above that.",
            id="switchboard.W001",
        )
    ]
