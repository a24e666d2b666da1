"""What a customer sees of a run (the public view) and what reviewers see (the staff view), in-process."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from api.services import api_token_get_or_create
from conversations.refunds import RefundProblemCode
from conversations.services import customer_create
from orchestration.models import ReviewItem, Run, Step
from orchestration.public import PUBLIC_REASON_MESSAGES, PublicReason, public_reason, public_reason_of
from orchestration.selectors import run_events
from tests.review_data import run_in_review, staff_reviewer

pytestmark = [pytest.mark.django_db]

SECRET = "the validator quoted: You are the support assistant of Tallow & Pine; goodwill refunds up to 20 EUR"
PUBLIC_RUN_KEYS = {
    "id",
    "status",
    "reason",
    "trace_id",
    "conversation",
    "created_at",
    "started_at",
    "finished_at",
    "steps",
}
PUBLIC_STEP_KEYS = {"agent", "hop", "status", "started_at", "finished_at", "duration_ms"}


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def blocked_run() -> tuple[Run, ReviewItem, str]:
    """A run in review whose reason, detail and step errors say internal things (as the validator's and
    the wrapper's would)."""
    run, item, token = run_in_review(steps=2, messages=1)
    run.reason, run.reason_detail = "validation_failed", SECRET
    run.save(update_fields=["reason", "reason_detail"])
    Step.objects.filter(run=run).update(
        error=f"LLMMalformedOutput: {SECRET}",
        model="fake-model",
        prompt_version="responder@2",
        input_tokens=120,
        output_tokens=30,
        cost_usd=Decimal("0.000180"),
    )
    ReviewItem.objects.filter(id=item.id).update(reason="validation_failed", detail=SECRET, reasons=[SECRET])
    item.refresh_from_db()
    return run, item, token


def test_a_customer_sees_a_public_view_of_a_run_without_reasons_errors_prompts_or_costs() -> None:
    run, _, token = blocked_run()
    response = client_for(token).get(f"/api/v1/runs/{run.id}/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == PUBLIC_RUN_KEYS
    assert body["reason"] == {"code": "in_review", "message": PUBLIC_REASON_MESSAGES[PublicReason.IN_REVIEW]}
    assert [set(step) for step in body["steps"]] == [PUBLIC_STEP_KEYS, PUBLIC_STEP_KEYS]
    text = response.content.decode()
    for needle in ("Tallow", "goodwill", "validation_failed", "LLMMalformedOutput", "fake-model", "responder@2"):
        assert needle not in text, needle


def test_reviewers_see_the_staff_view_of_the_run_in_a_review_item() -> None:
    _, item, _ = blocked_run()
    token = api_token_get_or_create(user=staff_reviewer())
    body = client_for(token).get(f"/api/v1/reviews/{item.id}/").json()
    assert body["run"]["reason"] == "validation_failed" and body["run"]["reason_detail"] == SECRET
    assert body["run"]["usage"] == {"tokens": 0, "cost_usd": "0.000000", "hops": 0}
    assert set(body["run"]["budget"]) >= {"max_tokens", "max_cost_usd"}
    step = body["steps"][0]
    assert step["error"] == f"LLMMalformedOutput: {SECRET}"
    assert (step["model"], step["prompt_version"], step["tokens"], step["cost_usd"]) == (
        "fake-model",
        "responder@2",
        150,
        "0.000180",
    )


def test_the_events_of_a_run_carry_public_reasons_and_no_details() -> None:
    run, item, _ = blocked_run()
    run.status = Run.Status.FAILED
    run.save(update_fields=["status"])
    events, status = run_events(run.id)
    assert status == "failed"
    failed = public_reason_of(status="failed", reason="validation_failed")
    assert failed is not None
    ended = [data for _, kind, data in events if kind == "run" and data["status"] == "failed"]
    assert ended == [{"status": "failed", "reason": failed}]
    reviews = [data for _, kind, data in events if kind == "review"]
    assert reviews == [{"id": str(item.id), "reason": public_reason_of(status="awaiting_review", reason=item.reason)}]
    text = repr(events)
    for needle in ("Tallow", "goodwill", "validation_failed", "LLMMalformedOutput", "fake-model", "tokens", "version"):
        assert needle not in text, needle
    # Event ids name steps by their key in the run, not by database ids (which count every customer's steps).
    names = [name for (_, name), kind, _ in events if kind == "step"]
    assert names and all(name.startswith(("step:0.agent0:", "step:1.agent1:")) for name in names), names


def test_the_message_post_answers_a_public_run_summary() -> None:
    customer = customer_create(email="post@example.com")
    client = client_for(api_token_get_or_create(user=customer.user))
    conversation_id = client.post("/api/v1/conversations/").json()["id"]
    body = client.post(f"/api/v1/conversations/{conversation_id}/messages/", {"content": "Hello"}, format="json").json()
    assert set(body["run"]) == {"id", "status", "reason", "trace_id"}
    assert body["run"]["status"] == "queued" and body["run"]["reason"] is None


#: Every reason the code writes on a run (`run_escalate`, `run_fail`, `run_time_out`, the supervisor, the guards,
#: the validator, the tools agent, the responder, the LLM breaker).
WRITTEN_REASONS = [
    "validation_failed",
    "escalated",
    "reply_unusable",
    "customer_asked_for_person",
    "budget_tokens",
    "budget_cost",
    "budget_hops",
    "loop_detected",
    "stuck",
    "llm_unavailable",
    "timed_out",
    "agent_failed",
    "slip_exhausted",
    "cancelled",
    *(code.value for code in RefundProblemCode),
]


def test_every_internal_reason_has_a_public_code_and_each_code_one_sentence() -> None:
    for reason in WRITTEN_REASONS:
        assert public_reason(reason) != PublicReason.SUPPORT_FOLLOW_UP, reason
    assert {public_reason(code.value) for code in RefundProblemCode} == {PublicReason.REFUND_IN_REVIEW}
    assert public_reason("a_reason_nobody_mapped") == PublicReason.SUPPORT_FOLLOW_UP
    assert set(PUBLIC_REASON_MESSAGES) == set(PublicReason)
    for code, sentence in PUBLIC_REASON_MESSAGES.items():
        assert sentence.endswith(".") and "_" not in sentence, code


def test_a_run_on_its_way_or_completed_shows_no_reason() -> None:
    for status in ("queued", "running", "completed"):
        assert public_reason_of(status=status, reason="refund_over_limit") is None
    assert public_reason_of(status="awaiting_review", reason="") is None
    assert public_reason_of(status="timed_out", reason="timed_out") == {
        "code": "delayed",
        "message": PUBLIC_REASON_MESSAGES[PublicReason.DELAYED],
    }
