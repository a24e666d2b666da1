"""MCP tools in a run: the `mcp` step that runs the read-only calls the model made, the check of proposed acting
calls (validator, deliver) and their execution by deliver, once each, through the ledger (recorded as requested
and committed before the call, settled after it, re-sent with the same key after a crash).

The tools agent only records what the model called: read-only calls in `mcp_calls` (and hands the run to this step),
acting ones in `proposed_tool_actions`. This step runs behind the task wrapper like every agent: each try within
the server's timeout, transient failures retried with backoff (`max_retries`), then a person answers instead
(`review_when_exhausted`) — a server that is down never hangs a run. Each call and its answer are recorded in
`tool_results["mcp"]` (the step's output), where the responder and the validator's grounding read them.

Customer scope: every order id in a call's arguments (`argument_order_ids`: an argument named like one, or any value
shaped like one) must be one of the customer's own orders, as the shop reports them (`orders_owned`): the tools
agent refuses the model's call otherwise (repair round, then dropped), and this step and deliver check again before
anything is sent. Each request carries the customer's id in its `_meta` (`switchboard_customer_id`): Switchboard
cannot know what a server's other arguments mean, so a server scopes its answers by that id.

The `mcp` package is imported only when a server is configured (it costs every process start otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from agents.base import Agent, AgentResult, Queue
from agents.envelope import Envelope
from agents.ledger import ledger_request, ledger_send, ledger_statuses
from agents.models import LedgerEntry
from agents.payload import McpAction, McpCall
from conversations.orders import order_ids_in
from conversations.selectors import conversation_customer_id
from conversations.shop import commerce_backend
from project.errors import PermanentError

MCP_KIND = "mcp"
#: The run's reason when a proposed MCP action needs a person (a "review" tool, or one no longer configured).
MCP_REVIEW = "mcp_action_review"
#: The run's reason when an executed MCP action answered with an error.
MCP_FAILED = "mcp_action_failed"
#: The names of arguments that hold order ids, whatever their values look like (order_id, order_ids, orderId,
#: order_number, ...).
ORDER_ARGUMENT = re.compile(r"^order[_-]?(?:ids?|numbers?|nos?|refs?|references?)?$", re.IGNORECASE)


def function_name(server: str, tool: str) -> str:
    return f"mcp__{server}__{tool}"


def tool_modes() -> dict[str, str]:
    """Every configured server's tools' modes by function name (read, acting, review), as listed now."""
    if not settings.MCP_SERVERS:
        return {}
    from agents.tools.mcp import mcp_tools

    return {name: tool.mode for name, tool in mcp_tools().items()}


def argument_order_ids(value: Any, *, named: bool = False) -> set[str]:
    """Every order id in a tool call's arguments, at any depth: each value of an argument named like one
    (`ORDER_ARGUMENT`, as written, whatever its shape) and every order id a string mentions (`order_ids_in`)."""
    if isinstance(value, Mapping):
        return set().union(*(argument_order_ids(v, named=bool(ORDER_ARGUMENT.match(str(k)))) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return set().union(*(argument_order_ids(item, named=named) for item in value))
    found = set(order_ids_in(value)) if isinstance(value, str) else set()
    if named and value is not None and not isinstance(value, bool):
        found.add(str(value))
    return found


def orders_owned(*, customer_id: str, order_ids: Iterable[str]) -> set[str]:
    """Those of `order_ids` that are the customer's own orders, as the shop reports them (`orders_get`: scoped to
    the customer; an id not shaped like one is never asked, and so never the customer's)."""
    wanted = sorted(set(order_ids))
    if not wanted or not customer_id:
        return set()
    return set(commerce_backend().orders_get(customer_id=customer_id, order_ids=wanted))


def order_scope_problems(calls: Sequence[Mapping[str, Any]], *, customer_id: str) -> list[str]:
    """Why MCP calls ({server, tool, arguments}) may not be sent for this customer: their arguments name an order
    that is not one of the customer's own. Empty when none does."""
    named = [argument_order_ids(call.get("arguments") or {}) for call in calls]
    owned = orders_owned(customer_id=customer_id, order_ids=set().union(*named))
    return [
        f"{MCP_REVIEW}: {function_name(str(call.get('server')), str(call.get('tool')))} names "
        f"{', '.join(sorted(ids - owned))}, not an order of this customer's."
        for call, ids in zip(calls, named, strict=True)
        if ids - owned
    ]


def tool_action_problems(
    actions: Sequence[Mapping[str, Any]], *, by_person: bool, conversation_id: str = ""
) -> list[str]:
    """Why proposed MCP actions may not be executed without (more of) a person: a tool that is not a configured
    acting tool, or one configured "review" when no person approved; with `conversation_id`, also an order in
    their arguments that is not the customer's (`order_scope_problems`: never approved, not even by a person).
    Empty when they may."""
    if not actions:
        return []
    if conversation_id:
        scope = order_scope_problems(actions, customer_id=conversation_customer_id(conversation_id=conversation_id))
        if scope:
            return scope
    modes = tool_modes()
    problems = []
    for action in actions:
        name = function_name(str(action.get("server")), str(action.get("tool")))
        mode = modes.get(name)
        if mode not in ("acting", "review"):
            problems.append(f"{MCP_REVIEW}: {name} is not a configured acting MCP tool.")
        elif mode == "review" and not by_person:
            problems.append(f"{MCP_REVIEW}: {name} acts only on a person's approval.")
    return problems


