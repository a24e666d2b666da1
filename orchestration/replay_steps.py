"""A step of a replay run: answered from the recorded run's step, or run live.

An agent named to run live (`ReplayPlan.live`) runs its named version; its completions go to the model (with the
replay's model and prompt versions), while the shop's reads and MCP answers come from the record where the request
was recorded. Every other agent answers with its recorded result when it is given what the recorded step was given
(the input digest); when a live agent upstream changed its input, the recording no longer answers its question, so
it runs too — its completions answered from the record where the request is unchanged, asked of the configured
model otherwise. Nothing a replay does reaches a customer, a shop or the ledger (`agents.deliver` simulates).
"""

from __future__ import annotations

from dataclasses import replace

from agents.base import Agent, AgentResult, StepMemo
from agents.envelope import Envelope
from agents.registry import agent_version_get, prompt_get
from orchestration.recordings import input_digest, result_from_call, result_record, step_calls
from orchestration.replay_plan import ReplayPlan
from project import recording
from project.recording import Kind, Replaying, Tape


def tape_open(envelope: Envelope, agent_name: str, key: str) -> Tape | None:
    """The tape a try records on: with the recorded step's calls in a replay; None when nothing is recorded."""
    if envelope.replay is None:
        return Tape() if recording.enabled() else None
    plan = ReplayPlan.from_dict(envelope.replay)
    replaying = Replaying(
        recorded=step_calls(run_id=plan.of, key=key),
        live_llm=agent_name in plan.live,
        model=plan.model,
        prompts={name: prompt_get(name, version) for name, version in plan.prompts.items()},
        as_of=plan.as_of_time,
    )
    return Tape(replaying=replaying)


def step_handle(agent: Agent, envelope: Envelope, memo: StepMemo, tape: Tape | None) -> AgentResult:
    """Run one try of a step on `tape` (recording it): a replay's as the module says, else the agent's own. A second
    run of the same try (an atomic agent's fast path giving way to the locked one) starts the tape afresh."""
    if tape is not None:
        tape.calls.clear()
        if tape.replaying is not None:
            tape.replaying.used.clear()
    with recording.using(tape):
        if envelope.replay is None:
            result = agent.handle_step(envelope, memo)
            version = agent.version
        else:
            recorded = _recorded_result(agent, envelope, tape)
            if recorded is not None:
                return recorded
            live = ReplayPlan.from_dict(envelope.replay).live.get(agent.name)
            runs = agent_version_get(agent.name, live) if live else agent
            result = runs.handle_step(envelope, memo)
            version = runs.version
        if tape is not None:
            result_record(agent.name, version, envelope, result)
    return result


def _recorded_result(agent: Agent, envelope: Envelope, tape: Tape | None) -> AgentResult | None:
    """The recorded step's result, when the agent does not run live and is given what the recorded step was."""
    replaying = tape.replaying if tape is not None else None
    if tape is None or replaying is None or replaying.live_llm:
        return None
    call = recording.recorded_call(Kind.RESULT, agent.name, {"input": input_digest(envelope), "version": agent.version})
    if call is None:
        return None
    tape.calls[-1] = replace(call, request={**call.request, "from_record": True})  # the replay's record says so
    return result_from_call(call)
