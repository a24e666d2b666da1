"""The payload's schema: every key agents write into `Envelope.payload`, its type, who writes it, who reads it.

One definition, read two ways: `Payload` is the type (a TypedDict) agents and the orchestration are checked
against, and each key's `Annotated[..., Key(...)]` says what it means and who may write it. Keys marked
`protected` are enforced at run time in one place (`payload_write_problems`, called by the task wrapper on every
agent's result): an agent that writes a key it may not write fails its step permanently, whatever it is.

The payload is JSON: money is carried as strings ("30.00"), never as floats. Keys not listed here (an agent from
outside, a test agent) are carried along unchecked.
"""

from __future__ import annotations

import enum
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from conversations.selectors import Turn

#: Writers that are not agents: the run's start (from the customer's message) and a review decision.
RUN_START = "run start"
REVIEW_DECISION = "review decision"
#: The remote A2A agents, whatever their names (settings A2A_REMOTE_AGENTS; `agents.remote`).
REMOTE_AGENTS = "remote agents"


@dataclass(frozen=True)
class Key:
    """What one payload key means and who may touch it."""

    doc: str
    """What the value is."""
    writers: tuple[str, ...]
    """Agent names (or RUN_START / REVIEW_DECISION) that write it."""
    readers: tuple[str, ...] = ()
    """Agent names (or other code) that read it; documentation only."""
    protected: bool = False
    """Only `writers` may write it: checked on every agent result (`payload_write_problems`)."""


class RetrievedPassage(TypedDict):
    doc_id: str
    title: str
    section: str
    text: str
    score: float


class RefundAction(TypedDict):
    """A refund an agent proposes or a person decides; executed only by deliver, through the ledger."""

    type: Literal["refund"]
    order_id: str
    amount: str | None
    """Decimal as a string in the order's currency ("30.00"); None when it could not be read."""
    currency: str
    amount_note: NotRequired[str]
    """Why `amount` is None: what the customer or the model said that was not understood (for the reviewer)."""


class McpCall(TypedDict):
    """A call of a read-only MCP tool the model made (`agents.tools.mcp`): run by the `mcp` step."""

    server: str
    tool: str
    arguments: dict[str, Any]


class McpAction(TypedDict):
    """A call of an acting MCP tool the model proposed; executed only by deliver, once approved, through the
    ledger (key from run and action)."""

    type: Literal["mcp"]
    server: str
    tool: str
    arguments: dict[str, Any]


Verdict = TypedDict(
    "Verdict",
    {"pass": bool, "reasons": list[str], "decided_by": str, "decision": str},
    total=False,
)


class LLMFallback(TypedDict):
    """Why an agent's documented fallback stood in for its model's answer (`agents.llm.agent`)."""

    fault: str
    """`agents.llm.base.Fault`: malformed (not JSON, or not the schema) or unusable (the agent's check)."""
    problems: list[str]
    """What was still wrong with the answer after the repair round."""
    fallback: str
    """What the agent did instead, in a few words."""


class RemoteAnswer(TypedDict):
    """What a remote A2A agent answered (`agents.remote`): its completed task's text, and where it came from."""

    text: str
    """The task's artifacts' text (else its final status message's, or the direct reply message's)."""
    task_id: str
    """The remote task's id ('' for a direct reply without a task)."""
    card_url: str
    """Where the remote agent's card is: which system answered."""


class Approver(enum.StrEnum):
    """Who approved what deliver executes, beyond the validator's automatic checks."""

    REVIEWER = "reviewer"
    """A person decided (approve or edit): the automatic refund limit is lifted, never the policy itself."""
    SUPERVISOR = "supervisor"
    """Nobody decided in time: the proposed actions were denied; nothing above the limit is executed."""


class Approval(TypedDict):
    by: Approver
    name: str
    """The reviewer's username, or "supervisor"."""


