"""The `openai` provider: any OpenAI-compatible server through the official `openai` package.

Structured answers are asked for with a JSON schema (or function calling for
prompts with tools), checked against the schema (and each tool call against its
function's parameters), then by the prompt's own `check` (what makes an answer
that fits the schema unusable to its agent). An answer that fails either is
repaired once by showing the model what is wrong; a second one is returned as
`LLMRejected` — never guessed at — and the agent's documented fallback stands in
for it, or the step fails (`LLMMalformedOutput`, `agents.llm.agent`). Every call
has a timeout; failures become Switchboard errors (429 with its Retry-After,
timeouts and 5xx are transient, other 4xx permanent) and feed a circuit breaker
per provider and model.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any, cast

import openai
from django.conf import settings
from openai.types.chat import ChatCompletionMessageParam

from agents.base import Usage
from agents.llm.base import AnswerProblems, Fault, LLMRejected, LLMResponse, Prompt, answer_problems, cost_usd
from agents.llm.breaker import CircuitBreaker
from agents.llm.errors import LLMRateLimited, LLMRequestRejected, LLMTimeout, LLMUnavailable
from project import metrics, recording
from project.caching import cached_once
from project.jsonlimits import JSONRefused, json_loads_limited


@cached_once
def openai_client(base_url: str | None, api_key: str, timeout: float, max_retries: int) -> openai.OpenAI:
    # One client (one connection pool) per process and configuration; it is thread-safe.
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)


def model_for(agent: str) -> str:
    """The agent's model (LLM_MODEL_OVERRIDES, else LLM_MODEL), or the one a replay runs its live agents on."""
    replay = recording.replaying()
    if replay is not None and replay.live_llm and replay.model:
        return replay.model
    return settings.LLM_MODEL_OVERRIDES.get(agent, settings.LLM_MODEL)


class OpenAIProvider:
    name = "openai"
    deterministic = False

    def __init__(self) -> None:
        self.client = openai_client(
            settings.OPENAI_BASE_URL,
            settings.OPENAI_API_KEY,
            settings.LLM_TIMEOUT_SECONDS,
            settings.LLM_CLIENT_MAX_RETRIES,
        )

    def complete(self, prompt: Prompt, variables: dict[str, Any], *, agent: str) -> LLMResponse | LLMRejected:
        model = model_for(agent)
        breaker = CircuitBreaker(f"{self.name}:{model}")
        messages: list[dict[str, Any]] = prompt.render(variables)
        usage = Usage(model=model, prompt_version=prompt.label)
        text, data, problems = self._ask(breaker, model, prompt, messages, usage, variables, agent)
        if problems is None:
            return LLMResponse(text=text, data=data, usage=usage)
        # One repair: show the model its answer and what is wrong with it.
        first = text
        messages = [
            *messages,
            {"role": "assistant", "content": text},
            {"role": "user", "content": repair_request(prompt, problems)},
        ]
        text, data, problems = self._ask(breaker, model, prompt, messages, usage, variables, agent)
        if problems is None:
            return LLMResponse(text=text, data=data, usage=usage)
        return LLMRejected(label=prompt.label, answers=(first, text), data=data, problems=problems, usage=usage)

    def _ask(
        self,
        breaker: CircuitBreaker,
        model: str,
        prompt: Prompt,
        messages: list[dict[str, Any]],
        usage: Usage,
        variables: dict[str, Any],
        agent: str,
    ) -> tuple[str, Any, AnswerProblems | None]:
        """One call (recorded, and counted in the metrics): (raw text, parsed data, what is wrong with it or None)."""
        probing = breaker.before_call()
        started = time.monotonic()
        response_format = request_format(prompt)
        request = {"model": model, "messages": messages, **response_format}
        try:
            completion = self.client.chat.completions.create(
                model=model,
                messages=cast("list[ChatCompletionMessageParam]", messages),
                extra_headers={"X-Switchboard-Prompt": prompt.label},
                **response_format,
            )
        except openai.APIError as exc:
            latency = int((time.monotonic() - started) * 1000)
            recording.record(
                recording.Kind.LLM_CALL,
                model,
                request=request,
                response=None,
                error=repr(exc)[:2000],
                latency_ms=latency,
            )
            metrics.llm_call(model=model, agent=agent, ok=False)
            failure = self._failure(exc, model, breaker, probing)
            if failure is exc:
                raise
            raise failure from exc
        breaker.record_success()
        latency = int((time.monotonic() - started) * 1000)
        tokens_in = completion.usage.prompt_tokens if completion.usage else 0
        tokens_out = completion.usage.completion_tokens if completion.usage else 0
        cost = cost_usd(model, tokens_in, tokens_out)
        usage.latency_ms += latency
        usage.input_tokens += tokens_in
        usage.output_tokens += tokens_out
        usage.cost_usd = cost_usd(model, usage.input_tokens, usage.output_tokens)
        metrics.llm_call(
            model=model, agent=agent, ok=True, input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=float(cost)
        )
        recording.record(
            recording.Kind.LLM_CALL,
            model,
            request=request,
            response=completion.model_dump(mode="json", exclude_unset=True),
            model=model,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=cost,
            latency_ms=latency,
        )
        return parse_answer(prompt, completion, variables)

    @staticmethod
    def _failure(exc: openai.APIError, model: str, breaker: CircuitBreaker, probing: bool) -> Exception:
        """The Switchboard error a failed call is raised as, with the breaker told (another kind of error: itself)."""
        if isinstance(exc, openai.RateLimitError):
            breaker.record_success()  # the provider is up, only busy
            return LLMRateLimited(f"{model} rate-limited the call.", retry_after=retry_after(exc.response))
        if isinstance(exc, openai.APITimeoutError):
            breaker.record_failure(probing)
            return LLMTimeout(f"{model} did not answer within {settings.LLM_TIMEOUT_SECONDS}s.")
        if isinstance(exc, openai.APIConnectionError):
            breaker.record_failure(probing)
            return LLMUnavailable(f"cannot reach the LLM at {settings.OPENAI_BASE_URL or 'api.openai.com'}.")
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                breaker.record_failure(probing)
                return LLMUnavailable(f"{model} failed with HTTP {exc.status_code}.")
            breaker.record_success()
            return LLMRequestRejected(f"{model} refused the request with HTTP {exc.status_code}: {exc.message}")
        return exc


