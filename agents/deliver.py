"""Deliver: stores the checked reply as the assistant's message; the run is complete."""

from __future__ import annotations

from agents.base import Agent, AgentResult, Outcome
from agents.envelope import Envelope
from agents.ledger import ledger_once
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

        def store_reply() -> dict[str, str]:
            message, _ = message_create(
                conversation_id=envelope.conversation_id, role=Message.Role.ASSISTANT, content=reply
            )
            return {"message_id": str(message.id)}

        # One reply per run, however often this message is delivered.
        result, _ = ledger_once(
            key=f"run:{envelope.run_id}:reply",
            kind="reply",
            run_id=envelope.run_id,
            request={"conversation_id": envelope.conversation_id},
            effect=store_reply,
        )
        return AgentResult(payload={"reply_message_id": result["message_id"]}, outcome=Outcome.COMPLETE)
