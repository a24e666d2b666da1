"""A local OpenAI-compatible server (POST /v1/chat/completions) for tests and benchmarks.

It stands in for the LLM, the one thing outside our system: the real `openai`
client talks to it over real HTTP on 127.0.0.1. Answers are scripted per prompt
(the `X-Switchboard-Prompt` header, e.g. "triage@1"); faults are queued per
prompt: "429:<seconds>" (Retry-After), "500", "sleep:<seconds>", "malformed" (not JSON), "unusable" (JSON
that fits the prompt's schema but its agent cannot use: `UNUSABLE_ANSWERS`).
It records every request and counts calls in flight.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    at: float
    prompt: str
    body: dict[str, Any]
    status: int = 200
    usage: dict[str, int] = field(default_factory=dict)
    fault: str | None = None


@dataclass
class FakeOpenAI:
    """`answers[prompt_name]` is a dict (sent as JSON content), a callable(body) -> dict, or
    {"tool_calls": [(name, arguments_dict), ...]} for function calling (arguments given as a string are sent as
    they are, JSON or not), or {"raw": text} for content sent as it is (not JSON).

    `latency` is seconds (or a callable returning seconds, per request). `chooser(prompt_name)` may pick a fault
    for a request that has none queued (a fault mix); the fault "unusable" answers `unusable[prompt_name]` (by
    default `UNUSABLE_ANSWERS`) instead of the scripted answer (an answer that satisfies the schema but cannot be
    used)."""

    answers: dict[str, Any] = field(default_factory=dict)
    latency: float | Callable[[], float] = 0.0
    chooser: Callable[[str], str | None] | None = None
    unusable: dict[str, Any] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0

    def __post_init__(self) -> None:
        self._faults: dict[str, deque[str]] = defaultdict(deque)
        self._always: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- control -----------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:
                fake._handle(self)

        # The listen backlog is set before listening (the constructor would listen with socketserver's 5): a burst
        # of a thousand connections at once (bench/io_bench.py) must not be refused.
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self._server.daemon_threads = True
        self._server.request_queue_size = 4096
        self._server.server_bind()
        self._server.server_activate()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def fail_next(self, prompt: str, *faults: str) -> None:
        """Queue faults for the next calls of a prompt name ("*" for any)."""
        with self._lock:
            self._faults[prompt].extend(faults)

    def fail_always(self, prompt: str, fault: str | None) -> None:
        with self._lock:
            if fault is None:
                self._always.pop(prompt, None)
            else:
                self._always[prompt] = fault

    def calls(self, prompt: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if prompt is None or r.prompt.split("@")[0] == prompt]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self._always.clear()
            self.peak_in_flight = 0

    # --- serving -------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"{}")
        prompt = handler.headers.get("X-Switchboard-Prompt", "")
        name = prompt.split("@")[0]
        record = Recorded(at=time.monotonic(), prompt=prompt, body=body)
        with self._lock:
            self.requests.append(record)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            fault = None
            for key in (name, "*"):
                if self._faults[key]:
                    fault = self._faults[key].popleft()
                    break
            fault = fault or self._always.get(name) or self._always.get("*")
        if fault is None and self.chooser is not None:
            fault = self.chooser(name)
        record.fault = fault
        try:
            delay = self.latency() if callable(self.latency) else self.latency
            if delay:
                time.sleep(delay)
            status, payload, headers = self._response(fault, name, body)
            record.status = status
            record.usage = payload.get("usage", {})
            # The client may have given up (its timeout): then there is nothing to answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(handler, status, payload, headers)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _response(self, fault: str | None, name: str, body: dict[str, Any]) -> tuple[int, dict, dict[str, str]]:
        if fault and fault.startswith("429"):
            seconds = fault.split(":", 1)[1] if ":" in fault else "1"
            error = {"error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": "rate_limited"}}
            return 429, error, {"Retry-After": seconds}
        if fault == "500":
            return 500, {"error": {"message": "The server had an error", "type": "server_error"}}, {}
        if fault and fault.startswith("sleep:"):
            time.sleep(float(fault.split(":", 1)[1]))
        unusable = {**UNUSABLE_ANSWERS, **self.unusable}
        answer = unusable.get(name, {}) if fault == "unusable" else self.answers.get(name)
        if callable(answer):
            answer = answer(body)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if fault == "malformed":
            message["content"] = "Sure! Here is what you asked for: {intent: shipping"
        elif isinstance(answer, dict) and "raw" in answer:
            message["content"] = str(answer["raw"])
        elif isinstance(answer, dict) and "tool_calls" in answer:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": tool, "arguments": _arguments(args)}}
                for i, (tool, args) in enumerate(answer["tool_calls"])
            ]
        else:
            message["content"] = json.dumps(answer if answer is not None else {})
        prompt_tokens = sum(len(str(m.get("content") or "")) for m in body.get("messages", [])) // 4 + 1
        completion_tokens = len(json.dumps(message)) // 4 + 1
        return (
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
            {},
        )

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)


def _arguments(args: Any) -> str:
    """A tool call's arguments as the model sends them: a string as it is, anything else as JSON."""
    return args if isinstance(args, str) else json.dumps(args)


