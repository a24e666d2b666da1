"""The human-review queue: decisions, resuming the run, and review deadlines.

A decision resumes the run through Celery from the envelope stored on the
review item: only `deliver` runs, with exactly the reply and actions decided
here (as edited by the reviewer) — nothing is re-derived by an agent after
approval. Refunds go through the ledger, so a second click refunds nothing.

A decision that could not be executed is refused when it is made (InvalidInput,
with the refund policy's reasons), never accepted and failed later: the
decided refunds together pass `conversations.refunds.refund_problems` as a
reviewer may execute them. A reviewer's refunds that, with everything reviewers
already approved on the same orders (refunded, or decided and on its way to
deliver), come to more than REFUND_SECOND_APPROVAL_ABOVE are only a first
approval: nothing is executed and the customer told nothing new until a second,
different reviewer approves. So one reviewer cannot pay out a large sum in
pieces, one run at a time.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, assert_never

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.envelope import Envelope
from agents.payload import Approval, Approver, Payload, RefundAction
from agents.tools.refunds import refund_check, refunds_pending_leave, refunds_recorded_check, refunds_recorded_pending
from conversations.models import Message
from conversations.orders import CURRENCY_CODE, amount_format, amount_parse, order_id_valid
from conversations.refunds import RefundAuthority
from conversations.selectors import conversation_customer_id, order_currency
from conversations.services import refund_orders_lock
from orchestration import metering
from orchestration.attempts import step_key
from orchestration.budgets import budget_for_review_resume
from orchestration.models import ReviewDecision, ReviewItem, Run
from orchestration.permissions import reviewer_require
from orchestration.pipeline import run_dispatch
from orchestration.runs import run_reopen
from orchestration.selectors import review_get, review_tool_actions, reviewer_approved_by_order
from project.errors import Conflict, InvalidInput, PermissionDenied

logger = logging.getLogger(__name__)

REJECTION_DEFAULT = (
    "A member of our team looked at your request and could not approve it. Reply here if you need more help."
)
EXPIRED_REPLY = (
    "We could not confirm your request in time, so nothing was changed. "
    "Please write to us again if you still need help."
)
#: What a customer reads when a rejection or an expiry leaves a refund whose outcome is unknown (sent to the shop,
#: never answered): it may have happened, so neither "not approved" nor "nothing was changed" would be true.
UNSETTLED_REPLY = (
    "A member of our team is checking the status of your refund with our payment system and will follow up here."
)
#: Marks "the reviewer did not send this field" (None means an explicit null).
UNSET: Any = object()


Kind = ReviewDecision.Kind


class SecondReviewerRequired(PermissionDenied):
    """A first approval of a large refund needs a second approval by another reviewer, not its own."""


@dataclass(frozen=True)
class Decision:
    """What was decided, normalised and checked: what deliver sends and executes."""

    kind: ReviewDecision.Kind
    """approve, edit or reject (a person), or expire (the supervisor)."""
    reply: str
    """The message the customer receives."""
    role: Message.Role
    """assistant when the agents' reply is sent as is; human_agent when a person wrote or changed it;
    system for the supervisor's notice."""
    actions: list[RefundAction]
    """Actions to execute (empty for reject and expire)."""


def decision_kind_parse(value: object) -> ReviewDecision.Kind:
    """A reviewer's decision from the outside world (API, admin form), or InvalidInput."""
    kinds = ReviewDecision.REVIEWER_KINDS
    if not isinstance(value, str) or value not in kinds:
        raise InvalidInput(f"decision must be one of {', '.join(kinds)}.")
    return ReviewDecision.Kind(value)


def decision_normalise(
    item: ReviewItem, kind: ReviewDecision.Kind, reply: Any = UNSET, action: Any = UNSET
) -> Decision:
    """Check a person's decision against the item; raise InvalidInput saying what is wrong."""
    proposed_actions = list(item.proposed_action or [])
    match kind:
        case Kind.APPROVE:
            if reply is not UNSET or action is not UNSET:
                raise InvalidInput("approve sends the proposed reply and actions as they are; use edit to change them.")
            pending = item.pending_decision
            if pending is not None:  # the second approval of a first one: exactly what the first decided
                role = Message.Role.HUMAN_AGENT if pending.decision == Kind.EDIT else Message.Role.ASSISTANT
                return Decision(kind, pending.reply_after, role, list(pending.action_after or []))
            if not item.proposed_reply.strip():
                raise InvalidInput("there is no proposed reply to approve; use edit (with a reply) or reject.")
            return Decision(kind, item.proposed_reply, Message.Role.ASSISTANT, proposed_actions)
        case Kind.REJECT:
            if action is not UNSET and action not in (None, []):
                raise InvalidInput("reject executes no action; leave out action.")
            text = REJECTION_DEFAULT if reply is UNSET or reply is None else _reply_clean(reply)
            return Decision(kind, text, Message.Role.HUMAN_AGENT, [])
        case Kind.EDIT:
            text = item.proposed_reply if reply is UNSET else _reply_clean(reply)
            if not text.strip():
                raise InvalidInput("edit needs a reply for the customer.")
            actions = proposed_actions if action is UNSET else _actions_clean(item, action)
            return Decision(kind, text, Message.Role.HUMAN_AGENT, actions)
        case Kind.EXPIRE:
            raise InvalidInput("expire is the supervisor's decision, not a reviewer's.")
        case _:
            assert_never(kind)


