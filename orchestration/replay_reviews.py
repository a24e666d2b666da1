"""A replay's reviews, answered from the record: the person's decision on the recorded run's review is applied again.

A replay run that stops for review gets a review item that never enters the queue (created closed:
`runs.review_item_open`, which sends `replay_review_opened`). If the recorded run's review at the same place (the same
order of reviews, the same reason, the same proposed reply and actions) was decided — approved, edited, rejected, or
expired by the supervisor, with any second approval — the same decision is applied to the replay's item, unchecked
(it was checked when it was made; the world has moved on since), and the replay resumes. Otherwise the replay stops
there: it would wait for a person (a proposal that changed needs a decision of its own).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from agents.payload import Approval, Approver
from conversations.models import Message
from orchestration.models import ReviewDecision, ReviewItem, Run
from orchestration.pipeline import run_dispatch
from orchestration.reviews import Decision, item_status_for, resume_envelope, run_resume
from orchestration.runs import replay_review_opened
from project.recording import canonical

Kind = ReviewDecision.Kind


@receiver(replay_review_opened)
def replay_review_answer(*, run: Run, item: ReviewItem, **_: Any) -> bool:
    """Apply the recorded decision to the replay's review item just opened, and resume the run after commit; False
    (the run waits, as it stopped) when the recorded run has no decided review here, or the replay proposes something
    else than the recorded run did (a person would decide again)."""
    if run.status != Run.Status.AWAITING_REVIEW:
        return False  # timed out: it stays so
    count = ReviewItem.objects.filter(run=run).count()
    originals = list(ReviewItem.objects.filter(run__replays=run).order_by("created_at", "id"))
    if count > len(originals):
        return False
    original = originals[count - 1]
    same = (original.reason, original.proposed_reply, canonical(original.proposed_action)) == (
        item.reason,
        item.proposed_reply,
        canonical(item.proposed_action),
    )
    decisions = original.decisions.select_related("reviewer", "confirms__reviewer").order_by("created_at", "id")
    final = [decision for decision in decisions if not decision.needs_second_approval]
    if not same or not final:
        return False
    last = final[-1]
    kind, first = Kind(last.decision), last.confirms
    decision = Decision(kind, last.reply_after, _role(kind, first), list(last.action_after or []))
    names = [d.reviewer.get_username() for d in (first, last) if d is not None and d.reviewer is not None]
    approval = (
        Approval(by=Approver.REVIEWER, name=" + ".join(names))
        if last.reviewer is not None
        else Approval(by=Approver.SUPERVISOR, name="supervisor")
    )
    item.status = item_status_for(Kind(first.decision) if first is not None else kind)
    item.decided_at = timezone.now()
    item.decided_by = last.reviewer
    item.final_reply = decision.reply
    item.final_action = decision.actions or None
    item.save()
    run_resume(run, resume_envelope(item, decision, approval=approval))
    transaction.on_commit(lambda: run_dispatch(run), robust=True)
    return True


def _role(kind: ReviewDecision.Kind, first: ReviewDecision | None) -> Message.Role:
    """Who the decided reply is from, as the decision made it (`reviews.decision_normalise`)."""
    if kind == Kind.EXPIRE:
        return Message.Role.SYSTEM
    if kind == Kind.APPROVE:
        edited = first is not None and first.decision == Kind.EDIT
        return Message.Role.HUMAN_AGENT if edited else Message.Role.ASSISTANT
    return Message.Role.HUMAN_AGENT
