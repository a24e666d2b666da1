"""The offline provider: deterministic, no network; the default.

It answers each prompt with the prompt's own `offline` function, so the whole
pipeline runs (and tests run) without an LLM, and token counts are still
recorded (estimated from the text). Its answer is checked like a model's (the
schema, then the prompt's `check`); one that is unusable is rejected at once —
asking a deterministic function again would give the same answer — and the
agent's fallback stands in for it (the offline responder has nothing to say
when no passage or order answers the question).
"""

from __future__ import annotations

import json
from typing import Any

from agents.base import Usage
from agents.llm.base import LLMRejected, LLMResponse, Prompt, answer_problems, cost_usd, estimate_tokens
from project import metrics, recording


class OfflineProvider:
    name = "offline"
    deterministic = True
    model = "offline-deterministic"

    def complete(self, prompt: Prompt, variables: dict[str, Any], *, agent: str) -> LLMResponse | LLMRejected:
        messages = prompt.render(variables)
        answer = prompt.offline(variables)
        text = json.dumps(answer, ensure_ascii=False) if prompt.schema is not None else str(answer)
        input_tokens = sum(estimate_tokens(m["content"]) for m in messages)
        output_tokens = estimate_tokens(text)
        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_usd(self.model, input_tokens, output_tokens),
            model=self.model,
            prompt_version=prompt.label,
        )
        metrics.llm_call(
            model=self.model,
            agent=agent,
            ok=True,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=float(usage.cost_usd),
        )
        recording.record(
            recording.Kind.LLM_CALL,
            self.model,
            request={"model": self.model, "messages": messages, "tools": prompt.tools, "schema": prompt.schema},
            response={"text": text},
            model=self.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=usage.cost_usd,
        )
        problems = answer_problems(prompt, answer, variables)
        if problems is not None:
            return LLMRejected(label=prompt.label, answers=(text,), data=answer, problems=problems, usage=usage)
        return LLMResponse(text=text, data=answer if prompt.schema is not None else None, usage=usage)
