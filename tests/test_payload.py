"""The payload's schema: documented keys, protected writers, and explicit approval."""

from __future__ import annotations

import pytest

from agents.base import AgentResult
from agents.payload import (
    PAYLOAD_KEYS,
    REMOTE_AGENTS,
    REVIEW_DECISION,
    Approval,
    Approver,
    approval_lifts_limit,
    payload_approval,
    payload_write_problems,
)
from agents.registry import agents_all
from orchestration.runner import envelope_after
from project.errors import PermanentError
from tests.test_envelope import make_envelope


def test_every_key_says_what_it_is_and_who_writes_it() -> None:
    agents = set(agents_all())
    for name, key in PAYLOAD_KEYS.items():
        assert key.doc.strip(), name
        # A key nobody writes any more (kept to read old envelopes) must be protected: nobody may write it.
        assert key.writers or key.protected, name
        # Writers are registered agents, one of the two writers that are not agents, or the remote A2A agents
        # (configured, whatever their names: agents.remote).
        assert set(key.writers) <= agents | {REVIEW_DECISION, "run start", REMOTE_AGENTS}, name


def test_the_security_relevant_keys_are_protected() -> None:
    protected = {name for name, key in PAYLOAD_KEYS.items() if key.protected}
    assert protected == {
        "approved_actions",
        "approved_tool_actions",
        "approval",
        "approved_by",
        "reply_role",
        "review_item_id",
        "loop_guard",
    }
    assert PAYLOAD_KEYS["approved_by"].writers == ()
    assert PAYLOAD_KEYS["approved_actions"].writers == ("validator", REVIEW_DECISION)
    # Acting MCP tools: the tools agent (and the `mcp` step) may only propose them.
    assert PAYLOAD_KEYS["approved_tool_actions"].writers == ("validator", REVIEW_DECISION)
    for name in ("approval", "reply_role", "review_item_id"):
        assert PAYLOAD_KEYS[name].writers == (REVIEW_DECISION,), name
    # The path an A2A request came by: no agent may rewrite it (a loop would go unseen).
    assert PAYLOAD_KEYS["loop_guard"].writers == ("run start",)


@pytest.mark.parametrize(
    ("agent", "key", "allowed"),
    [
        ("validator", "approved_actions", True),
        ("tools", "approved_actions", False),
        ("tools", "approved_tool_actions", False),
        ("mcp", "approved_tool_actions", False),
        ("responder", "approved_actions", False),
        ("validator", "approval", False),
        ("tools", "reply_role", False),
        ("responder", "review_item_id", False),
        ("validator", "approved_by", False),
        ("tools", "approved_by", False),
        ("responder", "draft", True),
        ("planner", "loop_guard", False),
        ("responder", "not_a_documented_key", True),
    ],
)
def test_an_agent_writing_a_key_it_may_not_write_fails_its_step(agent: str, key: str, allowed: bool) -> None:
    envelope = make_envelope(slip=[agent, "deliver"])
    result = AgentResult(payload={key: []})  # type: ignore[misc]
    if allowed:
        after, _ = envelope_after(envelope, agent, result)
        assert key in after.payload
        assert payload_write_problems(agent, [key]) == []
    else:
        with pytest.raises(PermanentError, match=f"{agent} may not write \\['{key}'\\]"):
            envelope_after(envelope, agent, result)


def test_envelopes_from_before_approval_keep_their_meaning() -> None:
    # Stored (a run's start envelope) or queued before `approval` existed: `approved_by` said who decided.
    assert payload_approval({"approved_by": "rita@example.com"}) == {
        "by": Approver.REVIEWER,
        "name": "rita@example.com",
    }
    assert approval_lifts_limit(payload_approval({"approved_by": "rita@example.com"})) is True
    assert approval_lifts_limit(payload_approval({"approved_by": "supervisor"})) is False
    assert payload_approval({}) is None and payload_approval({"approved_by": ""}) is None
    new = Approval(by=Approver.SUPERVISOR, name="supervisor")
    assert payload_approval({"approval": new, "approved_by": "rita@example.com"}) == new


def test_only_a_reviewers_approval_lifts_the_refund_limit() -> None:
    assert approval_lifts_limit(None) is False
    assert approval_lifts_limit(Approval(by=Approver.REVIEWER, name="rita@example.com")) is True
    # When a review expires the supervisor "decides": that approves nothing.
    assert approval_lifts_limit(Approval(by=Approver.SUPERVISOR, name="supervisor")) is False
    with pytest.raises(ValueError):
        approval_lifts_limit({"by": "supervisor!", "name": ""})  # type: ignore[typeddict-item]
