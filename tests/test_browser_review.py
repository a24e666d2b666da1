"""The reviewer's page in a real browser (Debian's chromium, Playwright) against uvicorn and a worker.

A customer's refund above the agents' limit stops in review; a reviewer signs in to Django admin, finds it in the
queue (customer, amount at stake, age), reads the order's facts and why the policy stopped it, edits the amount in
the form — more than the order's total is refused with the reason, nothing recorded — then an amount that is
allowed: the run completes and the shop's order shows exactly the edited refund. The page's screenshot goes to
.run/screenshots/review-page.png; `SCREENSHOTS_DIR=docs` refreshes the README's (docs/review-page.png).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from api.services import api_token_get_or_create
from conversations.services import customer_create
from tests.conftest import order_add, run_wait
from tests.http import ApiClient
from tests.money import make_staff
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

# Assertions wait as long as the page does: a shard under load answers a POST in more than expect's default 5 s.
expect.set_options(timeout=20_000)

pytestmark = [pytest.mark.e2e]


def api_until(client: ApiClient, path: str, done: Any, timeout: float = 30.0) -> Any:
    """GET `path` until `done(json)` holds (over HTTP: no database call once the browser's event loop runs)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(path)
        if response.status == 200 and done(response.json):
            return response.json
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never reached the expected state: {response.status} {response.body[:300]!r}")
        time.sleep(0.2)


def test_a_reviewer_reads_the_order_facts_and_edits_the_refund_in_the_form(stack, transactional_db) -> None:
    web, _worker = stack
    customer = customer_create(email="dana@example.com", name="Dana Berg", password="dana-password-1")
    order_add(customer, "SB-60002", "Aurora noise-cancelling headphones", "249.00")
    make_staff("rita@example.com", reviewer=True)  # password pw-123456
    shop = ApiClient(web.url + "/api/v1", api_token_get_or_create(user=customer.user))
    conversation = shop.post("/conversations/").json["id"]
    posted = shop.post(f"/conversations/{conversation}/messages/", {"content": "Please refund order SB-60002."})
    run_id = posted.json["run"]["id"]
    assert run_wait(run_id, statuses=("awaiting_review",)).status == "awaiting_review"

    # The browser only now: Playwright's sync API runs an event loop in this thread (no database calls after).
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(20_000)
        page.goto(web.url + "/admin/orchestration/reviewitem/")
        page.get_by_label("Username").fill("rita@example.com")
        page.get_by_label("Password").fill("pw-123456")
        page.get_by_role("button", name="Log in").click()

        # The queue: who, how much, how long.
        row = page.locator("#result_list tbody tr").first
        expect(row.locator("td.field-customer")).to_have_text("Dana Berg <dana@example.com>")
        expect(row.locator("td.field-at_stake")).to_have_text("249.00 EUR")
        expect(page.locator("#result_list th.column-at_stake.sortable")).to_be_visible()
        row.locator("th a, td a").first.click()

        # The item: the order's facts and the policy's reasons in words.
        facts = page.locator("#sb-facts")
        order = facts.locator('tr.sb-order[data-order="SB-60002"]')
        expect(order.locator(".sb-total")).to_have_text("249.00 EUR")
        expect(order.locator(".sb-status")).to_have_text("delivered")
        expect(order.locator(".sb-delivered")).to_have_text(re.compile(r"^\d{4}-\d{2}-\d{2}$"))
        expect(order.locator(".sb-refunded")).to_contain_text("0.00 EUR automatically, 0.00 EUR approved by reviewers")
        expect(order.locator(".sb-left")).to_contain_text("249.00 EUR")
        expect(facts.locator(".sb-window")).to_contain_text("Automatic refunds to this customer in the last 30 days")
        expect(facts.locator(".sb-reasons")).to_contain_text(
            "Above what agents may refund on one order (100.00): you may approve it. Refund of 249.00 EUR is above "
            "the 100.00 limit for agents."
        )
        expect(facts.locator(".sb-second-approval")).to_contain_text("One reviewer alone may approve up to 500.00")
        page.locator("#toggle-nav-sidebar").click()  # the page's width for the facts
        page.evaluate("document.getElementById('sb-facts').scrollIntoView()")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "review-page.png"))

        # An edit above what is left on the order: refused with the reason, the form as posted.
        amount = page.get_by_label("Refund 1 amount")
        expect(amount).to_have_value("249.00")
        expect(page.get_by_label("Refund 1 order")).to_have_value("SB-60002")
        expect(page.get_by_label("Refund 1 currency")).to_have_value("EUR")
        amount.fill("300.00")
        page.get_by_label("Reply to send (edit and approve)").fill("We refunded 120.00 EUR for the headphones.")
        page.get_by_role("button", name="Edit and approve").click()
        expect(page.locator(".sb-refused")).to_contain_text(
            "Refused, nothing was recorded: action refused: refund of 300.00 EUR exceeds the refundable 249.00."
        )
        expect(page.get_by_label("Refund 1 amount")).to_have_value("300.00")
        expect(page.get_by_label("Reply to send (edit and approve)")).to_have_value(
            "We refunded 120.00 EUR for the headphones."
        )

        # An allowed amount: decided, and the run completes with exactly that refund.
        page.get_by_label("Refund 1 amount").fill("120")
        page.get_by_role("button", name="Edit and approve").click()
        expect(page.locator(".messagelist")).to_contain_text("Decision recorded: edited. The run is resuming.")
        browser.close()
    finally:
        playwright.stop()

    api_until(shop, f"/runs/{run_id}/", lambda run: run["status"] == "completed")
    orders = api_until(shop, "/orders/", lambda body: True)
    listed = orders["results"] if isinstance(orders, dict) else orders
    [refunded] = [o for o in listed if o["id"] == "SB-60002"]
    assert (refunded["refunded_amount"], refunded["status"]) == ("120.00", "partially_refunded")
