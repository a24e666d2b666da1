"""The escalate-to-human tool: stop the run and hand it to a person."""

from __future__ import annotations

from agents.base import AgentResult, Outcome


def escalate_to_human(reason: str) -> AgentResult:
    return AgentResult(
        payload={"escalation": {"reason": reason}}, outcome=Outcome.ESCALATE, reason="customer_asked_for_person"
    )