class Payload(TypedDict, total=False):
    """Everything agents add to a run's envelope, by key."""

    message: Annotated[
        str, Key("The customer's message the run answers.", (RUN_START,), ("triage", "planner", "tools", "responder"))
    ]
    history: Annotated[list[Turn], Key("Earlier messages of the conversation, oldest first.", (RUN_START,))]
    intent: Annotated[str, Key("What the customer asks about (triage.INTENTS).", ("triage",), ("planner", "tools"))]
    intent_confidence: Annotated[float, Key("Triage's confidence in the intent, 0 to 1.", ("triage",))]
    order_ids: Annotated[
        list[str], Key("Order numbers the message names.", ("triage",), ("planner", "tools", "responder"))
    ]
    plan: Annotated[list[str | list[str]], Key("The routing slip the planner wrote.", ("planner",))]
    passages: Annotated[
        list[RetrievedPassage],
        Key("Help-centre passages that answer the message.", ("retrieval",), ("responder", "validator")),
    ]
    account: Annotated[
        dict[str, Any],
        Key("The customer's name and own orders (a source for grounding).", ("account",), ("validator",)),
    ]
    tool_results: Annotated[
        dict[str, Any],
        Key(
            "Read-only tool answers: {'orders': {id: lookup}, 'mcp': [call with text, structured, is_error]}.",
            ("tools", "mcp"),
            ("responder", "validator"),
        ),
    ]
    mcp_calls: Annotated[
        list[McpCall], Key("Read-only MCP tool calls the model made, for the `mcp` step to run.", ("tools",), ("mcp",))
    ]
    proposed_tool_actions: Annotated[
        list[McpAction],
        Key("Acting MCP tool calls proposed, not executed.", ("tools",), ("validator", "review", "deliver")),
    ]
    proposed_actions: Annotated[
        list[RefundAction], Key("Refunds proposed, not executed.", ("tools",), ("responder", "validator", "review"))
    ]
    escalation: Annotated[dict[str, str], Key("Why a tool handed the run to a person: {'reason': ...}.", ("tools",))]
    draft: Annotated[str, Key("The reply to send.", ("responder", REVIEW_DECISION), ("validator", "deliver", "review"))]
    draft_sources: Annotated[list[str], Key("Titles of the passages the draft cites.", ("responder",))]
    verdict: Annotated[Verdict, Key("The validator's (or reviewer's) verdict.", ("validator", REVIEW_DECISION))]
    approved_actions: Annotated[
        list[RefundAction],
        Key("The actions deliver executes.", ("validator", REVIEW_DECISION), ("deliver",), protected=True),
    ]
    approved_tool_actions: Annotated[
        list[McpAction],
        Key(
            "The acting MCP tool calls deliver executes (once each, through the ledger).",
            ("validator", REVIEW_DECISION),
            ("deliver",),
            protected=True,
        ),
    ]
    approval: Annotated[
        Approval,
        Key("Who decided, when a person or the supervisor did.", (REVIEW_DECISION,), ("deliver",), protected=True),
    ]
    approved_by: Annotated[
        str,
        Key(
            "Before `approval`: the reviewer's username, or 'supervisor'. Written by nobody now; read by deliver "
            "(`payload_approval`) for envelopes stored or queued before `approval` existed.",
            (),
            ("deliver",),
            protected=True,
        ),
    ]
    reply_role: Annotated[
        str,
        Key(
            "The message role of the reply (assistant, human_agent, system).",
            (REVIEW_DECISION,),
            ("deliver",),
            protected=True,
        ),
    ]
    review_item_id: Annotated[str, Key("The review item a decision came from.", (REVIEW_DECISION,), (), protected=True)]
    loop_guard: Annotated[
        dict[str, Any],
        Key(
            "The loop guard an A2A request arrived with (`agents.a2a_guard.LoopGuard`, as its metadata object): a "
            "remote agent step extends its path and hops, so a request cannot loop back through us.",
            (RUN_START,),
            (REMOTE_AGENTS,),
            protected=True,
        ),
    ]
    remote_answers: Annotated[
        dict[str, RemoteAnswer],
        Key(
            "Answers of remote A2A agents, by agent name: the responder passes the text on as the draft; the "
            "validator checks it like any draft (it grounds sentences, it backs no commitment).",
            (REMOTE_AGENTS,),
            ("responder", "validator"),
        ),
    ]
    llm_fallbacks: Annotated[
        dict[str, LLMFallback],
        Key(
            "Agents whose model's answer was unusable after the repair round, by name: what was wrong, and the "
            "documented fallback that stood in for it (staff only; also logged at WARNING).",
            ("triage", "planner", "tools", "responder", "validator"),
        ),
    ]
    reply_message_id: Annotated[str, Key("The stored reply.", ("deliver",))]
    executed_actions: Annotated[list[dict[str, Any]], Key("What deliver executed (ledger results).", ("deliver",))]


def payload_keys() -> dict[str, Key]:
    """Every documented key with its `Key`."""
    hints = typing.get_type_hints(Payload, include_extras=True)
    return {name: next(m for m in hint.__metadata__ if isinstance(m, Key)) for name, hint in hints.items()}


PAYLOAD_KEYS = payload_keys()


def payload_write_problems(writer: str, keys: typing.Iterable[str]) -> list[str]:
    """The protected keys among `keys` that `writer` (an agent name) may not write, sorted."""
    return sorted(
        key
        for key in keys
        if (spec := PAYLOAD_KEYS.get(key)) is not None and spec.protected and writer not in spec.writers
    )


def payload_approval(payload: Payload) -> Approval | None:
    """Who approved what deliver executes: `approval`, or for an envelope written before it existed, `approved_by`
    (a reviewer's username, or "supervisor" when a review expired)."""
    if "approval" in payload:
        return payload["approval"]
    legacy = payload.get("approved_by")
    if not legacy:
        return None
    if legacy == "supervisor":
        return Approval(by=Approver.SUPERVISOR, name=legacy)
    return Approval(by=Approver.REVIEWER, name=legacy)


def approval_lifts_limit(approval: Approval | None) -> bool:
    """Whether deliver may execute refunds above the automatic limit: only when a person approved them."""
    if approval is None:
        return False
    by = Approver(approval["by"])
    match by:
        case Approver.REVIEWER:
            return True
        case Approver.SUPERVISOR:
            return False
        case _:
            typing.assert_never(by)
