"""Retrieval: finds the help-centre passages that answer the message."""

from __future__ import annotations

from agents.base import Agent, AgentResult
from agents.envelope import Envelope
from agents.knowledge import index_get

#: Passages scoring below this share of the best passage's score are dropped.
RELATIVE_SCORE_FLOOR = 0.6
MAX_PASSAGES = 3


class Retrieval(Agent):
    name = "retrieval"
    version = "1"
    atomic = True

    def handle(self, envelope: Envelope) -> AgentResult:
        hits = index_get().search(envelope.payload["message"], k=MAX_PASSAGES)
        if hits:
            floor = hits[0][1] * RELATIVE_SCORE_FLOOR
            hits = [(passage, score) for passage, score in hits if score >= floor]
        return AgentResult(payload={"passages": [passage.to_dict(score) for passage, score in hits]})
