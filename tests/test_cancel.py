"""Cancelling runs end to end: the REST endpoint, real Celery workers (started per test, so a run can wait queued
with none), PostgreSQL and Redis. Once a cancel is recorded nothing the run prepared happens: no reply, no refund —
not from a step already under way, not from its messages still queued, not from a reviewer's decision."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from agents.envelope import Envelope
from agents.models import LedgerEntry
from conversations.models import Message, Order
from conversations.services import customer_create
from harness.processes import web_server
from orchestration.cancel import run_cancel
from orchestration.models import ReviewItem, Run, Step
from orchestration.pipeline import canvas_for
from orchestration.runs import CUSTOMER_NOTICE_CANCELLED, run_escalate
from orchestration.supervisor import queues_waiting
from project.celery import app
from tests.conftest import WORKER_ENV, order_add, run_wait, wait_for
from tests.http import ApiClient
from tests.money import make_staff
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from tests.test_live_progress import read_events

pytestmark = [pytest.mark.e2e]

#: Rest of a run's pipeline with a slow agent just before deliver (the planner's plans, written out).
LOOKUPS = ["triage", ["retrieval", "account"]]
SLOW_SHIPPING = [*LOOKUPS, "responder", "validator", "sleepy", "deliver"]
SLOW_REFUND = [*LOOKUPS, "tools", "responder", "validator", "sleepy", "deliver"]


def post_message(client: Any, content: str) -> str:
    conversation_id = client.post("/conversations/").json["id"]
    posted = client.post(f"/conversations/{conversation_id}/messages/", {"content": content})
    assert posted.status == 202, posted.body
    return posted.json["run"]["id"]


def quiet(worker: Any, timeout: float = 30.0) -> None:
    """Wait (bounded) until nothing is left to do: no message waiting in the queues, none under way in the worker."""

    def idle() -> bool:
        active = app.control.inspect(destination=[worker.hostname], timeout=1).active() or {}
        return queues_waiting() == 0 and active.get(worker.hostname) == []

    wait_for(idle, timeout=timeout, interval=0.3)


def messages_of(run_id: object) -> list[tuple[str, str]]:
    run = Run.objects.get(id=run_id)
    return list(Message.objects.filter(conversation_id=run.conversation_id).values_list("role", "content"))


def test_a_queued_run_is_cancelled_and_its_queued_messages_do_nothing(worker_factory, make_customer, api) -> None:
    _, token = make_customer()
    client = api(token)
    run_id = post_message(client, "How long does shipping take?")
    assert client.get(f"/runs/{run_id}/").json["status"] == "queued"  # no worker yet

    cancelled = client.post(f"/runs/{run_id}/cancel/")
    assert cancelled.status == 200, cancelled.body
    body = cancelled.json
    assert body["status"] == "cancelled" and body["reason"]["code"] == "cancelled" and body["finished_at"]
    assert body == client.get(f"/runs/{run_id}/").json  # the run detail, as GET answers it
    again = client.post(f"/runs/{run_id}/cancel/")
    assert (again.status, again.json) == (200, body)

    # The run's first messages are still in the broker: a worker now takes them and does nothing.
    worker = worker_factory()
    quiet(worker)
    assert not Step.objects.filter(run_id=run_id).exists()
    assert [role for role, _ in messages_of(run_id)] == ["customer", "system"]
    assert messages_of(run_id)[1][1] == CUSTOMER_NOTICE_CANCELLED
    assert Run.objects.get(id=run_id).status == "cancelled"


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_run_cancelled_mid_step_sends_no_reply_even_when_the_slow_agent_finishes(
    worker_factory, make_customer, start_run, api, pool: str
) -> None:
    # prefork: the slow try is terminated (revoked); threads: it cannot be, it finishes and its result is dropped.
    worker = worker_factory(pool=pool)
    customer, token = make_customer()
    run = start_run(slip=SLOW_SHIPPING, customer=customer)
    wait_for(lambda: Step.objects.filter(run=run, agent="sleepy", status="running").exists())
    cancelled = api(token).post(f"/runs/{run.id}/cancel/")
    assert cancelled.status == 200 and cancelled.json["status"] == "cancelled", cancelled.body
    assert any(s["agent"] == "sleepy" and s["status"] == "failed" for s in cancelled.json["steps"])

    time.sleep(3)  # past the slow agent's 2.5 s: it has finished (threads) or been terminated (prefork)
    quiet(worker)
    run = Run.objects.get(id=run.id)
    assert run.status == "cancelled"
    assert not Step.objects.filter(run=run, agent="deliver").exists()
    sleepy = Step.objects.get(run=run, agent="sleepy")
    assert sleepy.status == "failed" and sleepy.error == "the run was cancelled"
    assert [a.status for a in sleepy.attempts.all()] == ["abandoned"]
    assert [role for role, _ in messages_of(run.id)] == ["customer", "system"]
    assert not LedgerEntry.objects.filter(run_id=str(run.id)).exists()


def test_a_refund_cancelled_before_deliver_executes_nothing(worker_factory, make_customer, start_run) -> None:
    worker = worker_factory()
    customer, _ = make_customer()
    order_add(customer, "SB-72001", "Set of 4 enamel camping mugs", "45.00")
    run = start_run("Please refund my order SB-72001, the mugs arrived chipped.", slip=SLOW_REFUND, customer=customer)
    wait_for(lambda: Step.objects.filter(run=run, agent="sleepy", status="running").exists())
    validated = Step.objects.get(run=run, agent="validator").output["envelope"]
    # Deliver would refund: the validator approved the refund under the limit.
    assert validated["payload"]["approved_actions"][0]["order_id"] == "SB-72001"
    run_cancel(run_id=run.id, customer=customer)
    # Deliver's message arrives anyway (a duplicate, a late re-dispatch): it executes nothing.
    canvas_for(Envelope.from_dict(validated).evolve(slip=["deliver"])).apply_async()
    time.sleep(3)
    quiet(worker)
    assert Run.objects.get(id=run.id).status == "cancelled"
    assert not Step.objects.filter(run=run, agent="deliver").exists()
    assert not LedgerEntry.objects.exists()
    assert Order.objects.get(id="SB-72001").refunded_amount == Decimal("0")
    assert [role for role, _ in messages_of(run.id)] == ["customer", "system"]


def test_a_completed_run_cannot_be_cancelled(worker_factory, make_customer, api) -> None:
    worker_factory()
    _, token = make_customer()
    client = api(token)
    run_id = post_message(client, "How long does shipping take?")
    assert run_wait(run_id).status == "completed"
    refused = client.post(f"/runs/{run_id}/cancel/")
    assert refused.status == 409
    assert refused.json["error"]["code"] == "not_cancelable"
    assert "already ended (completed)" in refused.json["error"]["message"] and refused.json["trace_id"]
    assert client.get(f"/runs/{run_id}/").json["status"] == "completed"
    assert [role for role, _ in messages_of(run_id)] == ["customer", "assistant"]


def test_another_customers_run_is_not_found(make_customer, api) -> None:
    _, token = make_customer()
    _, other_token = make_customer()
    run_id = post_message(api(token), "How long does shipping take?")
    for client, status in ((api(other_token), 404), (api(None), 401)):
        refused = client.post(f"/runs/{run_id}/cancel/")
        assert refused.status == status and set(refused.json) == {"error", "trace_id"}
    assert api(other_token).post("/runs/not-a-run/cancel/").status == 404
    _, staff_token = make_staff("staff@example.com", reviewer=False)
    assert api(staff_token).post(f"/runs/{run_id}/cancel/").status == 403
    assert Run.objects.get(id=run_id).status == "queued"


def test_a_run_in_review_is_cancelled_and_a_later_decision_refused(worker_factory, make_customer, api) -> None:
    worker = worker_factory()
    customer, token = make_customer()
    order_add(customer, "SB-72002", "Aurora noise-cancelling headphones", "249.00")
    run_id = post_message(api(token), "Please refund order SB-72002, the headphones broke.")
    assert run_wait(run_id).status == "awaiting_review"
    item = ReviewItem.objects.get(run_id=run_id)
    _, reviewer_token = make_staff("rita@example.com", reviewer=True)
    reviewer = api(reviewer_token)
    assert [entry["id"] for entry in reviewer.get("/reviews/").json["results"]] == [str(item.id)]

    assert api(token).post(f"/runs/{run_id}/cancel/").json["status"] == "cancelled"
    item.refresh_from_db()
    assert item.status == "cancelled"
    assert reviewer.get("/reviews/").json["results"] == []
    refused = reviewer.post(f"/reviews/{item.id}/decision/", {"decision": "approve"})
    assert refused.status == 409 and refused.json["error"]["code"] == "conflict"
    assert "its run was cancelled" in refused.json["error"]["message"]
    quiet(worker)
    assert Run.objects.get(id=run_id).status == "cancelled"
    assert not LedgerEntry.objects.exists() and Order.objects.get(id="SB-72002").refunded_amount == 0
    roles = [role for role, _ in messages_of(run_id)]
    assert roles == ["customer", "system", "system"]  # asked, "a person is checking", stopped


def at_once(**posts: tuple[Any, str, Any]) -> dict[str, int]:
    """Send these POSTs (name: (client, path, body)) in threads released together; their statuses by name."""
    barrier, statuses = threading.Barrier(len(posts)), {}

    def post(name: str, client: Any, path: str, body: Any) -> None:
        barrier.wait()
        statuses[name] = client.post(path, body).status

    threads = [threading.Thread(target=post, args=(name, *args)) for name, args in posts.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return statuses


def test_a_cancel_and_a_decision_at_once_never_let_the_run_deliver(worker_factory, make_customer, api) -> None:
    # The decision locks its item, then the run; the cancel takes them in the same order: whichever comes first, the
    # other waits, and the run ends cancelled (a decision first resumes it; the cancel then stops it before deliver).
    _, token = make_customer()
    _, reviewer_token = make_staff("rita@example.com", reviewer=True)
    for _ in range(4):
        run_id = post_message(api(token), "How long does shipping take?")
        run = Run.objects.get(id=run_id)
        run.status = Run.Status.RUNNING
        item = run_escalate(run, reason="validation_failed")
        ReviewItem.objects.filter(id=item.id).update(proposed_reply="Shipping takes 2 to 4 days.")
        statuses = at_once(
            cancel=(api(token), f"/runs/{run_id}/cancel/", None),
            decide=(api(reviewer_token), f"/reviews/{item.id}/decision/", {"decision": "approve"}),
        )
        assert statuses["cancel"] == 200 and statuses["decide"] in (200, 409), statuses
        assert Run.objects.get(id=run_id).status == "cancelled"
    worker = worker_factory()  # the runs' messages (triage, and deliver after a decision) are delivered now
    quiet(worker)
    assert not Message.objects.filter(role="assistant").exists() and not LedgerEntry.objects.exists()
    assert not Step.objects.filter(agent="deliver").exists()


def test_the_event_stream_ends_with_the_cancelled_status(make_customer, database_url) -> None:
    web = web_server(database_url, env={**WORKER_ENV, "SSE_POLL_SECONDS": "0.5"}).start()
    try:
        _, token = make_customer()
        client = ApiClient(web.url + "/api/v1", token)
        run_id = post_message(client, "How long does shipping take?")
        read: dict[str, Any] = {}
        reader = threading.Thread(
            target=lambda: read.update(events=read_events(f"{web.url}/api/v1/runs/{run_id}/events/", token)[0])
        )
        reader.start()
        time.sleep(1)  # the stream is open and waiting: the run is queued (no worker)
        assert client.post(f"/runs/{run_id}/cancel/").status == 200
        reader.join(timeout=20)
        events = read["events"]
        assert [kind for _, kind, _ in events][:1] == ["run"] and events[0][2] == {"status": "queued"}
        assert events[-1][1:] == ("end", {"status": "cancelled", "run": run_id})
        runs = [data for _, kind, data in events if kind == "run"]
        assert runs[-1]["status"] == "cancelled" and runs[-1]["reason"]["code"] == "cancelled"
        notice = [data for _, kind, data in events if kind == "message"]
        assert [(m["role"], m["content"]) for m in notice] == [("system", CUSTOMER_NOTICE_CANCELLED)]
    finally:
        web.stop()


def test_the_chat_pages_stop_button_cancels_the_answer(transactional_db, database_url) -> None:
    customer_create(email="stop@example.com", name="Sam", password="stop-password-1")
    web = web_server(database_url, env=WORKER_ENV).start()  # no worker: the answer waits, queued, until stopped
    # Playwright's sync API runs an event loop in this thread: no database calls from here until it stops.
    playwright = sync_playwright().start()
    errors: list[str] = []
    try:
        page = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS).new_page()
        page.on("console", lambda m: errors.append(f"{m.text} {m.location['url']}") if m.type == "error" else None)
        page.set_default_timeout(20_000)
        page.goto(web.url + "/login/")
        page.get_by_label("Email").fill("stop@example.com")
        page.get_by_label("Password").fill("stop-password-1")
        page.get_by_role("button", name="Sign in").click()
        stop = page.get_by_role("button", name="Stop")
        expect(stop).to_be_hidden()
        page.get_by_label("Your message").fill("How long does shipping take?")
        page.get_by_label("Your message").press("Enter")
        expect(stop).to_be_visible()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "chat-stop.png"))
        stop.click()
        expect(page.locator("#progress-title")).to_have_text("Stopped: no answer was sent")
        expect(page.locator(".message.system").last).to_have_text("Notice" + CUSTOMER_NOTICE_CANCELLED)
        expect(stop).to_be_hidden()
        expect(page.locator("#progress")).to_have_attribute("data-done", "true")  # the stream's `end` came
        assert page.locator(".message.assistant").count() == 0
        page.screenshot(path=str(SCREENSHOTS / "chat-stopped.png"))
    finally:
        playwright.stop()
        web.stop()
    # No Content-Security-Policy violation, no script error (the page has no favicon: the browser's own request).
    assert [error for error in errors if not error.endswith("/favicon.ico")] == []
    assert list(Run.objects.values_list("status", flat=True)) == ["cancelled"]