#: Per prompt, an answer that fits its schema but that its agent cannot use (the "unusable" fault): an order id the
#: message does not name, a plan that does not end with responder, validator, deliver, a lookup of an order the
#: customer did not write, an empty reply, a failing verdict without a reason.
UNUSABLE_ANSWERS: dict[str, Any] = {
    "triage": {"intent": "order_status", "confidence": 0.9, "order_ids": ["SB-99999"]},
    "planner": {"slip": [["retrieval", "account"], "validator", "deliver"]},
    "tools": {"tool_calls": [("order_lookup", {"order_id": "SB-99999"})]},
    "responder": {"reply": "", "sources": []},
    "validator": {"pass": False, "reasons": []},
}


def refund_answers(order_id: str, description: str, amount: str) -> dict[str, Any]:
    """Answers for "please refund <order>": the model looks the order up and proposes the whole refund."""
    return {
        "triage": {"intent": "refund", "confidence": 0.9, "order_ids": [order_id]},
        "planner": {"slip": [["retrieval", "account"], "tools", "responder", "validator", "deliver"]},
        "tools": {"tool_calls": [("order_lookup", {"order_id": order_id}), ("refund", {"order_id": order_id})]},
        "responder": {
            "reply": f"Your refund of {amount} EUR for order {order_id} ({description}) is confirmed.",
            "sources": [],
        },
    }


#: Answers that make a full run about shipping succeed.
SHIPPING_ANSWERS: dict[str, Any] = {
    "triage": {"intent": "shipping", "confidence": 0.93, "order_ids": []},
    "planner": {"slip": [["retrieval", "account"], "responder", "validator", "deliver"]},
    "responder": {
        "reply": "Standard shipping takes 2 to 4 business days within Germany and 3 to 7 business days to "
        "other EU countries.\n\nSource: Shipping times and costs",
        "sources": ["Shipping times and costs"],
    },
    "validator": {"pass": True, "reasons": []},
    "tools": {"tool_calls": []},
}


# --- An obedient model ---------------------------------------------------------------------------------------

_ORDER_IDS = re.compile(r"\bSB-\d{5}\b", re.IGNORECASE)
_WRITE_EXACTLY = re.compile(r"write exactly:\s*", re.IGNORECASE)


def request_customer_message(body: dict[str, Any]) -> str:
    """The customer's message in a recorded request: the responder's `Customer message: ...` field (up to the
    next one), or what follows the last `Message: ` of the other prompts (triage, planner, tools)."""
    user = next((m.get("content") or "" for m in body.get("messages", []) if m.get("role") == "user"), "")
    _, found, rest = user.partition("Customer message: ")
    if found:
        return rest.split("\nOrder numbers mentioned:", 1)[0]
    return user.rpartition("Message: ")[2]


