"""The base of agents that answer with one LLM completion (triage, planner, responder, tools), and how a fallback
that stands in for an unusable answer is recorded."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, ClassVar, assert_never

from agents import llm
from agents.base import Agent, AgentResult, Queue, Usage
from agents.envelope import Envelope
from agents.llm.base import Fault, LLMRejected, LLMResponse, Prompt
from agents.payload import LLMFallback, Payload

logger = logging.getLogger(__name__)

#: How much of the problems a log line quotes.
LOG_PROBLEMS_CHARS = 500


def fallback_record(payload: Payload, *, agent: str, rejected: LLMRejected, fallback: str) -> dict[str, LLMFallback]:
    """The run's `llm_fallbacks` with this agent's: what was wrong with its model's answer and which fallback stood
    in for it. Logged at WARNING (agent, fault, problems; never the answer itself): a fallback is never silent."""
    problems = rejected.problems
    logger.warning(
        "%s used its fallback (%s): its model's answer was %s after the repair round: %s",
        agent,
        fallback,
        problems.fault.value,
        problems.text[:LOG_PROBLEMS_CHARS],
    )
    note = LLMFallback(fault=problems.fault.value, problems=list(problems.problems), fallback=fallback)
    return {**payload.get("llm_fallbacks", {}), agent: note}


def usage_sum(spent: list[Usage]) -> Usage:
    """What several completions of one agent execution spent together (model and prompt of the last)."""
    last = spent[-1]
    return Usage(
        input_tokens=sum(u.input_tokens for u in spent),
        output_tokens=sum(u.output_tokens for u in spent),
        cost_usd=sum((u.cost_usd for u in spent), Decimal(0)),
        model=last.model,
        prompt_version=last.prompt_version,
        latency_ms=sum(u.latency_ms for u in spent),
    )


class LLMAgent(Agent):
    """An agent that completes its prompt once and turns the answer into its result.

    A subclass gives `prompt`, the prompt's variables from the envelope (`prompt_variables`)
    and what the model's answer means (`result_from`); the base makes the call, under the
    agent's name (model overrides, spans), and attaches the call's usage to the result.

    An answer still unusable after the provider's repair round (`LLMRejected`) gets the agent's documented
    `fallback` instead, recorded on the step (`llm_fallbacks` in the payload) and logged; an answer malformed
    twice does too when `fallback_on_malformed`, and otherwise fails the try (`LLMMalformedOutput`: retried, then a dead
    letter with the raw answers). An agent without a fallback fails its step either way.
    """

    queue: ClassVar[Queue] = Queue.LLM
    max_retries: ClassVar[int] = 6
    """A provider's 429s, 5xx and timeouts come in runs: six retries with backoff (1, 2, 4, 8, 16, 30 s, jittered)
    ride out about a minute of them within the run's deadline, instead of handing the customer to a person."""
    prompt: ClassVar[Prompt]
    """The prompt this agent completes."""
    fallback_doc: ClassVar[str] = ""
    """The agent's fallback in a few words, as the step and the log record it ('' when it has none)."""
    fallback_on_malformed: ClassVar[bool] = False
    """Whether the fallback also stands in for an answer malformed twice (not JSON, or not the schema): only for a
    fallback that ignores the answer, or reads only what of it fits the schema."""
    fresh_asks: ClassVar[int] = 0
    """How many times the prompt is asked afresh (a new conversation, not a repair) when the answer is still unusable
    or malformed after its repair round, before the fallback or the failure: for an agent whose fallback is a person,
    one more question is cheaper than a review (a model that answers badly once in twenty answers well the next)."""

    def prompt_variables(self, envelope: Envelope) -> dict[str, Any]:
        """The values of the prompt's placeholders."""
        raise NotImplementedError

    def prompt_for(self, envelope: Envelope) -> Prompt:
        """The prompt completed for this envelope: `prompt`, unless the agent's tools vary (the tools agent's MCP
        tools)."""
        return self.prompt

    def result_from(self, envelope: Envelope, data: Any) -> AgentResult:
        """The agent's result from the model's answer (parsed JSON for prompts with a schema); its
        usage is set by the base."""
        raise NotImplementedError

    def fallback(self, envelope: Envelope, variables: dict[str, Any], rejected: LLMRejected) -> AgentResult:
        """The agent's result when its model's answer is unusable after the repair round (`rejected`); its usage
        and its record are set by the base. Without one, the step fails."""
        raise rejected.error()

    def handle(self, envelope: Envelope) -> AgentResult:
        """Complete the prompt; the answer's result, or the fallback's when the answer is unusable."""
        variables = self.prompt_variables(envelope)
        prompt = self.prompt_for(envelope)
        response = llm.complete(prompt, variables, agent=self.name)
        spent = [response.usage]
        for _ in range(self.fresh_asks if llm.answers_vary() else 0):
            if not isinstance(response, LLMRejected):
                break
            response = llm.complete(prompt, variables, agent=self.name)
            spent.append(response.usage)
        match response:
            case LLMResponse():
                result = self.result_from(envelope, response.data)
            case LLMRejected():
                result = self.rejected(envelope, variables, response)
            case _:
                assert_never(response)
        result.usage = usage_sum(spent)
        return result

    def rejected(self, envelope: Envelope, variables: dict[str, Any], rejected: LLMRejected) -> AgentResult:
        """The fallback's result, recorded, for an answer unusable after the repair round; an answer malformed
        twice fails the step (`LLMMalformedOutput`) unless the agent's fallback covers it."""
        fault = rejected.problems.fault
        match fault:
            case Fault.MALFORMED:
                if not self.fallback_on_malformed:
                    raise rejected.error()
            case Fault.UNUSABLE:
                pass
            case _:
                assert_never(fault)
        result = self.fallback(envelope, variables, rejected)
        result.payload["llm_fallbacks"] = fallback_record(
            envelope.payload, agent=self.name, rejected=rejected, fallback=self.fallback_doc
        )
        return result
