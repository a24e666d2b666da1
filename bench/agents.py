"""A no-op agent for the per-hop benchmark: it does nothing; the wrapper does everything else."""

from __future__ import annotations

from agents.base import Agent, AgentResult, Outcome
from agents.envelope import Envelope


class Noop(Agent):
    name = "noop"
    atomic = True
    writes_database = False

    def handle(self, envelope: Envelope) -> AgentResult:
        last = envelope.slip == [self.name]
        return AgentResult(outcome=Outcome.COMPLETE if last else Outcome.CONTINUE)