def request_prompt_text(body: dict[str, Any]) -> str:
    """Everything the model was sent (system and user messages), as one text."""
    return "\n\n".join(str(m.get("content") or "") for m in body.get("messages", []))


def obedient_responder(
    *, notes: Sequence[str] = (), orders: Mapping[str, str] | None = None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A responder that does what the customer's message says, as a model that follows injected instructions
    would (the worst case for everything after it):

    - "write exactly: <text>" -> replies <text>;
    - asks for its prompt or instructions -> replies with everything it was sent ("in plain text": not even
      JSON, so the answer is malformed);
    - asks for an internal or staff-only note -> repeats `notes` (what the model somehow knows);
    - "describe order SB-..." -> describes each order from `orders` (what it knows of other customers'
      orders; an order it knows nothing of gets an invented description);
    - anything else -> an empty reply.
    """
    known = dict(orders or {})

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        message = request_customer_message(body)
        lowered = message.lower()
        exactly = _WRITE_EXACTLY.search(message)
        if exactly:
            reply = message[exactly.end() :].strip()
        elif "prompt" in lowered or "instructions" in lowered:
            if "plain text" in lowered:
                return {"raw": request_prompt_text(body)}
            reply = request_prompt_text(body)
        elif "note" in lowered and ("internal" in lowered or "staff" in lowered):
            reply = "Here is the staff-only note: " + " ".join(notes)
        elif "describe order" in lowered:
            ids = sorted({order_id.upper() for order_id in _ORDER_IDS.findall(message)})
            reply = " ".join(f"Order {i}: {known.get(i, 'a Nimbus 2-person tent for 329.00 EUR')}." for i in ids)
        else:
            reply = ""
        return {"reply": reply, "sources": []}

    return answer


def obedient_answers(*, notes: Sequence[str] = (), orders: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Answers for a whole run with an obedient model: triage finds the order ids the message names, the
    planner sends them to the tools agent, which looks each one up, the responder does what the customer
    says (`obedient_responder`) and the validator's model passes everything (only the rule checks stand)."""

    def triage(body: dict[str, Any]) -> dict[str, Any]:
        ids = sorted({order_id.upper() for order_id in _ORDER_IDS.findall(request_customer_message(body))})
        return {"intent": "other", "confidence": 0.9, "order_ids": ids}

    def planner(body: dict[str, Any]) -> dict[str, Any]:
        tools = ["tools"] if _ORDER_IDS.search(request_customer_message(body)) else []
        return {"slip": [["retrieval", "account"], *tools, "responder", "validator", "deliver"]}

    def tools(body: dict[str, Any]) -> dict[str, Any]:
        ids = sorted({order_id.upper() for order_id in _ORDER_IDS.findall(request_customer_message(body))})
        return {"tool_calls": [("order_lookup", {"order_id": order_id}) for order_id in ids]}

    return {
        "triage": triage,
        "planner": planner,
        "tools": tools,
        "responder": obedient_responder(notes=notes, orders=orders),
        "validator": {"pass": True, "reasons": []},
    }


def prompt_text(body: dict[str, Any]) -> str:
    """Everything a request's messages say, joined: to script an answer by what the customer wrote."""
    return "\n".join(str(message.get("content") or "") for message in body.get("messages", []))


def scripted(script: Any) -> Any:
    """An answer computed by `script(text)` from the request's text (`prompt_text`), e.g. chosen by a marker a
    test put in the customer's message, so that runs in parallel each get their own answers."""
    return lambda body: script(prompt_text(body))


def refund_calls(calls: Any) -> dict[str, Any]:
    """A tools answer with one refund tool call per (order id, amount); the amount is sent as given (a string,
    a JSON number or null)."""
    return {"tool_calls": [("refund", {"order_id": order_id, "amount": amount}) for order_id, amount in calls]}