def item_status_for(kind: ReviewDecision.Kind) -> ReviewItem.Status:
    """The review item's status after a decision of this kind."""
    match kind:
        case Kind.APPROVE:
            return ReviewItem.Status.APPROVED
        case Kind.EDIT:
            return ReviewItem.Status.EDITED
        case Kind.REJECT:
            return ReviewItem.Status.REJECTED
        case Kind.EXPIRE:
            return ReviewItem.Status.EXPIRED
        case _:
            assert_never(kind)


def _reply_clean(reply: Any) -> str:
    if not isinstance(reply, str) or not reply.strip():
        raise InvalidInput("reply must be a non-empty string.")
    if len(reply) > settings.MESSAGE_MAX_CHARS:
        raise InvalidInput(f"reply is {len(reply)} characters; the limit is {settings.MESSAGE_MAX_CHARS}.")
    return reply.strip()


def _actions_clean(item: ReviewItem, action: Any) -> list[RefundAction]:
    """A reviewer's actions as RefundActions: refunds, in the order's currency when none is given (never
    another one). Whether they may be executed is `_actions_check`'s."""
    if action is None:
        return []
    actions = [action] if isinstance(action, dict) else action
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        raise InvalidInput("action must be an action object, a list of them, or null.")
    return [_action_clean(entry) for entry in actions]


def _action_clean(entry: dict[str, Any]) -> RefundAction:
    """One of a reviewer's actions as a RefundAction, or InvalidInput. The order id's and the currency's shapes
    are checked before anything is looked up (a NUL or a lone surrogate never reaches the database)."""
    order_id, currency = entry.get("order_id"), entry.get("currency")
    if not order_id_valid(order_id):
        raise InvalidInput(f"action refused: order_id must be an order number like SB-12345, got {order_id!r}."[:300])
    if currency not in (None, "") and not (isinstance(currency, str) and CURRENCY_CODE.match(currency)):
        raise InvalidInput(f"action refused: currency must be a code like EUR, got {currency!r}."[:300])
    amount = amount_parse(entry.get("amount"))
    if amount is None or amount <= 0 or entry.get("type", "refund") != "refund":
        raise InvalidInput(
            "action refused: each action is a refund with an order_id and a positive amount in cents "
            f"(digits, optionally a point and one or two decimals), got {entry!r}."[:300]
        )
    currency = currency or order_currency(order_id=order_id) or ""
    return RefundAction(type="refund", order_id=order_id, amount=amount_format(amount), currency=currency)


def _actions_check(item: ReviewItem, decision: Decision) -> None:
    """Refuse (InvalidInput, with the reasons) a decision whose refunds could not be executed: one that changes or
    drops a refund the run already recorded (sent to the shop, its outcome perhaps unknown: only the same key with
    the same terms may be sent again), and the refund policy over the new ones together, as a reviewer may execute
    them (the limits lifted, nothing else). Recorded ones were allowed when recorded and count in the history."""
    keep = decision.kind != Kind.REJECT
    recorded = refunds_recorded_check(run_id=str(item.run_id), actions=decision.actions, keep_recorded=keep)
    if recorded.conflicts:
        raise InvalidInput("action refused: " + " ".join(recorded.conflicts))
    customer_id = conversation_customer_id(conversation_id=str(item.run.conversation_id))
    problems = refund_check(customer_id=customer_id, actions=recorded.new, authority=RefundAuthority.REVIEWER)
    if problems:
        advice = " Use edit to change the action, or reject." if decision.kind == Kind.APPROVE else ""
        raise InvalidInput("action refused: " + " ".join(problem.text for problem in problems) + advice)


def refunds_total(actions: list[RefundAction]) -> Decimal:
    """The refunds of a decision together (face value; the policy already required amounts in cents)."""
    return sum((amount_parse(a["amount"]) or Decimal("0") for a in actions), Decimal("0"))


