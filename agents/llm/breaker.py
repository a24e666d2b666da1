"""The circuit breaker (project/breaker.py) with the LLM's defaults: LLM_BREAKER_FAILURES in a row open it for
LLM_BREAKER_COOLDOWN_SECONDS, a call lasts at most LLM_TIMEOUT_SECONDS, and a paused call raises LLMCircuitOpen.
Remote A2A agents and MCP servers use it with their own settings and errors."""

from __future__ import annotations

from django.conf import settings

from agents.llm.errors import LLMCircuitOpen
from project import breaker
from project.breaker import KEY_PREFIX, STATE_TTL_SECONDS
from project.errors import Postponed

__all__ = ["KEY_PREFIX", "STATE_TTL_SECONDS", "CircuitBreaker"]


class CircuitBreaker(breaker.CircuitBreaker):
    def __init__(
        self,
        name: str,
        *,
        threshold: int | None = None,
        cooldown: float | None = None,
        call_seconds: float | None = None,
        open_error: type[Postponed] = LLMCircuitOpen,
    ) -> None:
        """As `project.breaker.CircuitBreaker`, each setting the LLM's when not given."""
        super().__init__(
            name,
            threshold=threshold if threshold is not None else settings.LLM_BREAKER_FAILURES,
            cooldown=cooldown if cooldown is not None else settings.LLM_BREAKER_COOLDOWN_SECONDS,
            call_seconds=call_seconds if call_seconds is not None else settings.LLM_TIMEOUT_SECONDS,
            open_error=open_error,
        )
