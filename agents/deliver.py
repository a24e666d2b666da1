"""Deliver: executes the approved actions, stores the reply; the run is complete.

It executes exactly `approved_actions` — written by the validator when every
check passed, or by a reviewer's decision — each through the ledger, so a
redelivered message or a second click refunds nothing twice. Before anything is
written the refund policy decides again, under the customer's and the orders'
row locks, on the sum with everything refunded so far: if it refuses (another
run refunded the order meanwhile, say), nothing is executed, no reply is sent,
and the run goes to a person with the reason. Refunds above the automatic
limits only when the payload's `approval` says a person approved them.
"""

from __future__ import annotations

from typing import Any, assert_never

from agents.base import Agent, AgentResult, Outcome
from agents.envelope import Envelope
from agents.ledger import ledger_once
from agents.payload import Verdict, approval_lifts_limit, payload_approval
from agents.tools.mcp_agent import (
    MCP_FAILED,
    MCP_REVIEW,
    acting_tools_configured,
    tool_action_problems,
    tool_actions_execute,
)
from agents.tools.refunds import RefundsExecuted, RefundsRefused, refund_check, refunds_execute
from conversations.models import Message
from conversations.orders import amount_format, amount_parse
from conversations.refunds import RefundAuthority, RefundProblem, problems_gravest
from conversations.selectors import conversation_customer_id
from conversations.services import message_create
from conversations.shop import commerce_backend
from project import recording
from project.errors import PermanentError


class Deliver(Agent):
    name = "deliver"
    version = "3"

    @property
    def atomic(self) -> bool:  # type: ignore[override]
        """With the built-in database and no acting MCP tools, one transaction with the step (the refunds commit with
        it). With a shop's API or acting MCP tools, not: a remote effect is recorded as requested and committed
        before it is sent, and no transaction waits on it."""
        return commerce_backend().transactional and not acting_tools_configured()

    @property
    def review_when_exhausted(self) -> bool:  # type: ignore[override]
        """A remote effect whose outcome stays unknown after the retries (the shop's API or an MCP server down) goes
        to a person with the evidence (the pending ledger row, the last error); it is never sent again with a new
        key."""
        return not self.atomic

    def handle(self, envelope: Envelope) -> AgentResult:
        payload = envelope.payload
        verdict = payload.get("verdict") or {}
        reply = payload.get("draft", "")
        role = payload.get("reply_role", Message.Role.ASSISTANT)
        if not verdict.get("pass") or not reply:
            raise PermanentError("deliver needs a draft that passed validation or a reviewer's decision.")
        if role not in Message.Role.values:
            raise PermanentError(f"unknown reply role {role!r}.")

        actions = payload.get("approved_actions") or []
        tool_actions = payload.get("approved_tool_actions") or []
        approval = payload_approval(payload)
        by_person = approval_lifts_limit(approval)
        # Acting MCP tools are checked again (still configured acting; "review" ones only on a person's approval).
        tool_problems = tool_action_problems(
            tool_actions, by_person=by_person, conversation_id=envelope.conversation_id
        )
        if tool_problems:
            refused_tools: Verdict = {"pass": False, "reasons": tool_problems}
            return AgentResult(
                payload={"verdict": refused_tools, "proposed_tool_actions": tool_actions},
                outcome=Outcome.ESCALATE,
                reason=MCP_REVIEW,
            )
        if recording.replaying() is not None:  # a replay shows what would be done, and does nothing
            return _simulated(envelope, actions, by_person=by_person, tool_actions=tool_actions)
        outcome = refunds_execute(
            actions=actions,
            run_id=envelope.run_id,
            conversation_id=envelope.conversation_id,
            authority=RefundAuthority.REVIEWER if by_person else RefundAuthority.AUTOMATIC,
            approver=approval["name"] if by_person and approval else "",
        )
        match outcome:
            case RefundsRefused(problems=problems):
                return _refused(actions, problems)
            case RefundsExecuted(results=executed):
                pass
            case _:
                assert_never(outcome)

        # Each approved MCP action once per run and action (the ledger), whatever the deliveries.
        tools_executed = tool_actions_execute(
            actions=tool_actions, run_id=envelope.run_id, conversation_id=envelope.conversation_id
        )
        failed = [
            f"{MCP_FAILED}: {r['server']}/{r['tool']} answered: {r['text'][:300]}"
            for r in tools_executed
            if r["is_error"]
        ]
        if failed:
            # Executed: an error answer is final for its key. Nothing is proposed any more, so a person's approval
            # sends the reply (as decided) and executes nothing again.
            return AgentResult(
                payload={
                    "verdict": {"pass": False, "reasons": failed},
                    "executed_actions": executed + tools_executed,
                    "proposed_tool_actions": [],
                },
                outcome=Outcome.ESCALATE,
                reason=MCP_FAILED,
            )

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
            payload={"reply_message_id": stored["message_id"], "executed_actions": executed + tools_executed},
            outcome=Outcome.COMPLETE,
        )


def _simulated(envelope: Envelope, actions: list[Any], *, by_person: bool, tool_actions: list[Any]) -> AgentResult:
    """Deliver in a replay: the policy decides on the refunds as it would (the ledger as it was when the replayed run
    started), and nothing is executed, refunded or stored; the actions are reported as `simulated`."""
    customer_id = conversation_customer_id(conversation_id=envelope.conversation_id)
    authority = RefundAuthority.REVIEWER if by_person else RefundAuthority.AUTOMATIC
    problems = refund_check(customer_id=customer_id, actions=actions, authority=authority)
    if problems:
        return _refused(actions, problems)
    ids = [str(action.get("order_id", "")) for action in actions]
    # The order's currency stands in for a missing one (as `refunds_execute` does): the shop is asked only then.
    unpriced = [order_id for order_id, action in zip(ids, actions, strict=True) if not action.get("currency")]
    orders = commerce_backend().orders_get(customer_id=customer_id, order_ids=unpriced) if unpriced else {}
    executed: list[dict[str, Any]] = [
        {
            "order_id": order_id,
            "amount": amount_format(amount) if (amount := amount_parse(action.get("amount"))) is not None else "",
            "currency": str(action.get("currency") or "") or (orders[order_id].currency if order_id in orders else ""),
            "simulated": True,
        }
        for order_id, action in zip(ids, actions, strict=True)
    ]
    executed += [
        {"server": action.get("server"), "tool": action.get("tool"), "simulated": True} for action in tool_actions
    ]
    return AgentResult(payload={"reply_message_id": "", "executed_actions": executed}, outcome=Outcome.COMPLETE)


def _refused(actions: list[Any], problems: list[RefundProblem]) -> AgentResult:
    """The policy refused the refunds: a person decides from here, with the actions deliver was asked to execute."""
    refused: Verdict = {"pass": False, "reasons": [f"{p.code.value}: {p.text}" for p in problems]}
    return AgentResult(
        payload={"verdict": refused, "proposed_actions": actions},
        outcome=Outcome.ESCALATE,
        reason=problems_gravest(problems).value,
    )