def reviewer_approved_before(*, customer_id: str, actions: list[RefundAction]) -> Decimal:
    """Everything reviewers already approved on the orders these actions refund: refunded (the ledger's rows
    approved by a reviewer) or decided and on its way to deliver. Takes the customer's and the orders' row locks
    first (as deliver does), so that decisions on the same orders are counted one after the other."""
    order_ids = sorted({action["order_id"] for action in actions})
    refund_orders_lock(customer_id=customer_id, order_ids=order_ids)
    return sum(reviewer_approved_by_order(order_ids=order_ids).values(), Decimal("0"))


def needs_second_approval(decision: Decision, *, approved_before: Decimal) -> bool:
    """Whether a reviewer's approval needs another reviewer's too: when its refunds, with what reviewers already
    approved on the same orders (`reviewer_approved_before`), come to more than REFUND_SECOND_APPROVAL_ABOVE."""
    total = refunds_total(decision.actions) + approved_before
    return bool(decision.actions) and total > Decimal(settings.REFUND_SECOND_APPROVAL_ABOVE)


def review_decide(
    *, item_id: object, reviewer: Any, decision: object, reply: Any = UNSET, action: Any = UNSET
) -> ReviewItem:
    """Record a reviewer's decision and resume the run. A second decision on the same item
    (another reviewer, a second click) is refused with Conflict; the first one stands. So is a decision on an item
    whose run was cancelled (`orchestration.cancel`: the item is closed in the same transaction)."""
    reviewer_require(reviewer)
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().select_related("run").get(id=review_get(item_id).id)
        if item.status == ReviewItem.Status.CANCELLED:
            raise Conflict(
                f"This item was closed undecided: its run was cancelled at {item.decided_at:%Y-%m-%d %H:%M:%S} UTC. "
                "Nothing can be approved, sent or refunded for it."
            )
        if item.status != ReviewItem.Status.OPEN:
            by = f" by {item.decided_by.get_username()}" if item.decided_by else ""
            raise Conflict(
                f"This item was already decided ({item.status}{by} at {item.decided_at:%Y-%m-%d %H:%M:%S} UTC)."
            )
        normalised = decision_normalise(item, decision_kind_parse(decision), reply, action)
        _actions_check(item, normalised)
        first = item.pending_decision if normalised.kind == Kind.APPROVE else None
        if first is not None:
            if first.reviewer_id == reviewer.pk:
                raise SecondReviewerRequired(
                    "a second, different reviewer must approve this: refunds that bring what reviewers approved on "
                    f"an order above {settings.REFUND_SECOND_APPROVAL_ABOVE} need two reviewers, and you made the "
                    "first approval."
                )
            _decision_apply(item, normalised, reviewer, confirms=first)
        elif normalised.kind != Kind.REJECT and needs_second_approval(
            normalised, approved_before=_approved_before(item, normalised)
        ):
            _first_approval_record(item, normalised, reviewer)
        else:
            _decision_apply(item, normalised, reviewer)
    logger.info(
        "review %s: %s by %s%s",
        item.id,
        normalised.kind,
        reviewer.get_username(),
        " (first approval)" if item.pending_decision_id else "",
        extra={"run_id": str(item.run_id), "trace_id": item.run.trace_id},
    )
    return item


def _approved_before(item: ReviewItem, decision: Decision) -> Decimal:
    """What reviewers already approved on the orders of a decision's refunds (nothing to count without any)."""
    if not decision.actions:
        return Decimal("0")
    customer_id = conversation_customer_id(conversation_id=str(item.run.conversation_id))
    return reviewer_approved_before(customer_id=customer_id, actions=decision.actions)


def _first_approval_record(item: ReviewItem, decision: Decision, reviewer: Any) -> None:
    """Inside the item's row lock: record a first approval; the item stays open for a second reviewer, the run
    waits, nothing is executed and the customer is told nothing new."""
    item.pending_decision = ReviewDecision.objects.create(
        item=item,
        reviewer=reviewer,
        decision=decision.kind,
        reply_before=item.proposed_reply,
        reply_after=decision.reply,
        action_before=item.proposed_action,
        action_after=decision.actions or None,
        needs_second_approval=True,
    )
    item.save(update_fields=["pending_decision"])


