"""Agents that misbehave on purpose, registered in tests through settings.EXTRA_AGENTS.

Faults are switched through Redis keys so that a test can turn them on and off
in worker subprocesses.
"""

from __future__ import annotations

import os
import signal
import time

import redis
from django.conf import settings

from agents.base import Agent, AgentResult
from agents.envelope import Envelope
from project.errors import TransientError

FAULT_KEY = "switchboard:test:fault:{name}"
PATHS = [
    "tests.agents_for_tests.Sleepy",
    "tests.agents_for_tests.Hang",
    "tests.agents_for_tests.Faulty",
    "tests.agents_for_tests.FaultyAtomic",
    "tests.agents_for_tests.LoopA",
    "tests.agents_for_tests.LoopB",
    "tests.agents_for_tests.LoopC",
    "tests.agents_for_tests.Liar",
    "tests.agents_for_tests.SleepyAtomic",
    "tests.agents_for_tests.SleepyLong",
    "tests.agents_for_tests.Poison",
    "tests.agents_for_tests.PoisonAtomic",
    "tests.agents_for_tests.Stall",
]


def fault_set(name: str, on: bool, times: int | None = None) -> None:
    """Switch a fault on (for good, or for the next `times` calls) or off."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    if on:
        client.set(FAULT_KEY.format(name=name), "always" if times is None else str(times), ex=600)
    else:
        client.delete(FAULT_KEY.format(name=name))


def fault_on(name: str) -> bool:
    client = redis.Redis.from_url(settings.REDIS_URL)
    value = client.get(FAULT_KEY.format(name=name))
    if value is None:
        return False
    return value == b"always" or client.decr(FAULT_KEY.format(name=name)) >= 0


class Sleepy(Agent):
    """Takes a few seconds, so a test can kill its worker mid-step."""

    name = "sleepy"
    time_limit = 5

    def handle(self, envelope: Envelope) -> AgentResult:
        time.sleep(float(envelope.payload.get("sleep", 2.5)))
        return AgentResult(payload={"slept": True})


class Hang(Agent):
    """Hangs (up to 55 s, so a broken test still ends) until the supervisor stops it."""

    name = "hang"
    time_limit = 60

    def handle(self, envelope: Envelope) -> AgentResult:
        time.sleep(55)
        return AgentResult(payload={"hung": True})


class Faulty(Agent):
    """Fails with a transient error while its fault is switched on."""

    name = "faulty"
    max_retries = 2

    def handle(self, envelope: Envelope) -> AgentResult:
        if fault_on(self.name):
            raise TransientError("the faulty agent's dependency is down")
        return AgentResult(payload={"faulty": "ok"})


class FaultyAtomic(Faulty):
    """A short database agent (one transaction with its step) that writes a note, then fails while its
    fault is on: a failed try must leave neither its note nor its step rows behind."""

    name = "faulty_atomic"
    atomic = True

    def handle(self, envelope: Envelope) -> AgentResult:
        from conversations.services import message_create

        message_create(conversation_id=envelope.conversation_id, role="system", content="faulty_atomic was here")
        return super().handle(envelope)


class LoopA(Agent):
    name = "loop_a"

    def handle(self, envelope: Envelope) -> AgentResult:
        return AgentResult(handoff=["loop_b"])


class LoopB(Agent):
    name = "loop_b"

    def handle(self, envelope: Envelope) -> AgentResult:
        return AgentResult(handoff=["loop_c"])


class LoopC(Agent):
    name = "loop_c"

    def handle(self, envelope: Envelope) -> AgentResult:
        return AgentResult(handoff=["loop_a"])


class Liar(Agent):
    """A responder that makes things up: an order number and an amount no tool returned."""

    name = "liar"

    def handle(self, envelope: Envelope) -> AgentResult:
        return AgentResult(payload={"draft": "Your refund of 999.00 EUR for order SB-00001 is confirmed."})


class SleepyLong(Sleepy):
    """Sleepy with a long lease: a test of a worker's death is not overtaken by the lease running out."""

    name = "sleepy_long"
    time_limit = 60


class SleepyAtomic(Sleepy):
    """Sleepy inside its step's transaction (an atomic agent), so a test can kill its process mid-step."""

    name = "sleepy_atomic"
    atomic = True


class Poison(Agent):
    """Kills the process running it (SIGKILL, as a crash or the out-of-memory killer would) while its fault is on."""

    name = "poison"
    time_limit = 10

    def handle(self, envelope: Envelope) -> AgentResult:
        if fault_on(self.name):
            os.kill(os.getpid(), signal.SIGKILL)
        return AgentResult(payload={"poison": "survived"})


class PoisonAtomic(Poison):
    """Poison, as an atomic agent: its try leaves no row behind when it dies."""

    name = "poison_atomic"
    atomic = True


class Stall(Agent):
    """Runs past its lease (one second) while its fault is on: on a thread pool nothing stops it, the lease ends."""

    name = "stall"
    time_limit = 1

    def handle(self, envelope: Envelope) -> AgentResult:
        if fault_on(self.name):
            time.sleep(4)
        return AgentResult(payload={"stalled": True})
