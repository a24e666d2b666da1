"""The brand's texts, filled from the settings when used (`project/settings_brand.py`), never at import: the prompts'
system messages, the notices a customer reads, the public reasons' sentences and the chat page read them here.

A text with `{shop}`, `{shop_description}`, `{persona}`, `{voice}`, `{team}` or `{Team}` gets those replaced; any
other brace is left as written (prompts quote JSON).
"""

from __future__ import annotations

from django.conf import settings


def capitalised(phrase: str) -> str:
    return phrase[:1].upper() + phrase[1:]


def voice() -> str:
    """The responder's tone and languages, as sentences after its persona ('' when neither is set)."""
    parts = [settings.BRAND_TONE.strip()] if settings.BRAND_TONE.strip() else []
    languages = settings.BRAND_SUPPORT_LANGUAGES
    if languages:
        parts.append(
            f"Answer in the customer's language when it is one of {', '.join(languages)}; otherwise in {languages[0]}."
        )
    return "".join(" " + part for part in parts)


def fill(text: str) -> str:
    """The text with the brand's placeholders replaced by the settings' values."""
    team = settings.BRAND_ESCALATION_TEAM
    values = {
        "{shop}": settings.BRAND_SHOP_NAME,
        "{shop_description}": settings.BRAND_SHOP_DESCRIPTION,
        "{persona}": settings.BRAND_ASSISTANT_PERSONA,
        "{voice}": voice(),
        "{team}": team,
        "{Team}": capitalised(team),
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


#: The setting holding each ending's customer notice (`orchestration.runs`).
NOTICE_SETTINGS = {
    "escalated": "BRAND_NOTICE_ESCALATED",
    "failed": "BRAND_NOTICE_FAILED",
    "timed_out": "BRAND_NOTICE_TIMED_OUT",
    "cancelled": "BRAND_NOTICE_CANCELLED",
}


def notice(ending: str) -> str:
    """The notice a customer reads when a run ends this way without a reply."""
    return fill(getattr(settings, NOTICE_SETTINGS[ending]))
