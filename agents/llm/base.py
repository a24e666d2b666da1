"""The LLM seam: prompts as versioned artifacts, one provider interface."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings

from agents.base import MICRO_USD, Usage
from agents.llm.errors import LLMMalformedOutput
from agents.llm.schema import schema_errors
from project import brand

#: How much of each raw answer an error quotes.
RAW_LIMIT = 2000


@dataclass(frozen=True)
class Prompt:
    """One agent's prompt, versioned; every step records `name@version`."""

    name: str
    """Prompt name, usually the agent's."""
    version: str
    """Bumped whenever the wording or schema changes."""
    system_template: str
    """System message as written; the brand's placeholders (`{shop}`, `{persona}`…: `project.brand`) are filled from
    the settings whenever it is read (`system`), so every provider, the offline one included, sends the same text."""
    template: str
    """User message; `{name}` placeholders are filled from the variables (JSON-encoded if not str)."""
    offline: Callable[[dict[str, Any]], Any]
    """Deterministic answer used by the offline provider: a dict for JSON prompts, else text."""
    schema: dict[str, Any] | None = None
    """JSON schema of the expected answer; None for free text."""
    tools: list[dict[str, Any]] | None = None
    """Function specs (name, description, parameters) for prompts answered with tool calls;
    the calls are returned as {"calls": [{"tool": name, "arguments": {...}}]}, each call's arguments checked
    against its function's `parameters`."""
    check: Callable[[Any, dict[str, Any]], list[str]] | None = None
    """What makes an answer that fits the schema unusable to the agent, from the answer and the prompt's variables
    (what the model was shown): sentences the model is shown in the repair round; empty when it is usable."""

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def system(self) -> str:
        """The system message as sent: the template with the brand's settings filled in."""
        return brand.fill(self.system_template)

    def render(self, variables: dict[str, Any]) -> list[dict[str, str]]:
        values = {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in variables.items()}
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.template.format(**values)},
        ]


class Fault(enum.StrEnum):
    """What is wrong with a model's answer."""

    MALFORMED = "malformed"
    """Not JSON, or JSON that breaks the prompt's schema (or a tool's parameters)."""
    UNUSABLE = "unusable"
    """It fits the schema, but the prompt's `check` finds it unusable (a plan that does not end with deliver)."""


@dataclass(frozen=True)
class AnswerProblems:
    """Why one answer cannot be used."""

    fault: Fault
    """Malformed or unusable."""
    problems: tuple[str, ...]
    """What is wrong, as sentences the model can act on."""

    @property
    def text(self) -> str:
        """The problems as one text."""
        return " ".join(self.problems)


def tool_call_problems(prompt: Prompt, call: Any, path: str = "$") -> list[str]:
    """Why one tool call ({"tool": name, "arguments": {...}}) does not fit the prompt's tools: an unknown tool, or
    arguments that break its function's `parameters`; empty when it fits."""
    specs = {tool["name"]: tool for tool in prompt.tools or []}
    if not isinstance(call, dict) or call.get("tool") not in specs:
        tool = call.get("tool") if isinstance(call, dict) else call
        return [f"{path} calls {tool!r}, which is not one of the tools {sorted(specs)}."]
    return schema_errors(call.get("arguments"), specs[call["tool"]]["parameters"], f"{path}.arguments")


def answer_problems(prompt: Prompt, data: Any, variables: dict[str, Any]) -> AnswerProblems | None:
    """Why a parsed answer cannot be used: the schema (and each tool call's parameters) first, then the prompt's own
    `check`; None when it can."""
    if prompt.schema is None:
        return None  # free text: nothing to check
    errors = schema_errors(data, prompt.schema)
    if prompt.tools and not errors:
        errors = [
            problem
            for index, call in enumerate(data["calls"])
            for problem in tool_call_problems(prompt, call, f"$.calls[{index}]")
        ]
    if errors:
        return AnswerProblems(Fault.MALFORMED, tuple(errors))
    unusable = prompt.check(data, variables) if prompt.check is not None else []
    return AnswerProblems(Fault.UNUSABLE, tuple(unusable)) if unusable else None


@dataclass(frozen=True)
class LLMResponse:
    """One completion the agent can use (it fits the schema and the prompt's check)."""

    text: str
    """The raw text the model returned."""
    data: Any
    """The parsed JSON object for prompts with a schema, else None."""
    usage: Usage
    """Tokens, cost, model, prompt version and latency of this call."""


@dataclass(frozen=True)
class LLMRejected:
    """A completion still malformed or unusable after the repair round: the agent's documented fallback stands in
    for it, or (malformed, for an agent without a fallback that ignores the answer) the step fails."""

    label: str
    """The prompt's `name@version`."""
    answers: tuple[str, ...]
    """The raw answers, first to last (one when there was no repair round: the offline provider)."""
    data: Any
    """The last answer parsed, when it was JSON (it may break the schema: `Fault.MALFORMED`), else None."""
    problems: AnswerProblems
    """What is wrong with the last answer."""
    usage: Usage
    """Tokens, cost, model, prompt version and latency of every call made."""

    def error(self) -> LLMMalformedOutput:
        """The failure of a step whose agent has no fallback for this answer, quoting the raw answers."""
        first, last = self.answers[0][:RAW_LIMIT], self.answers[-1][:RAW_LIMIT]
        if len(self.answers) == 1:
            return LLMMalformedOutput(
                f"{self.label} answered {self.problems.fault.value} output ({self.problems.text}). Answer: {first!r}."
            )
        return LLMMalformedOutput(
            f"{self.label} answered {self.problems.fault.value} output twice ({self.problems.text}). "
            f"First answer: {first!r}. Second answer: {last!r}."
        )


class LLMProvider(Protocol):
    """Anything that answers a prompt. Implementations must be thread-safe."""

    name: str
    deterministic: bool
    """Whether the same prompt always gets the same answer (then asking afresh is pointless)."""

    def complete(self, prompt: Prompt, variables: dict[str, Any], *, agent: str) -> LLMResponse | LLMRejected: ...


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """Cost of a call in US dollars from the price table (`settings.LLM_PRICES`, per million tokens); unknown models
    cost 0. Exact (Decimal), rounded to the cent's ten-thousandth as steps and runs store it."""
    input_price, output_price = settings.LLM_PRICES.get(model, (0.0, 0.0))
    cost = input_tokens * Decimal(str(input_price)) + output_tokens * Decimal(str(output_price))
    return (cost / 1_000_000).quantize(MICRO_USD)


def estimate_tokens(text: str) -> int:
    """A deterministic token count for the offline provider (about 4 characters a token)."""
    return max(1, (len(text) + 3) // 4)
