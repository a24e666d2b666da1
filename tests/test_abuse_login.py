"""Sign-in lockout (django-axes), the Content-Security-Policy (django-csp) and the cheap health endpoint
(issue 12), against uvicorn and a worker as `make run` serves them."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import CookieJar
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from playwright.sync_api import expect, sync_playwright

from api.services import api_token_get_or_create
from conversations.services import customer_create, user_create
from tests.http import ApiClient
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.e2e]

STACK_ENV = {"LOGIN_COOLOFF_SECONDS": "3", "HEALTH_CACHE_SECONDS": "30"}
LOCKED = "Too many failed sign-in attempts"


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is the answer to look at


class Browser:
    """A cookie-keeping HTTP client that signs in through the HTML forms, as a person would."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()), NoRedirects)

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, Any, str]:
        """Status, headers (case-insensitive) and page."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(urllib.request.Request(self.base_url + path, data=data), timeout=20) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    def sign_in(self, path: str, username: str, password: str) -> tuple[int, Any, str]:
        _, _, page = self.request(path)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert csrf, page[:500]
        form = {"username": username, "password": password, "csrfmiddlewaretoken": csrf.group(1), "next": "/"}
        return self.request(path, form)


def test_five_wrong_passwords_lock_the_sign_in_until_the_cool_off(stack, make_customer) -> None:
    web, _worker = stack
    customer = customer_create(email="locked@example.com", name="Lock", password="right-password-1")
    token = api_token_get_or_create(user=customer.user)
    customer_create(email="neighbour@example.com", name="Next door", password="other-password-1")
    browser = Browser(web.url)
    statuses = [browser.sign_in("/login/", "locked@example.com", "wrong-password")[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]

    status, headers, page = browser.sign_in("/login/", "locked@example.com", "right-password-1")
    assert status == 429 and LOCKED in page and "try again in 1 minute" in page
    assert int(headers["Retry-After"]) == 3
    assert browser.request("/")[0] == 302  # not signed in: sent to the sign-in page

    # The lockout is for that username from this address: others sign in; API tokens are never locked.
    assert Browser(web.url).sign_in("/login/", "neighbour@example.com", "other-password-1")[0] == 302
    assert ApiClient(web.url + "/api/v1", token).get("/orders/").status == 200

    time.sleep(3.5)  # LOGIN_COOLOFF_SECONDS, counted from the last failed (or locked-out) attempt
    status, headers, _ = browser.sign_in("/login/", "locked@example.com", "right-password-1")
    assert status == 302 and headers["Location"] == "/"
    assert browser.request("/")[0] == 200


def test_the_admin_sign_in_locks_too(stack, transactional_db) -> None:
    web, _worker = stack
    user_create(email="ops@example.com", password="ops-password-1", is_staff=True)
    browser = Browser(web.url)
    for _ in range(5):
        browser.sign_in("/admin/login/", "ops@example.com", "wrong-password")
    status, _, page = browser.sign_in("/admin/login/", "ops@example.com", "ops-password-1")
    assert status == 429 and LOCKED in page and 'href="/admin/login/"' in page
    assert browser.request("/admin/")[0] == 302


def csp(headers: Any) -> dict[str, list[str]]:
    policy = headers["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def test_the_chat_page_and_the_admin_carry_a_content_security_policy(stack, make_customer) -> None:
    web, _worker = stack
    customer_create(email="csp@example.com", name="Csp", password="csp-password-1")
    browser = Browser(web.url)
    assert browser.sign_in("/login/", "csp@example.com", "csp-password-1")[0] == 302
    status, headers, page = browser.request("/")
    assert status == 200 and "Conversations" in page
    policy = csp(headers)
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and "<style" not in page and " style=" not in page
    assert re.search(r'<script src="/static/chat/chat\.js"', page)

    for path in ("/admin/login/", "/api/v1/docs/"):
        policy = csp(browser.request(path)[1])
        assert policy["script-src"] == ["'self'"] and "'unsafe-inline'" in policy["style-src"]
    assert csp(browser.request("/api/v1/health/")[1])["script-src"] == ["'self'"]


def test_pages_work_under_the_policy_in_a_browser(stack, transactional_db) -> None:
    """Chat page, admin and the API docs in chromium: rendered, nothing of theirs refused. (Redoc asks for
    two third-party resources, Google's fonts and its own logo: refused, and it renders without them.)"""
    web, _worker = stack
    customer_create(email="pw@example.com", name="Pat", password="pw-password-1")
    user = user_create(email="admin-csp@example.com", password="admin-password-1", is_staff=True)
    user.is_superuser = True
    user.save()
    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(20_000)
        page.on("console", lambda message: refused.append(message.text) if "Content Security" in message.text else 0)
        third_party = ("'https://fonts.googleapis.com/css2?", "'https://cdn.redoc.ly/redoc/logo-mini.svg'")

        page.goto(web.url + "/login/")
        page.get_by_label("Email").fill("pw@example.com")
        page.get_by_label("Password").fill("pw-password-1")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_label("Your message").fill("How long does shipping take?")
        page.get_by_label("Your message").press("Enter")
        expect(page.locator(".message.assistant").last).to_contain_text("2 to 4 business days")

        page.goto(web.url + "/admin/login/")
        page.locator("#id_username").fill("admin-csp@example.com")
        page.locator("#id_password").fill("admin-password-1")
        page.locator("input[type=submit]").click()
        expect(page.locator("#site-name")).to_be_visible()
        page.goto(web.url + "/admin/orchestration/reviewitem/")
        expect(page.locator("#changelist")).to_be_visible()

        page.goto(web.url + "/api/v1/docs/")
        expect(page.locator(".opblock").first).to_be_visible()
        assert refused == [], refused
        page.goto(web.url + "/api/v1/redoc/")
        expect(page.get_by_text("Switchboard API").first).to_be_visible()
        expect(page.get_by_role("heading", name="Your orders")).to_be_visible()
        browser.close()
    assert refused and all(any(url in text for url in third_party) for text in refused), refused


def pidbox_channel() -> str:
    """The Redis channel Celery's control broadcasts (a worker ping) go out on, for this test's database."""
    db = urllib.parse.urlparse(django_settings.CELERY_BROKER_URL).path.strip("/") or "0"
    return f"/{db}.celery.pidbox"


def test_health_is_cheap_and_its_details_are_for_staff(stack, transactional_db) -> None:
    web, worker = stack
    staff_token = api_token_get_or_create(user=user_create(email="ops-health@example.com", is_staff=True))
    listener = redis.Redis.from_url(django_settings.CELERY_BROKER_URL).pubsub()
    listener.subscribe(pidbox_channel())
    broadcasts: list[Any] = []
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            message = listener.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message:
                broadcasts.append(message)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        with ThreadPoolExecutor(60) as pool:
            answers = list(pool.map(lambda _: ApiClient(web.url + "/api/v1").get("/health/", timeout=30), range(60)))
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert {answer.status for answer in answers} == {200}
    assert len(broadcasts) <= 1  # one worker ping per HEALTH_CACHE_SECONDS in the process, not one per call

    public = answers[0].json
    assert public == {"status": "ok", "checks": {name: {"ok": True} for name in ("database", "broker", "workers")}}
    staff = ApiClient(web.url + "/api/v1", staff_token).get("/health/").json
    assert staff["checks"]["workers"]["workers"] == [worker.hostname]
    assert staff["checks"]["database"]["latency_ms"] >= 0 and json.dumps(staff).count("latency_ms") == 2