def repair_request(prompt: Prompt, problems: AnswerProblems) -> str:
    """The repair round's message: what is wrong with the answer, and how to answer again."""
    again = (
        "Answer again, calling only the tools given, with arguments matching their parameters."
        if prompt.tools
        else "Answer again with only JSON matching the schema."
    )
    return f"Your answer is not valid: {problems.text} {again}"


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


def malformed(problem: str) -> AnswerProblems:
    """One problem that makes an answer malformed."""
    return AnswerProblems(Fault.MALFORMED, (problem,))


def parse_answer(prompt: Prompt, completion: Any, variables: dict[str, Any]) -> tuple[str, Any, AnswerProblems | None]:
    """(raw text, parsed data, what is wrong with it or None) of a completion. Tool calls become
    {"calls": [{"tool": name, "arguments": {...}}]}; a call whose arguments are not JSON keeps them as their raw
    text (so the other calls stay readable) and makes the answer malformed. JSON is read with `json_loads_limited`
    (REQUEST_JSON_MAX_DEPTH, as for requests): text that is not JSON, nests too deeply or holds an integer too long
    to read is malformed output — repaired once, then refused — never an exception."""
    depth = settings.REQUEST_JSON_MAX_DEPTH
    if not completion.choices:
        return "", None, malformed("the answer had no choices.")
    message = completion.choices[0].message
    if prompt.tools and message.tool_calls:
        calls, raw, unreadable = [], [], []
        for call in message.tool_calls:
            raw.append(f"{call.function.name}({call.function.arguments})")
            try:
                arguments = json_loads_limited(call.function.arguments or "{}", max_depth=depth)
            except JSONRefused as exc:
                unreadable.append(f"the arguments of {call.function.name} are not JSON we read ({_reason(exc)}).")
                arguments = call.function.arguments
            calls.append({"tool": call.function.name, "arguments": arguments})
        data = {"calls": calls}
        if unreadable:
            return "; ".join(raw), data, AnswerProblems(Fault.MALFORMED, tuple(unreadable))
        return "; ".join(raw), data, answer_problems(prompt, data, variables)
    text = message.content or ""
    if prompt.schema is None:
        return text, None, None if text.strip() else malformed("the answer was empty.")
    if prompt.tools and not text.strip():
        data = {"calls": []}  # no tool needed
        return text, data, answer_problems(prompt, data, variables)
    try:
        data = json_loads_limited(text, max_depth=depth)
    except JSONRefused as exc:
        return text, None, malformed(f"it is not JSON we read ({_reason(exc)}).")
    return text, data, answer_problems(prompt, data, variables)


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
