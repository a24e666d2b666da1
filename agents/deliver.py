"""Deliver: stores the checked reply as the assistant's message; the run is complete."""

from __future__ import annotations

from agents.base import Agent, AgentResult, Outcome
from agents.envelope import Envelope
from conversations.models import Message
from conversations.services import message_create
from project.errors import PermanentError


class Deliver(Agent):
    name = "deliver"
    version = "1"

    def handle(self, envelope: Envelope) -> AgentResult:
        verdict = envelope.payload.get("verdict") or {}
        reply = envelope.payload.get("draft", "")
        if not verdict.get("pass") or not reply:
            raise PermanentError("deliver needs a draft that passed validation.")
        # Keyed by run: a redelivered deliver message stores nothing twice.
        message, _ = message_create(
            conversation_id=envelope.conversation_id,
            role=Message.Role.ASSISTANT,
            content=reply,
            idempotency_key=f"run:{envelope.run_id}:reply",
        )
        return AgentResult(payload={"reply_message_id": str(message.id)}, outcome=Outcome.COMPLETE)
