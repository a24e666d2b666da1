"""How slips become canvases, and how an agent's result moves the flow."""

from __future__ import annotations

import pytest
from celery import chord
from celery.canvas import _chain as chain  # `celery.chain(...)` builds a `_chain`

from agents.base import AgentResult, Outcome, Queue
from agents.registry import agents_all
from orchestration.pipeline import FlowControl, canvas_compile, canvas_for
from orchestration.routing import SWEEP_TASK, agent_task_name
from orchestration.runner import envelope_after, envelope_receive, retry_countdown
from project.celery import app
from tests.test_envelope import make_envelope


def test_sequential_slip_is_a_chain_with_the_envelope_on_the_first_task() -> None:
    envelope = make_envelope()
    canvas = canvas_for(envelope)
    assert isinstance(canvas, chain)
    assert [task.task for task in canvas.tasks] == ["agents.triage", "agents.planner"]
    assert canvas.tasks[0].args == (envelope.to_dict(),)
    assert canvas.tasks[1].args == ()


def test_parallel_entry_becomes_a_chord_joined_by_the_next_agent() -> None:
    canvas = canvas_compile([["retrieval", "account"], "responder", "validator", "deliver"])
    # Celery folds what follows a chord into the chord's body: chord(header, responder | validator | deliver).
    assert isinstance(canvas, chain) and len(canvas.tasks) == 1
    head = canvas.tasks[0]
    assert isinstance(head, chord)
    assert [task.task for task in head.tasks] == ["agents.retrieval", "agents.account"]
    assert [task.task for task in head.body.tasks] == ["agents.responder", "agents.validator", "agents.deliver"]


def test_every_task_is_routed_to_its_queue_when_sent() -> None:
    # Celery's own router, as it runs for every message sent (canvas, Task.replace, retries, send_task).
    router = app.amqp.router
    for name, agent in agents_all().items():
        assert router.route({}, agent_task_name(name))["queue"].name == agent.queue.value
    assert router.route({}, "agents.triage")["queue"].name == "llm"
    assert router.route({}, "agents.deliver")["queue"].name == "default"
    assert router.route({}, SWEEP_TASK)["queue"].name == "default"
    # The broker declares every agent queue, and beat schedules the sweep by its one name.
    assert {queue.name for queue in app.conf.task_queues} == {queue.value for queue in Queue}
    assert app.conf.beat_schedule["supervisor-sweep"]["task"] == SWEEP_TASK


def test_an_unknown_agent_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(KeyError, match="No agent named 'nobody'"):
        canvas_compile(["triage", "nobody"])


def test_chord_branches_each_get_the_envelope() -> None:
    envelope = make_envelope(slip=[["retrieval", "account"], "responder"])
    canvas = canvas_for(envelope)
    assert isinstance(canvas, chord)
    assert all(task.args == (envelope.to_dict(),) for task in canvas.tasks)


def test_after_an_agent_the_slip_moves_on() -> None:
    envelope = make_envelope()
    after, control = envelope_after(envelope, "triage", AgentResult(payload={"intent": "shipping"}))
    assert control is FlowControl.CONTINUE
    assert after.slip == ["planner"] and after.path == ["triage"] and after.hop == 1
    assert after.payload["intent"] == "shipping"


def test_a_new_slip_recompiles_the_rest_of_the_run() -> None:
    envelope = make_envelope(slip=["planner"])
    after, control = envelope_after(envelope, "planner", AgentResult(slip=["responder", "validator", "deliver"]))
    assert control is FlowControl.REPLACE
    assert after.slip == ["responder", "validator", "deliver"]


def test_a_handoff_goes_before_the_rest_of_the_slip() -> None:
    envelope = make_envelope(slip=["responder", "validator", "deliver"])
    after, control = envelope_after(envelope, "responder", AgentResult(handoff=["retrieval"]))
    assert control is FlowControl.REPLACE
    assert after.slip == ["retrieval", "validator", "deliver"]


def test_completion_and_escalation_stop_the_flow() -> None:
    envelope = make_envelope(slip=["deliver"])
    assert envelope_after(envelope, "deliver", AgentResult(outcome=Outcome.COMPLETE))[1] is FlowControl.STOP
    envelope = make_envelope(slip=["validator", "deliver"])
    assert envelope_after(envelope, "validator", AgentResult(outcome=Outcome.ESCALATE))[1] is FlowControl.STOP


def test_a_parallel_branch_keeps_the_group_for_the_join() -> None:
    envelope = make_envelope(slip=[["retrieval", "account"], "responder"])
    after, control = envelope_after(envelope, "retrieval", AgentResult(payload={"passages": []}))
    assert control is FlowControl.CONTINUE
    assert after.slip == [["retrieval", "account"], "responder"]


def test_a_message_addressed_to_another_agent_is_refused() -> None:
    import pytest

    from project.errors import InvalidEnvelope

    with pytest.raises(InvalidEnvelope, match="not to 'deliver'"):
        envelope_receive(make_envelope().to_dict(), "deliver")


def test_backoff_grows_and_honours_retry_after(settings) -> None:
    settings.AGENT_RETRY_BACKOFF_SECONDS = 1.0
    settings.AGENT_RETRY_BACKOFF_MAX_SECONDS = 30.0
    assert 0.5 <= retry_countdown(1) <= 1.0
    assert 2.0 <= retry_countdown(3) <= 4.0
    assert 15.0 <= retry_countdown(10) <= 30.0
    assert retry_countdown(1, retry_after=7) == 7
