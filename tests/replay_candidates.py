"""Other versions of agents' prompts, for the replay tests (settings.PROMPT_CANDIDATES): never used by runs."""

from __future__ import annotations

import dataclasses
from typing import Any

from agents.responder import PROMPT, responder_offline


def _brief(variables: dict[str, Any]) -> dict[str, Any]:
    """The responder's offline answer cut to its first sentence (still from the passages), sources kept."""
    answer = responder_offline(variables)
    body, sources_line, sources = answer["reply"].partition("\n\nSource: ")
    first = body.split(". ")[0].rstrip(".") + "."
    return {"reply": first + (sources_line + sources if sources_line else ""), "sources": answer["sources"]}


#: responder@test-brief: answers in one sentence.
RESPONDER_BRIEF = dataclasses.replace(PROMPT, version="test-brief", offline=_brief)
PATHS = ["tests.replay_candidates.RESPONDER_BRIEF"]
