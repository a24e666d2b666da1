"""LLM access for agents: `complete(prompt, variables, agent=...)`.

The provider is chosen by the `LLM_PROVIDER` setting; agents never import a
provider package directly. Every completion is recorded on the step when steps
record (`project.recording`); in a replay, a recorded completion answers the same
request again unless the agent runs live (`agents.llm.replay`).
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from agents.llm.base import Fault, LLMProvider, LLMRejected, LLMResponse, Prompt
from agents.llm.offline import OfflineProvider
from agents.llm.replay import completion_answer, completion_record, prompt_for_replay
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
    prompt = prompt_for_replay(prompt)
    recorded = completion_answer(prompt, variables, agent=agent)
    if recorded is not None:
        return recorded
    provider = provider_get()
    started = time.monotonic()
    with span(f"llm {prompt.label}", provider=provider.name, agent=agent, prompt=prompt.label):
        response = provider.complete(prompt, variables, agent=agent)
    completion_record(prompt, variables, agent=agent, response=response, latency=time.monotonic() - started)
    return response


def answers_vary() -> bool:
    """Whether asking the same prompt again may get another answer (not with the deterministic offline provider)."""
    return not provider_get().deterministic
