"""The `openai` provider: any OpenAI-compatible server through the official `openai` package.

Structured answers are asked for with a JSON schema (or function calling for
prompts with tools), checked against the schema, repaired once by showing the
model the error, and otherwise refused (`LLMMalformedOutput`) — never guessed.
Every call has a timeout; failures become Switchboard errors (429 with its
Retry-After, timeouts and 5xx are transient, other 4xx permanent) and feed a
circuit breaker per provider and model.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any, cast

import openai
from django.conf import settings
from openai.types.chat import ChatCompletionMessageParam

from agents.base import Usage
from agents.llm.base import LLMResponse, Prompt, cost_usd
from agents.llm.breaker import CircuitBreaker
from agents.llm.errors import LLMMalformedOutput, LLMRateLimited, LLMRequestRejected, LLMTimeout, LLMUnavailable
from agents.llm.schema import schema_errors
from project.caching import cached_once
from project.jsonlimits import JSONRefused, json_loads_limited

RAW_LIMIT = 2000


@cached_once
def openai_client(base_url: str | None, api_key: str, timeout: float, max_retries: int) -> openai.OpenAI:
    # One client (one connection pool) per process and configuration; it is thread-safe.
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)


def model_for(agent: str) -> str:
    return settings.LLM_MODEL_OVERRIDES.get(agent, settings.LLM_MODEL)


class OpenAIProvider:
    name = "openai"

    def __init__(self) -> None:
        self.client = openai_client(
            settings.OPENAI_BASE_URL,
            settings.OPENAI_API_KEY,
            settings.LLM_TIMEOUT_SECONDS,
            settings.LLM_CLIENT_MAX_RETRIES,
        )

    def complete(self, prompt: Prompt, variables: dict[str, Any], *, agent: str) -> LLMResponse:
        model = model_for(agent)
        breaker = CircuitBreaker(f"{self.name}:{model}")
        messages: list[dict[str, Any]] = prompt.render(variables)
        usage = Usage(model=model, prompt_version=prompt.label)
        text, data, problem = self._ask(breaker, model, prompt, messages, usage)
        if problem is None:
            return LLMResponse(text=text, data=data, usage=usage)
        # One repair: show the model its answer and what is wrong with it.
        first = text
        messages = [
            *messages,
            {"role": "assistant", "content": text},
            {
                "role": "user",
                "content": f"Your answer is not valid: {problem} Answer again with only JSON matching the schema.",
            },
        ]
        text, data, problem = self._ask(breaker, model, prompt, messages, usage)
        if problem is None:
            return LLMResponse(text=text, data=data, usage=usage)
        raise LLMMalformedOutput(
            f"{prompt.label} answered malformed output twice ({problem}). "
            f"First answer: {first[:RAW_LIMIT]!r}. Second answer: {text[:RAW_LIMIT]!r}."
        )

    def _ask(
        self, breaker: CircuitBreaker, model: str, prompt: Prompt, messages: list[dict[str, Any]], usage: Usage
    ) -> tuple[str, Any, str | None]:
        """One call: (raw text, parsed data, what is wrong with it or None)."""
        probing = breaker.before_call()
        started = time.monotonic()
        try:
            completion = self.client.chat.completions.create(
                model=model,
                messages=cast("list[ChatCompletionMessageParam]", messages),
                extra_headers={"X-Switchboard-Prompt": prompt.label},
                **request_format(prompt),
            )
        except openai.RateLimitError as exc:
            breaker.record_success()  # the provider is up, only busy
            raise LLMRateLimited(f"{model} rate-limited the call.", retry_after=retry_after(exc.response)) from exc
        except openai.APITimeoutError as exc:
            breaker.record_failure(probing)
            raise LLMTimeout(f"{model} did not answer within {settings.LLM_TIMEOUT_SECONDS}s.") from exc
        except openai.APIConnectionError as exc:
            breaker.record_failure(probing)
            raise LLMUnavailable(f"cannot reach the LLM at {settings.OPENAI_BASE_URL or 'api.openai.com'}.") from exc
        except openai.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                breaker.record_failure(probing)
                raise LLMUnavailable(f"{model} failed with HTTP {exc.status_code}.") from exc
            breaker.record_success()
            raise LLMRequestRejected(f"{model} refused the request with HTTP {exc.status_code}: {exc.message}") from exc
        breaker.record_success()
        usage.latency_ms += int((time.monotonic() - started) * 1000)
        if completion.usage is not None:
            usage.input_tokens += completion.usage.prompt_tokens
            usage.output_tokens += completion.usage.completion_tokens
            usage.cost_usd = cost_usd(model, usage.input_tokens, usage.output_tokens)
        return parse_answer(prompt, completion)


def request_format(prompt: Prompt) -> dict[str, Any]:
    """How to ask for structure: function calling for prompts with tools, else a JSON schema
    (or plain JSON mode, for servers without schema support: LLM_STRUCTURED_OUTPUT)."""
    if prompt.tools:
        return {"tools": [{"type": "function", "function": tool} for tool in prompt.tools], "tool_choice": "auto"}
    if prompt.schema is None or settings.LLM_STRUCTURED_OUTPUT == "none":
        return {}
    if settings.LLM_STRUCTURED_OUTPUT == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": prompt.name, "schema": prompt.schema, "strict": False},
        }
    }


def parse_answer(prompt: Prompt, completion: Any) -> tuple[str, Any, str | None]:
    """(raw text, parsed data, what is wrong with it or None) of a completion. JSON is read with
    `json_loads_limited` (REQUEST_JSON_MAX_DEPTH, as for requests): text that is not JSON, nests too deeply or
    holds an integer too long to read is malformed output — repaired once, then refused — never an exception."""
    depth = settings.REQUEST_JSON_MAX_DEPTH
    if not completion.choices:
        return "", None, "the answer had no choices."
    message = completion.choices[0].message
    if prompt.tools and message.tool_calls:
        calls, raw = [], []
        for call in message.tool_calls:
            raw.append(f"{call.function.name}({call.function.arguments})")
            try:
                arguments = json_loads_limited(call.function.arguments or "{}", max_depth=depth)
            except JSONRefused as exc:
                problem = f"the arguments of {call.function.name} are not JSON we read ({_reason(exc)})."
                return "; ".join(raw), None, problem
            calls.append({"tool": call.function.name, "arguments": arguments})
        data = {"calls": calls}
        problems = schema_errors(data, prompt.schema) if prompt.schema else []
        return "; ".join(raw), data, (" ".join(problems) or None)
    text = message.content or ""
    if prompt.schema is None:
        return text, None, None if text.strip() else "the answer was empty."
    if prompt.tools and not text.strip():
        return text, {"calls": []}, None  # no tool needed
    try:
        data = json_loads_limited(text, max_depth=depth)
    except JSONRefused as exc:
        return text, None, f"it is not JSON ({_reason(exc)})."
    problems = schema_errors(data, prompt.schema)
    return text, data, (" ".join(problems) or None)


def _reason(exc: JSONRefused) -> str:
    """Why JSON was refused, to go inside parentheses in a sentence."""
    return str(exc).rstrip(".")


def retry_after(response: Any) -> float | None:
    """Seconds a 429 asked us to wait (Retry-After in seconds or as a date, or retry-after-ms), capped."""
    headers = getattr(response, "headers", None) or {}
    value: float | None = None
    if headers.get("retry-after-ms"):
        try:
            value = float(headers["retry-after-ms"]) / 1000
        except ValueError:
            value = None
    if value is None and headers.get("retry-after"):
        raw = headers["retry-after"]
        try:
            value = float(raw)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(raw) if raw else None
            value = parsed.timestamp() - time.time() if parsed else None
    if value is None:
        return None
    return max(0.0, min(value, settings.LLM_RETRY_AFTER_MAX_SECONDS))
