"""Settings of the brand: the shop's name, the assistant's persona and tone, the support languages, the escalation
wording and the sentences a customer reads when no reply comes (the notices of `orchestration/runs.py`).

Part of `project.settings` (which imports every name here), read from the environment with the same helpers; the
one place a shop's name is written. `project/brand.py` fills them into the prompts (for every provider, the offline
one included), the customer notices, the public reasons and the chat page. The defaults are the demo shop's texts.

A prompt's version (`responder@3`) names the wording written in code; these settings are the deployment's, so a
change here changes what every model is told without a new version: record it with the deploy.
"""

from __future__ import annotations

from project.env import env_list, env_str

# --- Who answers ---------------------------------------------------------------------------------
# The shop's name: in every agent's prompt ("customer-service messages for <name>"), the chat page's title and heading.
# Written as customers know it; it is shown escaped on the page and sent verbatim to the model.
BRAND_SHOP_NAME = env_str("BRAND_SHOP_NAME", "Tallow & Pine")
# What the shop is, after its name in the prompts ("<name>, <description>"): the model reads its trade from it (what
# products and questions to expect). Longer descriptions cost tokens on every call; keep it to a phrase.
BRAND_SHOP_DESCRIPTION = env_str("BRAND_SHOP_DESCRIPTION", "an online outdoor shop")
# Who the responder is ("You are <persona> of <name>"): a name here ("Robin, the support assistant") makes the model
# sign and speak as Robin. It never claims to be a person unless told to: keep "assistant" in it.
BRAND_ASSISTANT_PERSONA = env_str("BRAND_ASSISTANT_PERSONA", "the support assistant")
# How the responder writes, one or two sentences added to its instructions ("Write warmly and briefly."); empty adds
# nothing (the default). Grounding, promises and leaks are checked whatever the tone: a tone that invites chat
# ("be playful") makes more sentences the validator may hold for review.
BRAND_TONE = env_str("BRAND_TONE", "")
# The languages support answers in, comma-separated, the first the fallback ("English,Deutsch"): the responder answers
# in the customer's language when it is one of them, else in the first. Empty (the default) says nothing and the
# model chooses. The offline provider copies the documents' sentences, so it answers in theirs whatever this says;
# the notices below are written once, in one language.
BRAND_SUPPORT_LANGUAGES = env_list("BRAND_SUPPORT_LANGUAGES", "")

# --- When a person takes over --------------------------------------------------------------------
# Who follows up when the agents hand a conversation to people, as a phrase inside sentences ("<team> will reply
# here"; capitalised where it starts one). Every notice and public reason that names the team uses it. Name a role,
# not a person: it is read while nobody has picked the conversation up yet.
BRAND_ESCALATION_TEAM = env_str("BRAND_ESCALATION_TEAM", "a member of our support team")
# The notice a customer reads in the conversation when a run ends without a reply, one per ending. `{team}` and
# `{Team}` are replaced with the escalation phrase (as is, capitalised) and `{shop}` with the shop's name, so
# changing the team's wording needs no notice rewritten. Say that a person follows up and nothing else: the runs'
# internal reasons never reach the customer (`orchestration/public.py`).
BRAND_NOTICE_ESCALATED = env_str(
    "BRAND_NOTICE_ESCALATED", "Thanks for your patience — {team} is checking this and will reply here."
)
BRAND_NOTICE_FAILED = env_str(
    "BRAND_NOTICE_FAILED", "Sorry, something went wrong while answering your message. {Team} will follow up here."
)
BRAND_NOTICE_TIMED_OUT = env_str(
    "BRAND_NOTICE_TIMED_OUT", "Sorry, answering this is taking longer than it should. {Team} will follow up here."
)
# A cancelled run's one message: it must still say that nothing was sent or changed, since that is what happened.
BRAND_NOTICE_CANCELLED = env_str(
    "BRAND_NOTICE_CANCELLED", "This answer was stopped before it was sent, and nothing was changed."
)
