"""Account: looks up what we know of the customer — name and their own orders only."""

from __future__ import annotations

from agents.base import Agent, AgentResult
from agents.envelope import Envelope
from conversations.selectors import customer_facts


class Account(Agent):
    name = "account"
    version = "1"
    atomic = True
    writes_database = False

    def handle(self, envelope: Envelope) -> AgentResult:
        return AgentResult(payload={"account": customer_facts(conversation_id=envelope.conversation_id)})
