"""The chat page in a real browser: Debian's chromium driven by Playwright, against uvicorn and a worker.

It signs in, asks about shipping, watches the agents' steps light up over SSE,
reads the grounded reply, and sees the review state for a refund over the
limit. Its screenshots go to .run/screenshots/; `SCREENSHOTS_DIR=docs` refreshes the
README's (docs/chat*.png) without every test run rewriting tracked files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from conversations.services import customer_create
from tests.conftest import order_add

# Assertions wait as long as the page does: a shard under load answers a POST in more than expect's default 5 s.
expect.set_options(timeout=20_000)

pytestmark = [pytest.mark.e2e]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / os.environ.get("SCREENSHOTS_DIR", ".run/screenshots")
# Without these, Chromium tries the network at start-up, which this machine refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser():
    """Launch the browser once the test has written its data: Playwright's sync API runs an event
    loop in this thread, and Django refuses database calls from inside one."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium package."
    opened = []

    def launch():
        playwright = sync_playwright().start()
        opened.append(playwright)
        return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

    yield launch
    for playwright in opened:
        playwright.stop()


def test_sign_in_ask_watch_progress_and_read_the_reply(stack, transactional_db, browser) -> None:
    web, _worker = stack
    customer = customer_create(email="dana@example.com", name="Dana", password="dana-password-1")
    order_add(customer, "SB-60002", "Aurora noise-cancelling headphones", "249.00")
    page = browser().new_page(viewport={"width": 1100, "height": 780})
    page.set_default_timeout(20_000)

    page.goto(web.url + "/")
    assert "/login/" in page.url  # the page needs a session
    page.get_by_label("Email").fill("dana@example.com")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    page.get_by_label("Password").fill("dana-password-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()

    # Keyboard only: the message box has a label; Enter sends.
    page.get_by_label("Your message").fill("How long does shipping take?")
    page.get_by_label("Your message").press("Enter")
    expect(page.locator(".message.customer").last).to_contain_text("How long does shipping take?")
    for agent in ("triage", "planner", "retrieval", "account", "responder", "validator", "deliver"):
        expect(page.locator(f'.step[data-agent="{agent}"]')).to_have_attribute("data-status", "completed")
    reply = page.locator(".message.assistant").last
    expect(reply).to_contain_text("Standard shipping takes 2 to 4 business days within Germany")
    expect(reply).to_contain_text("Source: Shipping times and costs")
    expect(page.locator("#review-banner")).to_be_hidden()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat.png"))

    # A refund over the limit: a person has to check it.
    page.get_by_label("Your message").fill("Please refund order SB-60002, the headphones broke.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#review-banner")).to_be_visible()
    expect(page.locator("#review-banner")).to_contain_text("A person is checking this")
    expect(page.locator("#review-reason")).to_contain_text("checks this refund before anything is issued")
    expect(page.locator(".message.system").last).to_contain_text("member of our support team")
    expect(page.locator('.step[data-agent="validator"]')).to_have_attribute("data-status", "completed")
    assert page.locator('.step[data-agent="deliver"]').count() == 0
    page.screenshot(path=str(SCREENSHOTS / "chat-review.png"))

    # The conversation list and a reload keep the history.
    page.reload()
    expect(page.locator(".message.assistant").first).to_contain_text("2 to 4 business days")
    expect(page.locator("#conversation-list button")).to_have_count(1)

    # Readable at a phone's width: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    expect(page.get_by_label("Your message")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "chat-phone.png"))


def test_the_page_refuses_a_staff_account_without_a_customer_profile(stack, transactional_db, browser) -> None:
    from django.contrib.auth import get_user_model

    web, _worker = stack
    get_user_model().objects.create_user("ops@example.com", password="ops-password-1", is_staff=True)
    page = browser().new_page()
    page.goto(web.url + "/login/")
    page.get_by_label("Email").fill("ops@example.com")
    page.get_by_label("Password").fill("ops-password-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="No customer account")).to_be_visible()