def _decision_apply(
    item: ReviewItem, decision: Decision, reviewer: Any, *, confirms: ReviewDecision | None = None
) -> None:
    """Inside the item's row lock: record the decision (the second approval of `confirms`, if given) and resume
    the run after commit."""
    now = timezone.now()
    default = decision.kind in (Kind.REJECT, Kind.EXPIRE) and decision.reply in (REJECTION_DEFAULT, EXPIRED_REPLY)
    if default and refunds_recorded_pending(run_id=str(item.run_id)):  # it may have happened: not "nothing changed"
        decision = dataclasses.replace(decision, reply=UNSETTLED_REPLY)
    ReviewDecision.objects.create(
        item=item,
        reviewer=reviewer,
        decision=decision.kind,
        reply_before=item.proposed_reply,
        reply_after=decision.reply,
        action_before=item.proposed_action,
        action_after=decision.actions or None,
        confirms=confirms,
    )
    metering.review_decided(kind=decision.kind)
    item.status = item_status_for(Kind(confirms.decision) if confirms is not None else decision.kind)
    item.decided_at = now
    item.decided_by = reviewer
    item.final_reply = decision.reply
    item.final_action = decision.actions or None
    item.pending_decision = None
    item.save()
    run = Run.objects.select_for_update().get(id=item.run_id)
    names = [confirms.reviewer.get_username()] if confirms is not None and confirms.reviewer else []
    approval = (
        Approval(by=Approver.REVIEWER, name=" + ".join([*names, reviewer.get_username()]))
        if reviewer is not None
        else Approval(by=Approver.SUPERVISOR, name="supervisor")
    )
    if decision.kind in (Kind.REJECT, Kind.EXPIRE):  # refunds already sent stay recorded, pending, noted
        refunds_pending_leave(run_id=str(run.id), decision=decision.kind, by=approval["name"])
    run_resume(run, resume_envelope(item, decision, approval=approval))
    # If the broker is down now, the supervisor's sweep re-dispatches from the stored envelope.
    transaction.on_commit(lambda: run_dispatch(run), robust=True)


def run_resume(run: Run, envelope: Envelope) -> None:
    """Back to running for the decided step, starting from `envelope`, with budgets raised to what
    was already spent (a person decided to go on; the guards must not stop their decision)."""
    run.budget = budget_for_review_resume(
        run.budget, tokens_used=run.tokens_used, cost_usd=run.cost_usd, hops_used=max(run.hops_used, envelope.hop)
    )
    run.start_envelope = envelope.to_dict()
    run_reopen(run)


def resume_envelope(item: ReviewItem, decision: Decision, *, approval: Approval) -> Envelope:
    """The stored envelope, sent to deliver with exactly the decided reply and actions, and who decided them.
    Only a reviewer's approval lifts the automatic refund limit (`agents.payload.approval_lifts_limit`)."""
    stored = Envelope.from_dict(item.resume_envelope or item.run.start_envelope)
    payload: Payload = {
        **stored.payload,
        "draft": decision.reply,
        "verdict": {"pass": True, "reasons": [], "decided_by": approval["name"], "decision": decision.kind},
        "approved_actions": decision.actions,
        # Acting MCP tools run only as proposed, and only when the reviewer approved the proposal as it stands.
        "approved_tool_actions": review_tool_actions(item) if decision.kind == "approve" else [],
        "approval": approval,
        "reply_role": decision.role,
        "review_item_id": str(item.id),
    }
    # Deliver itself may have stopped on this envelope (its retries ran out: a remote effect's outcome unknown); its
    # step is over, so the decided delivery is a step of its own, one hop on.
    hop = stored.hop + 1 if item.run.steps.filter(key=step_key(stored.hop + 1, "deliver")).exists() else stored.hop
    return stored.evolve(slip=["deliver"], payload=payload, hop=hop)


# --- Review deadlines (called by the supervisor's sweep) ------------------------------


def reviews_mark_overdue(now: datetime | None = None) -> int:
    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.REVIEW_OVERDUE_SECONDS)
    return ReviewItem.objects.filter(status=ReviewItem.Status.OPEN, overdue=False, created_at__lt=limit).update(
        overdue=True
    )


def reviews_expire(now: datetime | None = None) -> list[str]:
    """Deny proposed actions nobody decided in time; the customer is told. Returns item ids."""
    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.REVIEW_EXPIRE_SECONDS)
    expired = []
    candidates = ReviewItem.objects.filter(
        status=ReviewItem.Status.OPEN, created_at__lt=limit, proposed_action__isnull=False
    ).values_list("id", flat=True)
    for item_id in list(candidates[:200]):
        with transaction.atomic():
            item = (
                ReviewItem.objects.select_for_update(skip_locked=True)
                .filter(id=item_id, status=ReviewItem.Status.OPEN)
                .select_related("run")
                .first()
            )
            if item is None or not item.has_action:
                continue
            _decision_apply(item, Decision(Kind.EXPIRE, EXPIRED_REPLY, Message.Role.SYSTEM, []), None)
            expired.append(str(item.id))
    return expired
