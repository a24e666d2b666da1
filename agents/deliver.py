"""Deliver: executes the approved actions, stores the reply; the run is complete.

It executes exactly `approved_actions` — written by the validator when every
check passed, or by a reviewer's decision — each through the ledger, so a
redelivered message or a second click refunds nothing twice. Refunds above the
automatic limit only when the payload's `approval` says a person approved them.
"""

from __future__ import annotations

from agents.base import Agent, AgentResult, Outcome
from agents.envelope import Envelope
from agents.ledger import ledger_once
from agents.payload import approval_lifts_limit, payload_approval
from agents.tools.refunds import refund_execute
from conversations.models import Message
from conversations.services import message_create
from project.errors import PermanentError


class Deliver(Agent):
    name = "deliver"
    version = "2"
    atomic = True

    def handle(self, envelope: Envelope) -> AgentResult:
        payload = envelope.payload
        verdict = payload.get("verdict") or {}
        reply = payload.get("draft", "")
        role = payload.get("reply_role", Message.Role.ASSISTANT)
        if not verdict.get("pass") or not reply:
            raise PermanentError("deliver needs a draft that passed validation or a reviewer's decision.")
        if role not in Message.Role.values:
            raise PermanentError(f"unknown reply role {role!r}.")

        executed = []
        for index, action in enumerate(payload.get("approved_actions") or []):
            result, _ = refund_execute(
                action=action,
                run_id=envelope.run_id,
                index=index,
                conversation_id=envelope.conversation_id,
                approved_by_person=approval_lifts_limit(payload_approval(payload)),
            )
            executed.append(result)

        def store_reply() -> dict[str, str]:
            message, _ = message_create(conversation_id=envelope.conversation_id, role=role, content=reply)
            return {"message_id": str(message.id)}

        # One reply per run, however often this message is delivered.
        stored, _ = ledger_once(
            key=f"run:{envelope.run_id}:reply",
            kind="reply",
            run_id=envelope.run_id,
            request={"conversation_id": envelope.conversation_id, "role": role},
            effect=store_reply,
        )
        return AgentResult(
            payload={"reply_message_id": stored["message_id"], "executed_actions": executed}, outcome=Outcome.COMPLETE
        )
