"""The brand is configuration (`project/settings_brand.py`): the shop's name, the persona, the tone and languages
reach every prompt (whatever the provider), the customer notices and public reasons use the configured wording, the
chat page shows the configured name, and the demo shop's name is written nowhere else in the product."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents import planner, responder, triage, validator
from agents.llm.offline import OfflineProvider
from agents.tools import agent as tools_agent
from harness.processes import SupervisorProcess, WorkerProcess, web_server
from orchestration import runs
from orchestration.public import PUBLIC_REASON_MESSAGES, PublicReason
from tests.conftest import WORKER_ENV, broker_reset, llm_env, run_wait
from tests.http import ApiClient

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NAME = "Tallow & Pine"
BRAND = {
    "BRAND_SHOP_NAME": "Fjord & Fell",
    "BRAND_SHOP_DESCRIPTION": "a mountain bike shop in Bergen",
    "BRAND_ASSISTANT_PERSONA": "Sigrid, the shop's support assistant",
    "BRAND_TONE": "Write warmly and briefly.",
    "BRAND_SUPPORT_LANGUAGES": "English,Norsk",
    "BRAND_ESCALATION_TEAM": "someone from the Fell crew",
    "BRAND_NOTICE_ESCALATED": "Hang tight: {team} at {shop} is on it.",
}
RESPONDER_VARIABLES = {
    "message": "How long does shipping take?",
    "order_ids": [],
    "passages": [],
    "tool_results": {},
    "actions": [],
    "history": [],
}


@pytest.fixture
def branded(settings: Any) -> Any:
    """The in-process settings as BRAND would make them."""
    for name, value in BRAND.items():
        setattr(settings, name, value.split(",") if name == "BRAND_SUPPORT_LANGUAGES" else value)
    return settings


# --- Defaults: today's texts, unchanged ----------------------------------------------------------------------------


def test_the_defaults_are_the_demo_shops_texts() -> None:
    assert responder.PROMPT.system.startswith(
        "You are the support assistant of Tallow & Pine, an online outdoor shop. Answer the customer using only"
    )
    assert triage.PROMPT.system.startswith("You classify customer-service messages for Tallow & Pine, an online ")
    assert "for a customer of Tallow & Pine. Tools:" in tools_agent.PROMPT.system
    assert runs.CUSTOMER_NOTICE_ESCALATED == (
        "Thanks for your patience — a member of our support team is checking this and will reply here."
    )
    assert PUBLIC_REASON_MESSAGES[PublicReason.IN_REVIEW] == (
        "A member of our support team is checking this and will reply here."
    )
    assert PUBLIC_REASON_MESSAGES[PublicReason.CANCELLED] == runs.CUSTOMER_NOTICE_CANCELLED


# --- In process: prompts, the offline provider, notices, the chat page ---------------------------------------------


def test_the_prompts_carry_the_configured_name_persona_tone_and_languages(branded: Any) -> None:
    system = responder.PROMPT.render(RESPONDER_VARIABLES)[0]["content"]
    assert system.startswith(
        "You are Sigrid, the shop's support assistant of Fjord & Fell, a mountain bike shop in Bergen. "
        "Write warmly and briefly. Answer in the customer's language when it is one of English, Norsk; "
        "otherwise in English. Answer the customer using only"
    )
    assert "Fjord & Fell, a mountain bike shop in Bergen" in triage.PROMPT.system
    assert "a customer of Fjord & Fell" in tools_agent.PROMPT.system
    for prompt in (triage.PROMPT, planner.PROMPT, tools_agent.PROMPT, responder.PROMPT, validator.PROMPT):
        assert DEFAULT_NAME not in prompt.system and "{" not in prompt.system.replace("{title}", "")


def test_the_offline_provider_sends_the_same_branded_prompt(settings: Any) -> None:
    """The offline provider counts the tokens of the rendered messages: a longer name costs more input tokens."""

    def input_tokens() -> int:
        answer = OfflineProvider().complete(
            triage.PROMPT, {"message": "Where is my parcel?", "intents": "x"}, agent="t"
        )
        assert answer.usage is not None
        return answer.usage.input_tokens

    plain = input_tokens()
    settings.BRAND_SHOP_NAME = "The Very Long Name Of A Shop That Sells Everything Under The Sun, Worldwide"
    assert input_tokens() > plain


def test_customer_notices_and_public_reasons_use_the_configured_wording(branded: Any) -> None:
    assert runs.CUSTOMER_NOTICE_ESCALATED == "Hang tight: someone from the Fell crew at Fjord & Fell is on it."
    assert runs.CUSTOMER_NOTICE_FAILED == (
        "Sorry, something went wrong while answering your message. Someone from the Fell crew will follow up here."
    )
    assert PUBLIC_REASON_MESSAGES[PublicReason.PERSON_REQUESTED] == (
        "You asked for a person: someone from the Fell crew will reply here."
    )
    branded.BRAND_NOTICE_CANCELLED = "Stopped: nothing was sent and nothing changed."
    assert PUBLIC_REASON_MESSAGES[PublicReason.CANCELLED] == runs.CUSTOMER_NOTICE_CANCELLED
    assert PUBLIC_REASON_MESSAGES[PublicReason.CANCELLED] == "Stopped: nothing was sent and nothing changed."
    assert all("support team" not in sentence for sentence in PUBLIC_REASON_MESSAGES.values())


def test_the_chat_page_shows_the_configured_name(branded: Any, client: Any, make_customer: Any) -> None:
    login = client.get("/login/").content.decode()
    assert "<title>Sign in · Fjord &amp; Fell support</title>" in login
    assert "<h1>Fjord &amp; Fell <span>support</span></h1>" in login
    customer, _ = make_customer()
    client.force_login(customer.user)
    page = client.get("/").content.decode()
    assert "<h1>Fjord &amp; Fell <span>support</span></h1>" in page
    assert '<span id="review-reason">Someone from the Fell crew will reply here.</span>' in page
    assert DEFAULT_NAME.replace("&", "&amp;") not in page
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)  # no inline script (CSP)


# --- The demo shop's name is configuration, not code ---------------------------------------------------------------

PRODUCT = ("project", "conversations", "agents", "orchestration", "api", "chat", "a2a_server", "harness", "bench")
#: The demo's help-centre documents are data (the shop's own texts), not code.
DATA = ROOT / "agents" / "knowledge" / "docs"


def test_the_default_shop_name_is_written_only_in_the_settings_module() -> None:
    files = [
        path
        for package in PRODUCT
        for path in (ROOT / package).rglob("*")
        if path.is_file()
        and path.suffix in (".py", ".html", ".js", ".css", ".txt", ".json")
        and DATA not in path.parents
        and "__pycache__" not in path.parts
    ]
    assert len(files) > 50
    needles = re.compile(r"Tallow\s*(?:&|&amp;|and)\s*Pine", re.IGNORECASE)
    found = sorted(str(p.relative_to(ROOT)) for p in files if needles.search(p.read_text(errors="replace")))
    assert found == ["project/settings_brand.py"]


# --- End to end: a worker and uvicorn started with the brand in their environment ----------------------------------


@pytest.fixture(scope="module")
def brand_stack(database_url: str, fake_server: Any) -> Iterator[Any]:
    """uvicorn, a worker and the supervisor, with BRAND in their environment and the fake OpenAI-compatible server
    as their model (what the agents send it is recorded)."""
    broker_reset()
    env = {**WORKER_ENV, **llm_env(fake_server), **BRAND}
    web = web_server(database_url, env=env).start()
    worker = WorkerProcess(database_url, name="brand", env=env).start()
    supervisor = SupervisorProcess(database_url, env=env).start()
    yield web
    supervisor.stop()
    worker.stop()
    web.stop()


@pytest.mark.e2e
def test_a_worker_configured_by_environment_brands_prompts_notices_and_page(
    brand_stack: Any, fake: Any, make_customer: Any
) -> None:
    web = brand_stack
    _, token = make_customer()
    client = ApiClient(web.url + "/api/v1", token)
    conversation_id = client.post("/conversations/").json["id"]

    # A shipping question answered: every prompt the model was sent names the configured shop.
    posted = client.post(f"/conversations/{conversation_id}/messages/", {"content": "How long does shipping take?"})
    assert run_wait(posted.json["run"]["id"]).status == "completed"
    [call] = fake.calls("responder")
    system = call.body["messages"][0]["content"]
    assert system.startswith("You are Sigrid, the shop's support assistant of Fjord & Fell, a mountain bike shop")
    assert "Write warmly and briefly." in system and "English, Norsk" in system
    assert "Fjord & Fell" in fake.calls("triage")[0].body["messages"][0]["content"]
    assert all(DEFAULT_NAME not in str(c.body) for c in fake.calls())

    # A reply the validator holds: the customer reads the configured notice and public reason.
    fake.answers["validator"] = {"pass": False, "reasons": ["not supported by the sources"]}
    posted = client.post(f"/conversations/{conversation_id}/messages/", {"content": "And to Norway?"})
    run = run_wait(posted.json["run"]["id"])
    assert run.status == "awaiting_review"
    messages = client.get(f"/conversations/{conversation_id}/messages/").json
    assert messages[-1]["role"] == "system"
    assert messages[-1]["content"] == "Hang tight: someone from the Fell crew at Fjord & Fell is on it."
    reason = client.get(f"/runs/{run.id}/").json["reason"]
    assert reason == {
        "code": "in_review",
        "message": "Someone from the Fell crew is checking this and will reply here.",
    }

    # The chat page the web process serves shows the configured name.
    with urllib.request.urlopen(web.url + "/login/", timeout=10) as response:
        page = response.read().decode()
    assert "<h1>Fjord &amp; Fell <span>support</span></h1>" in page
