"""What the database says at the end of a chaos run: where every customer message went, what was lost and what
happened twice.

Definitions (all from the tables, `bench.chaos.db.Snapshot`):

- **in review by policy**: a run with a review item whose reason is a refund-policy code (`refund_*`, see
  conversations/refunds.py RefundProblemCode), `validation_failed`, `customer_asked_for_person`, `escalated` or
  `reply_unusable`;
  **in review because of faults**: any other review reason (`timed_out`, `stuck`, `llm_unavailable`, `budget_*`,
  `loop_detected`, `halted`, or one this list does not know yet). A run counts once per class, whatever it became.
- **lost**: a message the API accepted (202) that is not stored; a customer message with no run; a run still
  queued or running at the end; a run awaiting review with no open review item; a completed run with no reply.
- **duplicated**: an assistant or human-agent message that no reply ledger entry (`run:<id>:reply`) points to;
  a conversation with more replies than its one message; a ledger key recorded twice; an order whose
  refunded amount differs from its ledger refunds or exceeds its total.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from bench.chaos.db import Snapshot
from bench.chaos.load import Sent

#: Review reasons that are the policy's (besides the refund policy's `refund_*` codes).
#: `reply_unusable`: the responder had nothing to say from what the agents found (a question the help centre does not
#: answer, e.g. the load's "Can I exchange my jacket for a bigger size?"): a person answers it. An injected
#: "unusable" fault alone cannot cause it: the responder is repaired and asked afresh first (four bad answers in a
#: row at the fault mix's share are about one in a million).
POLICY_REASONS = frozenset({"validation_failed", "customer_asked_for_person", "escalated", "reply_unusable"})
TERMINAL = ("completed", "failed", "timed_out", "cancelled")


def uid(value: object) -> str:
    """An id as compared here: a UUID's hex digits, lower case (database and API spell them differently)."""
    return str(value).replace("-", "").lower()


#: The validator failing closed on its model's unusable verdict: a review caused by the model, not by the reply.
MODEL_FAULT_DETAIL = "llm_unusable"


def is_policy(reason: str, detail: str = "") -> bool:
    """Whether a review item's reason is the policy's (its detail names the validator's model failing closed: not)."""
    if MODEL_FAULT_DETAIL in detail:
        return False
    return reason.startswith("refund_") or reason in POLICY_REASONS


def verdict_make(snapshot: Snapshot, sent: list[Sent]) -> dict[str, Any]:
    """The table's figures and the evidence behind each lost or duplicated one."""
    items_by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in snapshot.review_items:
        items_by_run[uid(item["run_id"])].append(item)
    replies_by_message = _reply_ledger(snapshot)
    runs = [m for m in snapshot.messages if m["run_id"] is not None]
    statuses = Counter(m["status"] for m in runs)
    policy: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    policy_runs, fault_runs = set(), set()
    for run_id, items in items_by_run.items():
        for reason, detail in {(item["reason"], str(item.get("detail") or "")) for item in items}:
            policy_side = is_policy(reason, detail)
            (policy if policy_side else faults)[reason] += 1
            (policy_runs if policy_side else fault_runs).add(run_id)
    timed_out = {uid(m["run_id"]) for m in runs if m["status"] == "timed_out"}
    timed_out |= {r for r, items in items_by_run.items() if any(i["reason"] == "timed_out" for i in items)}
    return {
        "conversations_sent": len(sent),
        "messages_accepted": sum(1 for s in sent if s.accepted),
        "messages_not_accepted": [
            {"index": s.planned.index, "last_status": s.answers[-1].status if s.answers else None}
            for s in sent
            if not s.accepted
        ],
        "customer_messages_stored": len(snapshot.messages),
        "runs": len(runs),
        "final_status": dict(statuses),
        "completed": statuses.get("completed", 0),
        "review_policy_runs": len(policy_runs),
        "review_policy_reasons": dict(policy),
        "review_fault_runs": len(fault_runs),
        "review_fault_reasons": dict(faults),
        "review_fault_run_ids": sorted(fault_runs),
        "timed_out_runs": len(timed_out),
        "failed_reasons": dict(Counter(m["reason"] for m in runs if m["status"] == "failed")),
        # Why the validator held replies (the fake model's, or the product's): the first few, for staff eyes.
        "validation_details": sorted(
            {str(item["detail"])[:300] for item in snapshot.review_items if item["reason"] == "validation_failed"}
        )[:10],
        "lost": lost_find(snapshot, sent, items_by_run, replies_by_message),
        "duplicated": duplicated_find(snapshot, replies_by_message),
    }


def _reply_ledger(snapshot: Snapshot) -> dict[str, str]:
    """Reply message id -> run id, from the ledger's `run:<id>:reply` entries."""
    replies = {}
    for entry in snapshot.ledger:
        if entry["kind"] == "reply" and isinstance(entry["result"], dict) and entry["result"].get("message_id"):
            replies[uid(entry["result"]["message_id"])] = uid(entry["run_id"])
    return replies


def lost_find(
    snapshot: Snapshot,
    sent: list[Sent],
    items_by_run: dict[str, list[dict[str, Any]]],
    replies_by_message: dict[str, str],
) -> list[dict[str, Any]]:
    stored = {uid(m["message_id"]) for m in snapshot.messages}
    lost = [
        {"kind": "accepted, not stored", "message": s.message_id, "run": s.run_id}
        for s in sent
        if s.accepted and uid(s.message_id) not in stored
    ]
    replied_runs = set(replies_by_message.values())
    for message in snapshot.messages:
        run, status = message["run_id"], message["status"]
        open_item = any(item["status"] == "open" for item in items_by_run.get(uid(run), []))
        kind = None
        if run is None:
            kind = "no run"
        elif status in ("queued", "running"):
            kind = f"still {status} at the end"
        elif status == "awaiting_review" and not open_item:
            kind = "awaiting review without an open item"
        elif status == "completed" and uid(run) not in replied_runs:
            kind = "completed without a reply"
        if kind:
            lost.append({"kind": kind, "message": str(message["message_id"]), "run": str(run) if run else None})
    return lost


def duplicated_find(snapshot: Snapshot, replies_by_message: dict[str, str]) -> list[dict[str, Any]]:
    duplicated: list[dict[str, Any]] = []
    per_conversation = Counter(uid(reply["conversation_id"]) for reply in snapshot.replies)
    for reply in snapshot.replies:
        if uid(reply["id"]) not in replies_by_message:
            duplicated.append(
                {"kind": "reply without a ledger entry", "message": str(reply["id"]), "role": reply["role"]}
            )
    for conversation, count in per_conversation.items():
        if count > 1:
            duplicated.append({"kind": "conversation with several replies", "conversation": conversation, "n": count})
    for key, count in Counter(entry["key"] for entry in snapshot.ledger).items():
        if count > 1:
            duplicated.append({"kind": "ledger key recorded twice", "key": key, "n": count})
    refunded: dict[str, Decimal] = defaultdict(Decimal)
    for entry in snapshot.ledger:
        if entry["kind"] == "refund" and entry["amount"] is not None:
            refunded[entry["order_id"]] += Decimal(entry["amount"])
    for order in snapshot.orders:
        ledger_sum = refunded.get(order["id"], Decimal("0"))
        if Decimal(order["refunded_amount"]) != ledger_sum or Decimal(order["refunded_amount"]) > order["total"]:
            duplicated.append(
                {
                    "kind": "order refunds disagree with the ledger",
                    "order": order["id"],
                    "refunded_amount": str(order["refunded_amount"]),
                    "ledger": str(ledger_sum),
                    "total": str(order["total"]),
                }
            )
    return duplicated
