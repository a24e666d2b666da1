"""Completions on the record: each one recorded on its step, and answered again from the record in a replay.

A replay answers a completion from the record when the agent does not run live and the request is the recorded one
(the same prompt version, the same rendered messages, tools and schema: compared by digest); the answer is rebuilt
exactly as the agent first got it, usage included. Anything else goes to the model.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, assert_never

from agents.base import Usage
from agents.llm.base import AnswerProblems, Fault, LLMRejected, LLMResponse, Prompt
from project import recording
from project.recording import Kind


def completion_request(prompt: Prompt, variables: dict[str, Any], *, agent: str) -> dict[str, Any]:
    """What identifies a completion: the agent, and a digest of what the model is shown (the full request is recorded
    with each call to the model: `Kind.LLM_CALL`)."""
    shown = {"messages": prompt.render(variables), "tools": prompt.tools, "schema": prompt.schema}
    return {"agent": agent, "digest": recording.digest(shown)}


def prompt_for_replay(prompt: Prompt) -> Prompt:
    """The prompt a replay's live agent completes instead (`--prompt NAME@VERSION`), else `prompt`."""
    replay = recording.replaying()
    if replay is None or not replay.live_llm:
        return prompt
    chosen = replay.prompts.get(prompt.name)
    return chosen if isinstance(chosen, Prompt) else prompt


def completion_answer(prompt: Prompt, variables: dict[str, Any], *, agent: str) -> LLMResponse | LLMRejected | None:
    """In a replay, the recorded answer to this completion (None: ask the model)."""
    replay = recording.replaying()
    if replay is None or replay.live_llm:
        return None
    call = recording.recorded_call(Kind.LLM, prompt.label, completion_request(prompt, variables, agent=agent))
    if call is None:
        return None
    usage = Usage(
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        cost_usd=Decimal(call.cost_usd),
        model=call.model,
        prompt_version=prompt.label,
        latency_ms=call.latency_ms,
    )
    answer = call.response
    data = json.loads(answer["data"])  # JSON text: the answer's own key order (jsonb would reorder it)
    if answer["type"] == "response":
        return LLMResponse(text=answer["text"], data=data, usage=usage)
    problems = AnswerProblems(Fault(answer["fault"]), tuple(answer["problems"]))
    return LLMRejected(label=prompt.label, answers=tuple(answer["answers"]), data=data, problems=problems, usage=usage)


def completion_record(
    prompt: Prompt, variables: dict[str, Any], *, agent: str, response: LLMResponse | LLMRejected, latency: float
) -> None:
    """Record a completion on the step (what the agent got, with its usage)."""
    if recording.current() is None:
        return
    usage = response.usage
    answer: dict[str, Any]
    match response:
        case LLMResponse():
            answer = {"type": "response", "text": response.text, "data": json.dumps(response.data, ensure_ascii=False)}
        case LLMRejected():
            answer = {
                "type": "rejected",
                "answers": list(response.answers),
                "data": json.dumps(response.data, ensure_ascii=False),
                "fault": response.problems.fault.value,
                "problems": list(response.problems.problems),
            }
        case _:
            assert_never(response)
    recording.record(
        Kind.LLM,
        prompt.label,
        request=completion_request(prompt, variables, agent=agent),
        response=answer,
        model=usage.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
        latency_ms=usage.latency_ms or int(latency * 1000),
    )
