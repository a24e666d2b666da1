"""LLM access for agents: `complete(prompt, variables, agent=...)`.

The provider is chosen by the `LLM_PROVIDER` setting; agents never import a
provider package directly.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from agents.llm.base import Fault, LLMProvider, LLMRejected, LLMResponse, Prompt
from agents.llm.offline import OfflineProvider
from project.otel import span

__all__ = ["Fault", "LLMRejected", "LLMResponse", "Prompt", "answers_vary", "complete", "provider_get"]


def provider_get() -> LLMProvider:
    if settings.LLM_PROVIDER == "openai":
        # Lazy, though no cycle needs it: the openai package (with pydantic and httpx) adds about
        # 1.5 s to every process start (web, workers, manage.py), and only this provider uses it.
        from agents.llm.openai_provider import OpenAIProvider

        return OpenAIProvider()
    return OfflineProvider()


def complete(prompt: Prompt, variables: dict[str, Any], *, agent: str) -> LLMResponse | LLMRejected:
    """The model's answer to `prompt`, checked and repaired once (`LLMResponse`), or what was still wrong with it
    (`LLMRejected`): the calling agent decides what stands in for it."""
    provider = provider_get()
    with span(f"llm {prompt.label}", provider=provider.name, agent=agent, prompt=prompt.label):
        return provider.complete(prompt, variables, agent=agent)


def answers_vary() -> bool:
    """Whether asking the same prompt again may get another answer (not with the deterministic offline provider)."""
    return not provider_get().deterministic
