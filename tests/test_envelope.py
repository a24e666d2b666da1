"""The envelope contract: validation and the join of parallel branches."""

from __future__ import annotations

import time

import pytest

from agents.envelope import Budget, Envelope, envelopes_merge, slip_validate
from project.errors import InvalidEnvelope


def make_envelope(**changes: object) -> Envelope:
    envelope = Envelope(
        run_id="r1",
        conversation_id="c1",
        trace_id="t1",
        budget=Budget(max_tokens=100, max_cost_usd=1.0, max_hops=10, deadline=time.time() + 60),
        slip=["triage", "planner"],
        payload={"message": "hi"},
    )
    return envelope.evolve(**changes)


def test_round_trip() -> None:
    envelope = make_envelope(path=["a"], hop=1)
    assert Envelope.from_dict(envelope.to_dict()) == envelope


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda d: d.update(v=2), "unknown envelope version 2"),
        (lambda d: d.pop("v"), "unknown envelope version None"),
        (lambda d: d.pop("run_id"), "lacks run_id"),
        (lambda d: d.update(hop=-1), "hop must be"),
        (lambda d: d.update(path="triage"), "path must be"),
        (lambda d: d.update(slip=[["retrieval"]]), "slip entry 0"),
        (lambda d: d.update(slip=[["retrieval", "account"]]), "no single agent joins them"),
        (lambda d: d.update(payload=[]), "payload must be an object"),
        (lambda d: d.update(extra=1), "unknown fields"),
        (lambda d: d["budget"].pop("max_tokens"), "budget is malformed"),
    ],
)
def test_malformed_envelopes_are_rejected_with_a_reason(mutate, error) -> None:
    data = make_envelope().to_dict()
    mutate(data)
    with pytest.raises(InvalidEnvelope, match=error):
        Envelope.from_dict(data)


def test_not_an_object_is_rejected() -> None:
    with pytest.raises(InvalidEnvelope, match="JSON object"):
        Envelope.from_dict("hello")


def test_parallel_slip_needs_a_join() -> None:
    slip_validate([["retrieval", "account"], "responder"])
    with pytest.raises(InvalidEnvelope):
        slip_validate([["retrieval", "account"], ["a", "b"], "c"])


def test_merge_joins_branch_payloads_and_paths_in_slip_order() -> None:
    start = make_envelope(path=["triage", "planner"], hop=2, slip=[["retrieval", "account"], "responder"])
    a = start.evolve(hop=3, path=[*start.path, "retrieval"], payload={**start.payload, "passages": [1]})
    b = start.evolve(hop=3, path=[*start.path, "account"], payload={**start.payload, "account": {"x": 1}})
    merged = envelopes_merge([a, b])
    assert merged.path == ["triage", "planner", "retrieval", "account"]
    assert merged.hop == 4
    assert merged.slip == ["responder"]
    assert merged.payload == {"message": "hi", "passages": [1], "account": {"x": 1}}


def test_merge_refuses_envelopes_of_different_runs() -> None:
    start = make_envelope(slip=[["retrieval", "account"], "responder"])
    with pytest.raises(InvalidEnvelope, match="different runs"):
        envelopes_merge([start, start.evolve(run_id="other")])
