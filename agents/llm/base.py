"""The LLM seam: prompts as versioned artifacts, one provider interface."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings

from agents.base import MICRO_USD, Usage


@dataclass(frozen=True)
class Prompt:
    """One agent's prompt, versioned; every step records `name@version`."""

    name: str
    """Prompt name, usually the agent's."""
    version: str
    """Bumped whenever the wording or schema changes."""
    system: str
    """System message."""
    template: str
    """User message; `{name}` placeholders are filled from the variables (JSON-encoded if not str)."""
    offline: Callable[[dict[str, Any]], Any]
    """Deterministic answer used by the offline provider: a dict for JSON prompts, else text."""
    schema: dict[str, Any] | None = None
    """JSON schema of the expected answer; None for free text."""
    tools: list[dict[str, Any]] | None = None
    """Function specs (name, description, parameters) for prompts answered with tool calls;
    the calls are returned as {"calls": [{"tool": name, "arguments": {...}}]}."""

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, variables: dict[str, Any]) -> list[dict[str, str]]:
        values = {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in variables.items()}
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.template.format(**values)},
        ]


@dataclass(frozen=True)
class LLMResponse:
    """One completion."""

    text: str
    """The raw text the model returned."""
    data: Any
    """The parsed JSON object for prompts with a schema, else None."""
    usage: Usage
    """Tokens, cost, model, prompt version and latency of this call."""


class LLMProvider(Protocol):
    """Anything that answers a prompt. Implementations must be thread-safe."""

    name: str

    def complete(self, prompt: Prompt, variables: dict[str, Any], *, agent: str) -> LLMResponse: ...


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """Cost of a call in US dollars from the price table (`settings.LLM_PRICES`, per million tokens); unknown models
    cost 0. Exact (Decimal), rounded to the cent's ten-thousandth as steps and runs store it."""
    input_price, output_price = settings.LLM_PRICES.get(model, (0.0, 0.0))
    cost = input_tokens * Decimal(str(input_price)) + output_tokens * Decimal(str(output_price))
    return (cost / 1_000_000).quantize(MICRO_USD)


def estimate_tokens(text: str) -> int:
    """A deterministic token count for the offline provider (about 4 characters a token)."""
    return max(1, (len(text) + 3) // 4)
