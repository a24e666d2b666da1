"""The chaos run's load: customers with demo orders, a seeded plan of conversations (questions, order lookups,
refunds under and over the limit), API clients that send it, and a scripted reviewer deciding the review queue.

Every conversation is one customer message, POSTed with an Idempotency-Key and retried with the same key on
connection errors and 5xx, so the database can say of each accepted message what became of it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.chaos.client import Answer, AnswerLog, Api

QUESTIONS = {
    "shipping": (
        "How long does shipping take to Austria?",
        "Do you offer express delivery?",
        "How much does shipping cost within Germany?",
        "Can I track my parcel?",
    ),
    "returns": (
        "How do I return an item I bought?",
        "Can I exchange my jacket for a bigger size?",
        "How long do I have to return something?",
    ),
    "products": (
        "My headphones stopped working, is that covered by the warranty?",
        "Can I pay by invoice?",
        "Which payment methods do you accept?",
    ),
}
#: Kinds of conversation and their shares of the load.
KINDS = {"shipping": 0.2, "returns": 0.15, "products": 0.12, "order": 0.18, "refund_small": 0.17, "refund_whole": 0.18}


@dataclass
class Customer:
    email: str
    token: str
    orders: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Planned:
    """One conversation to send: by whom, what, and when (seconds after the load starts)."""

    index: int
    kind: str
    customer: Customer
    content: str
    offset: float


@dataclass
class Sent:
    """What became of a planned conversation at the API."""

    planned: Planned
    conversation_id: str | None = None
    message_id: str | None = None
    run_id: str | None = None
    accepted: bool = False
    started_at: float = 0.0
    accepted_at: float | None = None
    answers: list[Answer] = field(default_factory=list)


def customers_create(manage: Callable[..., str], api_url: str, log: AnswerLog, count: int, seed: int) -> list[Customer]:
    """`manage.py create_customer --demo-orders` for each (two at a time); their orders from the API."""

    def create(index: int) -> Customer:
        email = f"chaos-{seed}-{index}@example.com"
        token = manage("create_customer", email, "--name", f"Chaos {index}", "--demo-orders").strip().splitlines()[-1]
        answer = Api(api_url, token, log).request("GET", "/orders/?limit=100", route="orders")
        orders = answer.body.get("results", answer.body) if isinstance(answer.body, dict) else answer.body or []
        return Customer(email=email, token=token, orders=list(orders))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(create, range(count)))


def plan_make(customers: list[Customer], conversations: int, seconds: float, seed: int) -> list[Planned]:
    """The seeded plan: kinds by their shares, customers at random, start times spread over `seconds`."""
    rng = random.Random(seed)
    kinds, weights = zip(*KINDS.items(), strict=True)
    plan = []
    for index in range(conversations):
        customer = rng.choice(customers)
        kind = rng.choices(kinds, weights=weights)[0]
        offset = seconds * index / max(1, conversations) + rng.uniform(0, seconds / max(1, conversations))
        plan.append(Planned(index, kind, customer, message_for(kind, customer, rng), offset))
    return plan


def message_for(kind: str, customer: Customer, rng: random.Random) -> str:
    if kind in QUESTIONS:
        return rng.choice(QUESTIONS[kind])
    orders = customer.orders or [{"id": "SB-00000", "status": "delivered"}]
    if kind == "order":
        return f"Where is my order {rng.choice(orders)['id']}?"
    if kind == "refund_small":
        delivered = [o for o in orders if o.get("status") == "delivered"] or orders
        amount, order = rng.randint(3, 15), rng.choice(delivered)["id"]
        return f"Please refund {amount}.00 EUR on order {order}, the strap was damaged."
    return f"Please refund order {rng.choice(orders)['id']}, it stopped working."


class LoadDriver:
    """Sends the plan with `clients` threads; `wait()` returns once every conversation was sent or given up."""

    def __init__(self, api_url: str, log: AnswerLog, plan: list[Planned], clients: int, seed: int) -> None:
        self.api_url, self.log, self.seed = api_url, log, seed
        self.pending = list(plan)
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        self.started_at = 0.0

    def start(self) -> LoadDriver:
        self.started_at = time.time()
        for thread in self._threads:
            thread.start()
        return self

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))

    def _next(self) -> Planned | None:
        with self._lock:
            return self.pending.pop(0) if self.pending else None

    def _client(self) -> None:
        while (planned := self._next()) is not None:
            time.sleep(max(0.0, self.started_at + planned.offset - time.time()))
            sent = self._send(planned)
            with self._lock:
                self.sent.append(sent)

    def _send(self, planned: Planned) -> Sent:
        api = Api(self.api_url, planned.customer.token, self.log)
        sent = Sent(planned, started_at=time.time())
        answer, answers = api.retrying("POST", "/conversations/", {}, route="POST conversations")
        sent.answers += answers
        if answer.status != 201:
            return sent
        sent.conversation_id = answer.body["id"]
        key = f"chaos-{self.seed}-{planned.index}"
        answer, answers = api.retrying(
            "POST",
            f"/conversations/{sent.conversation_id}/messages/",
            {"content": planned.content},
            headers={"Idempotency-Key": key},
            route="POST messages",
        )
        sent.answers += answers
        if answer.status == 202:
            sent.accepted, sent.accepted_at = True, answer.at
            sent.message_id = answer.body["message"]["id"]
            sent.run_id = answer.body["run"]["id"]
        return sent


@dataclass
class Decision:
    at: float
    item_id: str
    reason: str
    decision: str
    status: int


class Reviewer:
    """A reviewer working the queue over the API every 2 s: items held by policy are approved (rejected when the
    policy refuses the approval); items sent to review by faults are left for the report."""

    def __init__(self, api: Api, is_policy: Callable[[str], bool]) -> None:
        self.api, self.is_policy = api, is_policy
        self.decisions: list[Decision] = []
        self.tried: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> Reviewer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def pending(self, open_items: list[dict[str, Any]]) -> int:
        """Open items this reviewer has yet to decide."""
        return sum(1 for item in open_items if self.is_policy(item["reason"]) and str(item["id"]) not in self.tried)

    def _loop(self) -> None:
        while not self._stop.wait(2.0):
            answer = self.api.request("GET", "/reviews/?limit=100", route="GET reviews")
            if answer.status != 200 or not isinstance(answer.body, dict):
                continue
            for item in answer.body.get("results", []):
                if self._stop.is_set():
                    return
                if self.is_policy(item["reason"]) and item["id"] not in self.tried:
                    self._decide(item)

    def _decide(self, item: dict[str, Any]) -> None:
        path = f"/reviews/{item['id']}/decision/"
        answer = self.api.request("POST", path, {"decision": "approve"}, route="POST decision")
        decision = "approve"
        if answer.status == 400:
            reply = "We cannot do this as asked; a colleague will contact you about it."
            answer = self.api.request("POST", path, {"decision": "reject", "reply": reply}, route="POST decision")
            decision = "reject"
        if answer.status in (200, 201, 202, 400, 409):
            self.tried.add(item["id"])
        self.decisions.append(Decision(answer.at, item["id"], item["reason"], decision, answer.status))
