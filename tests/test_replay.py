"""Replaying recorded runs through real workers: byte for byte with nothing changed (retries, a chord, a review
resumed), with a prompt changed (the diff shows the new reply), many at once (the summary), and never an effect."""

from __future__ import annotations

import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from agents.base import Agent, AgentResult
from agents.envelope import Envelope
from agents.models import LedgerEntry
from conversations.models import Conversation, Message, Order
from conversations.selectors import conversation_list
from harness.fake_openai import refund_answers
from orchestration.attempts import NoMemo
from orchestration.models import ReviewItem, Run, Step, StepCall
from orchestration.replay import replay_plan_for
from orchestration.replay_report import run_outcome
from orchestration.replay_steps import step_handle, tape_open
from orchestration.reviews import review_decide
from orchestration.selectors import review_get, review_list_open, reviewer_refunds_on_the_way
from project.errors import NotFound, RunHalted
from tests.conftest import llm_env, order_add, run_wait
from tests.review_data import staff_reviewer

pytestmark = pytest.mark.django_db(transaction=True)

ORDER = "SB-77001"


def replay(*args: str) -> str:
    out = StringIO()
    call_command("replay", *args, "--timeout", "90", stdout=out)
    return out.getvalue()


def replay_of(original: Run) -> Run:
    return Run.objects.filter(replay_of=original).earliest("created_at")


def test_a_replay_with_nothing_named_reproduces_a_run_with_retries_a_chord_and_a_review_byte_for_byte(
    fake: Any, worker_factory: Any, start_run: Any, make_customer: Any
) -> None:
    customer, _ = make_customer()
    order_add(customer, ORDER, "Aurora noise-cancelling headphones", "300.00")
    fake.answers.update(refund_answers(ORDER, "Aurora noise-cancelling headphones", "300.00"))
    fake.fail_next("triage", "500")  # a retry
    worker_factory("llm", env=llm_env(fake))
    original = run_wait(start_run(f"Please refund {ORDER}", customer=customer).id, timeout=60)
    assert original.status == "awaiting_review", (original.reason, original.reason_detail)
    item = ReviewItem.objects.get(run=original)
    edited = "We have refunded 300.00 EUR for your headphones; the money is back within 5 business days."
    review_decide(item_id=item.id, reviewer=staff_reviewer(), decision="edit", reply=edited)
    original = run_wait(original.id, timeout=60, statuses=("completed", "failed"))
    assert original.status == "completed", (original.reason, original.reason_detail)
    assert Step.objects.get(run=original, agent="triage").attempt == 2
    keys = set(Step.objects.filter(run=original).values_list("key", flat=True))
    assert {"003.retrieval", "003.account"} <= keys  # the chord's branches
    refunded = Order.objects.get(id=ORDER).refunded_amount
    ledger, messages, calls = LedgerEntry.objects.count(), Message.objects.count(), len(fake.calls())
    recorded_llm = StepCall.objects.filter(run=original, kind="llm_call")
    assert recorded_llm.filter(error="").count() >= 4 and recorded_llm.exclude(error="").count() == 1  # the 500 too

    report = replay(str(original.id))

    copy = replay_of(original)
    assert copy.status == "completed", (copy.reason, copy.reason_detail)
    before, after = run_outcome(original), run_outcome(copy)
    assert after.results == before.results  # every step's output, byte for byte
    assert [s.mode for s in after.steps] == ["recorded"] * len(before.results)
    for field in ("intent", "plan", "passages", "draft", "verdict", "proposed_actions", "reply"):
        assert f"{field}: same" in report, report
    assert len(fake.calls()) == calls  # nothing asked of the model: every agent answered from its recording
    # No effect anywhere: no refund, no ledger row, no message to the customer, nothing in the review queue.
    assert Order.objects.get(id=ORDER).refunded_amount == refunded
    assert LedgerEntry.objects.count() == ledger
    assert not Message.objects.filter(conversation=original.conversation, created_at__gt=original.finished_at).exists()
    assert Message.objects.exclude(conversation__replay_of__isnull=False).count() == messages
    assert list(conversation_list(customer=customer)) == [original.conversation]
    assert not review_list_open().filter(run=copy).exists()
    assert ReviewItem.objects.get(run=copy).status == "edited"  # answered from the recorded decision
    assert before.fields["reply"] == after.fields["reply"] == edited  # what the customer got: the reviewer's text
    with pytest.raises(NotFound):  # a replay's item is not the reviewers' to decide
        review_get(ReviewItem.objects.get(run=copy).id)

    # The responder, named to run live, now proposes another reply: the recorded decision was on another proposal,
    # so the replay stops where a person would decide again; still nothing refunded, nothing sent.
    fake.answers["responder"] = {"reply": f"Order {ORDER}: your refund of 300.00 EUR is on its way.", "sources": []}
    report = replay(str(original.id), "--agent", "responder@3")
    second = Run.objects.filter(replay_of=original).latest("created_at")
    assert second.status == "awaiting_review" and second.reason == "refund_over_limit", second.reason_detail
    assert ReviewItem.objects.get(run=second).status == "cancelled"  # never open, never decided
    assert "draft: CHANGED" in report and "reply: CHANGED" in report and "ended: CHANGED" in report
    assert Order.objects.get(id=ORDER).refunded_amount == refunded and LedgerEntry.objects.count() == ledger
    assert reviewer_refunds_on_the_way(order_ids=[ORDER]) == {}


