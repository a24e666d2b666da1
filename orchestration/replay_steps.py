"""A step of a replay run: answered from the recorded run's step, or run live.

An agent named to run live (`ReplayPlan.live`) runs its named version; its completions go to the model (with the
replay's model and prompt versions), while the shop's reads and MCP answers come from the record where the request
was recorded. Every other agent answers with its recorded result when it is given what the recorded step was given
(the input digest); when a live agent upstream changed its input, the recording no longer answers its question, so
it runs too — its completions answered from the record where the request is unchanged, asked of the configured
model otherwise. Nothing a replay does reaches a customer, a shop or the ledger (`agents.deliver` simulates); an
agent that would act outside Switchboard (`Agent.replay_safe`: a remote A2A agent) never runs in a replay, and a
step the recorded run ended without a result is not guessed at: the replay stops there, saying why.
"""

from __future__ import annotations

from dataclasses import replace

from agents.base import Agent, AgentResult, StepMemo
from agents.envelope import Envelope
from agents.registry import agent_version_get, prompt_get
from orchestration.attempts import step_key
from orchestration.recordings import input_digest, result_from_call, result_record, step_calls
from orchestration.replay_plan import ReplayPlan
from project import recording
from project.errors import PermanentError, RunHalted
from project.recording import Kind, Recorded, Replaying, Tape


def tape_open(envelope: Envelope, agent_name: str) -> Tape | None:
    """The tape a try records on (None when nothing is recorded); in a replay, with the plan's settings: the recorded
    step is read when the step runs (`step_handle`, where a failure is the step's)."""
    if envelope.replay is None:
        return Tape() if recording.enabled() else None
    plan = ReplayPlan.from_dict(envelope.replay)
    replaying = Replaying(recorded=[], live_llm=agent_name in plan.live, model=plan.model, as_of=plan.as_of_time)
    return Tape(replaying=replaying)


def step_handle(agent: Agent, envelope: Envelope, memo: StepMemo, tape: Tape | None) -> AgentResult:
    """Run one try of a step on `tape` (recording it): a replay's as the module says, else the agent's own. A second
    run of the same try (an atomic agent's fast path giving way to the locked one) starts the tape afresh."""
    if tape is not None:
        tape.calls.clear()
    with recording.using(tape):
        if envelope.replay is None or tape is None or tape.replaying is None:
            result = agent.handle_step(envelope, memo)
            version = agent.version
        else:
            plan = ReplayPlan.from_dict(envelope.replay)
            _replaying_load(tape.replaying, plan, key=step_key(envelope.hop + 1, agent.name))
            recorded = _recorded_result(agent, envelope, tape)
            if recorded is not None:
                return recorded
            runs = _live_agent(agent, plan, tape.replaying)
            result = runs.handle_step(envelope, memo)
            version = runs.version
        if tape is not None:
            result_record(agent.name, version, envelope, result)
    return result


def _replaying_load(replaying: Replaying, plan: ReplayPlan, *, key: str) -> None:
    """Read the recorded step and resolve the plan's prompts (a worker that does not know one fails the step, saying
    so)."""
    replaying.used.clear()
    calls = step_calls(run_id=plan.of, key=key)
    replaying.recorded = calls or []
    replaying.step = Recorded.ABSENT if calls is None else Recorded.RECORDED if calls else Recorded.UNRECORDED
    try:
        replaying.prompts = {name: prompt_get(name, version) for name, version in plan.prompts.items()}
    except KeyError as exc:
        raise PermanentError(
            f"this worker cannot replay: {exc.args[0]} Set SWITCHBOARD_PROMPT_CANDIDATES in the workers' environment."
        ) from exc


def _live_agent(agent: Agent, plan: ReplayPlan, replaying: Replaying) -> Agent:
    """The agent version that runs live in this step, or RunHalted (the replay stops here, saying why) when running it
    could reach the world or the record has nothing to say for a step the recorded run had."""
    live = plan.live.get(agent.name)
    try:
        runs = agent_version_get(agent.name, live) if live else agent
    except KeyError as exc:
        raise PermanentError(
            f"this worker cannot replay: {exc.args[0]} Set SWITCHBOARD_AGENT_CANDIDATES in the workers' environment."
        ) from exc
    if not runs.replay_safe:
        raise RunHalted(f"a replay never runs {agent.name} live: it acts outside Switchboard.", code="replay_unsafe")
    if live is None and replaying.step == Recorded.UNRECORDED:
        raise RunHalted(
            f"the recorded run's {agent.name} step ended without a result (or its recording is gone): nothing to "
            "replay it from.",
            code="replay_unrecorded",
        )
    return runs


def _recorded_result(agent: Agent, envelope: Envelope, tape: Tape) -> AgentResult | None:
    """The recorded step's result, when the agent does not run live and is given what the recorded step was."""
    if tape.replaying is None or tape.replaying.live_llm:
        return None
    call = recording.recorded_call(Kind.RESULT, agent.name, {"input": input_digest(envelope), "version": agent.version})
    if call is None:
        return None
    tape.calls[-1] = replace(call, request={**call.request, "from_record": True})  # the replay's record says so
    return result_from_call(call)
