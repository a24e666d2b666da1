"""What a customer may be told about why a run stopped: a public reason code and one fixed sentence per code.

Runs record internal reasons (`Run.reason`: validation_failed, refund_over_limit, budget_tokens, agent_failed, ...)
and details (`Run.reason_detail`: the validator's reasons, which quote the sentences it blocked, or an exception
text). Those are for staff (the admin, `/api/v1/reviews/`). Every customer surface — the run view, the message
POST's run summary, the event stream — shows `public_reason_of` instead: the one table below maps every internal
reason to a public code (an unknown reason to `PublicReason.SUPPORT_FOLLOW_UP`), and each code has one sentence.
No sentence depends on anything but the code, so nothing a customer reads distinguishes, say, "the reply described
another customer's order" from "the reply was not grounded".
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from typing import TypedDict

from agents.a2a_guard import REFUSAL_CODES
from conversations.refunds import RefundProblemCode
from orchestration.models import Run
from project import brand


class PublicReason(enum.StrEnum):
    """Why a run stopped, as a customer may be told."""

    IN_REVIEW = "in_review"
    """A person checks the answer before it is sent (the validator held it, a guard stopped the run, the
    model was unavailable)."""
    REFUND_IN_REVIEW = "refund_in_review"
    """A person checks a refund before anything is issued (any refund policy reason)."""
    PERSON_REQUESTED = "person_requested"
    """The customer asked for a person."""
    DELAYED = "delayed"
    """The run passed its deadline; a person follows up."""
    FAILED = "failed"
    """Something went wrong; a person follows up."""
    REFUSED = "refused"
    """An A2A request our loop guard refused (it came back to us, crossed too many systems, or had no budget)."""
    CANCELLED = "cancelled"
    """The run was stopped before it answered (`POST /api/v1/runs/{id}/cancel/`): nothing sent, nothing changed."""
    SUPPORT_FOLLOW_UP = "support_follow_up"
    """Any other reason (one this table does not know yet)."""


#: The one sentence a customer reads for each code, as written: `{Team}`/`{team}` is the brand's escalation wording
#: (`BRAND_ESCALATION_TEAM`), filled when read (`PUBLIC_REASON_MESSAGES`).
PUBLIC_REASON_TEXTS: dict[PublicReason, str] = {
    PublicReason.IN_REVIEW: "{Team} is checking this and will reply here.",
    PublicReason.REFUND_IN_REVIEW: "{Team} checks this refund before anything is issued, and will reply here.",
    PublicReason.PERSON_REQUESTED: "You asked for a person: {team} will reply here.",
    PublicReason.DELAYED: "Answering this is taking longer than it should. {Team} will follow up here.",
    PublicReason.FAILED: "Something went wrong while answering your message. {Team} will follow up here.",
    PublicReason.REFUSED: (
        "This request was not accepted: it had already passed through this service, crossed too many services, "
        "or had no budget left."
    ),
    PublicReason.CANCELLED: "",  # the cancelled run's notice itself (`BRAND_NOTICE_CANCELLED`)
    PublicReason.SUPPORT_FOLLOW_UP: "{Team} will follow up here.",
}


class _PublicReasonMessages(Mapping[PublicReason, str]):
    """`PUBLIC_REASON_TEXTS` with the brand filled in, read from the settings at each lookup."""

    def __getitem__(self, code: PublicReason) -> str:
        if code is PublicReason.CANCELLED:
            return brand.notice("cancelled")
        return brand.fill(PUBLIC_REASON_TEXTS[code])

    def __iter__(self) -> Iterator[PublicReason]:
        return iter(PUBLIC_REASON_TEXTS)

    def __len__(self) -> int:
        return len(PUBLIC_REASON_TEXTS)


#: The one sentence a customer reads for each code, as it reads now.
PUBLIC_REASON_MESSAGES: Mapping[PublicReason, str] = _PublicReasonMessages()

#: Every internal run reason (`Run.reason`, `ReviewItem.reason`) and its public code.
RUN_REASONS: dict[str, PublicReason] = {
    # The validator held the reply (grounding, commitments, leaks, notes, prompts, its model's verdict).
    "validation_failed": PublicReason.IN_REVIEW,
    # An agent handed the run on without saying why.
    "escalated": PublicReason.IN_REVIEW,
    # The responder's model gave no usable reply (agents.responder): a person writes it.
    "reply_unusable": PublicReason.IN_REVIEW,
    # Guards (orchestration.budgets) and the supervisor.
    "budget_tokens": PublicReason.IN_REVIEW,
    "budget_cost": PublicReason.IN_REVIEW,
    "budget_hops": PublicReason.IN_REVIEW,
    "budget_exceeded": PublicReason.IN_REVIEW,
    "loop_detected": PublicReason.IN_REVIEW,
    "halted": PublicReason.IN_REVIEW,
    "stuck": PublicReason.IN_REVIEW,
    # The model's circuit breaker is open.
    "llm_unavailable": PublicReason.IN_REVIEW,
    # A remote A2A agent (agents.remote) refused the request (its loop guard), asked for input or authentication,
    # did not finish within its polls, or could not be reached through its retries; or any agent that hands its run
    # to a person when its retries run out (`Agent.review_when_exhausted`).
    "remote_rejected": PublicReason.IN_REVIEW,
    "remote_input_required": PublicReason.IN_REVIEW,
    "remote_auth_required": PublicReason.IN_REVIEW,
    "remote_timed_out": PublicReason.IN_REVIEW,
    "remote_unavailable": PublicReason.IN_REVIEW,
    "agent_unavailable": PublicReason.IN_REVIEW,
    "customer_asked_for_person": PublicReason.PERSON_REQUESTED,
    "timed_out": PublicReason.DELAYED,
    "agent_failed": PublicReason.FAILED,
    "slip_exhausted": PublicReason.FAILED,
    # Our A2A loop guard refused the request (agents.a2a_guard).
    **{code: PublicReason.REFUSED for code in REFUSAL_CODES},
    # orchestration.cancel
    "cancelled": PublicReason.CANCELLED,
    # The refund policy's codes, whichever it has.
    **{code.value: PublicReason.REFUND_IN_REVIEW for code in RefundProblemCode},
}

#: Statuses that have a reason to show: a run on its way or completed has none (even if it was in review before).
STOPPED = (Run.Status.AWAITING_REVIEW, Run.Status.FAILED, Run.Status.TIMED_OUT, Run.Status.CANCELLED)


class PublicReasonView(TypedDict):
    """A run's reason as customers see it."""

    code: str
    """A `PublicReason` value."""
    message: str
    """The code's fixed sentence (`PUBLIC_REASON_MESSAGES`)."""


def public_reason(reason: str) -> PublicReason:
    """The public code of an internal reason; `SUPPORT_FOLLOW_UP` for a reason the table does not know."""
    return RUN_REASONS.get(reason, PublicReason.SUPPORT_FOLLOW_UP)


def public_reason_view(reason: str) -> PublicReasonView:
    """An internal reason as a customer sees it: its public code and that code's sentence."""
    code = public_reason(reason)
    return PublicReasonView(code=code.value, message=PUBLIC_REASON_MESSAGES[code])


def public_reason_of(*, status: str, reason: str) -> PublicReasonView | None:
    """What a customer is told of why a run with this status and internal reason stopped; None while it is
    queued or running, once it completed, and when it records no reason."""
    if status not in STOPPED or not reason:
        return None
    return public_reason_view(reason)
