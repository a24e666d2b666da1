"""Retrieval: finds the help-centre passages that answer the message (the database's full-text search over the
knowledge base, `knowledge.search`)."""

from __future__ import annotations

from agents.base import Agent, AgentResult
from agents.envelope import Envelope
from agents.payload import RetrievedPassage
from knowledge.search import search

#: Passages scoring below this share of the best passage's score are dropped.
RELATIVE_SCORE_FLOOR = 0.6
MAX_PASSAGES = 3


class Retrieval(Agent):
    name = "retrieval"
    version = "2"
    atomic = True
    writes_database = False

    def handle(self, envelope: Envelope) -> AgentResult:
        hits = search(envelope.payload["message"], k=MAX_PASSAGES)
        if hits:
            floor = hits[0].score * RELATIVE_SCORE_FLOOR
            hits = [hit for hit in hits if hit.score >= floor]
        passages = [
            RetrievedPassage(doc_id=hit.doc_id, title=hit.title, section=hit.section, text=hit.text, score=hit.score)
            for hit in hits
        ]
        return AgentResult(payload={"passages": passages})
