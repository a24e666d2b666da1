"""The base of agents that answer with one LLM completion (triage, planner, responder, tools)."""

from __future__ import annotations

from typing import Any, ClassVar

from agents import llm
from agents.base import Agent, AgentResult, Queue
from agents.envelope import Envelope
from agents.llm.base import Prompt


class LLMAgent(Agent):
    """An agent that completes its prompt once and turns the answer into its result.

    A subclass gives `prompt`, the prompt's variables from the envelope (`prompt_variables`)
    and what the model's answer means (`result_from`); the base makes the call, under the
    agent's name (model overrides, spans), and attaches the call's usage to the result.
    """

    queue: ClassVar[Queue] = Queue.LLM
    prompt: ClassVar[Prompt]
    """The prompt this agent completes."""

    def prompt_variables(self, envelope: Envelope) -> dict[str, Any]:
        """The values of the prompt's placeholders."""
        raise NotImplementedError

    def result_from(self, envelope: Envelope, data: Any) -> AgentResult:
        """The agent's result from the model's answer (parsed JSON for prompts with a schema); its
        usage is set by the base."""
        raise NotImplementedError

    def handle(self, envelope: Envelope) -> AgentResult:
        response = llm.complete(self.prompt, self.prompt_variables(envelope), agent=self.name)
        result = self.result_from(envelope, response.data)
        result.usage = response.usage
        return result