def acting_tools_configured() -> bool:
    """Whether any configured server names a tool "acting" or "review" (deliver may then call MCP servers)."""
    return any(mode != "read" for server in settings.MCP_SERVERS.values() for mode in server.get("tools", {}).values())


def tool_mode_configured(server: str, tool: str) -> str:
    """A tool's mode as MCP_SERVERS configures it (read, acting or review; "" for a server not configured), without
    asking the server: what a reviewer is shown."""
    config = settings.MCP_SERVERS.get(server)
    return "" if config is None else str(config.get("tools", {}).get(tool, "read"))


def tool_action_key(run_id: str, index: int) -> str:
    return f"mcp:{run_id}:{index}"


def tool_actions_execute(*, actions: Sequence[McpAction], run_id: str, conversation_id: str) -> list[dict[str, Any]]:
    """Execute approved MCP actions, each once per (run, action index), as refunds through a shop's API are: every
    action not yet in the ledger is recorded as requested (PENDING) and committed first, then each is sent with its
    key (`mcp:<run>:<n>`, also the `idempotency_key` of the request's `_meta`) and its outcome recorded
    (`agents.ledger.ledger_send`): DONE with the answer (an `isError` answer too: deliver hands it to a person),
    FAILED on a refusal (MCPRefused), still PENDING with the evidence when the server did not answer (MCPUnavailable,
    retried with the same key, then a person). A result recorded by an earlier delivery is returned, not sent again:
    an `isError` answer too (it is final for its key: approving the review it leads to sends the reply, and nothing
    again). Each request carries the customer's id (`switchboard_customer_id` in its `_meta`). Never inside a
    transaction: the request must be committed before the server acts.
    """
    if not actions:
        return []
    if transaction.get_connection().in_atomic_block:
        raise PermanentError("MCP actions are sent outside any transaction (recorded as requested, committed first).")
    from agents.tools.mcp import MCPRefused, MCPUnavailable, mcp_call

    customer_id = conversation_customer_id(conversation_id=conversation_id)
    keys = [tool_action_key(run_id, index) for index in range(len(actions))]
    recorded = ledger_statuses(keys)
    for key, action in zip(keys, actions, strict=True):
        if key not in recorded:
            try:
                with transaction.atomic():
                    columns = {"customer_id": customer_id}
                    ledger_request(key=key, kind=MCP_KIND, run_id=run_id, request=dict(action), columns=columns)
            except IntegrityError:
                pass  # another delivery recorded it first: the same key is sent

    def send(entry: LedgerEntry) -> dict[str, Any]:
        server, tool = entry.request["server"], entry.request["tool"]
        answer = mcp_call(server, tool, dict(entry.request["arguments"]), key=entry.key, customer_id=customer_id)
        return {"server": server, "tool": tool, **answer}

    def describe(entry: LedgerEntry) -> str:
        return f"MCP action {entry.key} ({entry.request.get('server')}/{entry.request.get('tool')})"

    return [
        ledger_send(key=key, send=send, describe=describe, unavailable=MCPUnavailable, refused=MCPRefused)
        for key in keys
    ]


class McpStep(Agent):
    """Runs the read-only MCP calls the tools agent recorded (`mcp_calls`)."""

    name = "mcp"
    version = "1"
    queue = Queue.DEFAULT
    max_retries = 3
    """Transient failures (unreachable, timeout, 5xx) retried with the agents' backoff; then a person answers."""
    review_when_exhausted = True

    def handle(self, envelope: Envelope) -> AgentResult:
        calls: list[McpCall] = envelope.payload.get("mcp_calls", [])
        if not calls:
            return AgentResult()
        from agents.tools.mcp import mcp_call, mcp_tools

        tools = mcp_tools()
        customer_id = conversation_customer_id(conversation_id=envelope.conversation_id)
        # Never: the tools agent records only calls of the customer's own orders.
        scope = order_scope_problems(calls, customer_id=customer_id)
        if scope:
            raise PermanentError(f"MCP calls not run: {'; '.join(scope)}")
        results = []
        for call in calls:
            tool = tools.get(function_name(call["server"], call["tool"]))
            if tool is None or tool.acting:  # never: the tools agent records only listed read-only tools
                raise PermanentError(f"{call['server']}/{call['tool']} is not a configured read-only MCP tool.")
            answer = mcp_call(call["server"], call["tool"], dict(call["arguments"]), customer_id=customer_id)
            results.append({**call, **answer})
        return AgentResult(payload={"tool_results": {**envelope.payload.get("tool_results", {}), "mcp": results}})