def test_a_changed_prompt_runs_live_and_the_diff_shows_the_new_reply(worker_factory: Any, start_run: Any) -> None:
    worker_factory("replay")
    original = run_wait(start_run("How long does shipping take to Austria?").id)
    assert original.status == "completed"

    report = replay(str(original.id), "--prompt", "responder@test-brief")

    copy = replay_of(original)
    before, after = run_outcome(original), run_outcome(copy)
    assert copy.status == "completed", (copy.reason, copy.reason_detail)
    assert after.fields["reply"] != before.fields["reply"]
    assert after.fields["reply"].split("\n\n")[0].count(". ") == 0  # one sentence
    assert "draft: CHANGED" in report and "reply: CHANGED" in report and "intent: same" in report
    assert f"  +{after.fields['reply'].splitlines()[0]}" in report
    assert f"  -{before.fields['reply'].splitlines()[0]}" in report
    modes = {s.agent: s.mode for s in after.steps}
    assert modes["triage"] == "recorded" and modes["responder"] == "live"
    assert modes["validator"] == "rerun"  # its input changed: it checked the new draft
    assert Step.objects.get(run=copy, agent="responder").prompt_version == "responder@test-brief"
    assert "tokens:" in report and "cost:" in report


def test_many_runs_replayed_give_a_summary_with_the_runs_that_changed(worker_factory: Any, start_run: Any) -> None:
    worker_factory("replay")
    shipping = [run_wait(start_run("How long does shipping take?").id) for _ in range(2)]
    other = run_wait(start_run("Hello there").id)
    assert {run.status for run in shipping} == {"completed"}

    report = replay("--since", "1h", "--filter", "intent=shipping", "--prompt", "responder@test-brief")

    assert Run.objects.filter(replay_of__in=shipping).count() == 2
    assert not Run.objects.filter(replay_of=other).exists()
    assert re.search(r"^runs replayed +2$", report, re.M), report
    assert re.search(r"^changed reply +2 \(100%\)$", report, re.M), report
    assert re.search(r"^changed verdict +0 \(0%\)$", report, re.M), report
    for run in shipping:
        assert str(run.id) in report
    with pytest.raises(CommandError, match="no recorded run matches"):
        replay("--since", "1h", "--filter", "intent=no-such-intent")


def test_a_replay_is_refused_with_the_reason(worker_factory: Any, start_run: Any) -> None:
    worker_factory("replay")
    run = run_wait(start_run().id)
    with pytest.raises(CommandError, match="NAME@VERSION"):
        replay(str(run.id), "--agent", "responder")
    with pytest.raises(CommandError, match="No version '9' of agent 'responder'"):
        replay(str(run.id), "--agent", "responder@9")
    with pytest.raises(CommandError, match="No version '9' of prompt 'responder'"):
        replay(str(run.id), "--prompt", "responder@9")
    StepCall.objects.filter(run=run).delete()
    with pytest.raises(CommandError, match="has no recording"):
        replay(str(run.id))
    assert not Conversation.objects.filter(replay_of__isnull=False).exists()  # nothing started


def test_an_agent_that_acts_outside_switchboard_never_runs_in_a_replay(worker_factory: Any, start_run: Any) -> None:
    worker_factory("replay")
    original = run_wait(start_run("How long does shipping take?").id)
    plan = replay_plan_for(original, model="another-model")  # every agent that asks a model is live
    envelope = Envelope.from_dict(Run.objects.get(id=original.id).start_envelope).evolve(replay=plan.to_dict())
    outbound = Outbound()
    tape = tape_open(envelope, outbound.name)
    with pytest.raises(RunHalted, match="never runs outbound live") as halted:
        step_handle(outbound, envelope, NoMemo("001.outbound"), tape)
    assert halted.value.code == "replay_unsafe" and outbound.sent == 0
    assert {"triage", "planner", "tools", "responder", "validator"} <= set(plan.live)


class Outbound(Agent):
    """Stands in for a remote A2A agent: it would send to a partner."""

    name = "outbound"
    replay_safe = False
    sent = 0

    def handle(self, envelope: Envelope) -> AgentResult:
        self.sent += 1
        return AgentResult()
