"""A fake shop API (docs/commerce-api.md) on 127.0.0.1 for the commerce tests: orders per customer, refunds recorded
and deduplicated by Idempotency-Key (the same key replays the first answer; with another body, 409), and faults on
demand: the next N refunds answered 5xx, or held (the refund applied, its answer delayed) for a while or until
released — the window in which a test kills the worker that sent it. HTTP/1.1 with keep-alive, counting the TCP
connections it accepted (`connections`), so that tests can see a client reuse them."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "test-commerce-token"


@dataclass
class FakeCommerce:
    """The shop: `orders[customer_id][order_id]` as the API returns them; `refunds` as executed (one per key)."""

    orders: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    """Every refund executed: key, order_id, amount, currency."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Every refund request received (including replays): key, body."""
    fail_next: int = 0
    """Answer the next this many refund requests 503, before applying them."""
    fail_status: int = 503
    hold_seconds: float = 0.0
    """Hold each refund's answer (after applying it) this long, or until `release()`."""
    hold_next: int = 0
    """How many refund answers to hold (0: none)."""
    connections: int = 0
    """TCP connections accepted since the last reset (a client that keeps them alive opens few)."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self._release = threading.Event()
        self.held = threading.Event()
        """Set when a refund was applied and its answer is being held."""
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_order(
        self, customer_id: str, order_id: str, total: str, *, status: str = "delivered", currency: str = "EUR"
    ) -> None:
        self.orders.setdefault(str(customer_id), {})[order_id] = {
            "id": order_id,
            "customer_id": str(customer_id),
            "description": "Aurora noise-cancelling headphones",
            "total": total,
            "currency": currency,
            "status": status,
            "refunded_amount": "0.00",
            "status_before_refund": None,
            "placed_at": "2026-11-20T10:00:00+00:00",
            "delivered_at": "2026-11-22T15:00:00+00:00" if status == "delivered" else None,
        }

    def release(self) -> None:
        self._release.set()

    def reset(self) -> None:
        with self._lock:
            self.orders.clear(), self.refunds.clear(), self.requests.clear(), self._answers.clear()
            self.fail_next, self.fail_status, self.hold_next, self.hold_seconds = 0, 503, 0, 0.0
            self.connections = 0
            self._release.clear(), self.held.clear()

    def start(self) -> FakeCommerce:
        shop = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one handler per connection, serving its requests in turn

            def setup(self) -> None:
                super().setup()
                with shop._lock:
                    shop.connections += 1

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                shop._get(self)

            def do_POST(self) -> None:
                shop._post(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- the API ---------------------------------------------------------------------------------------------------
    def _authorized(self, handler: BaseHTTPRequestHandler) -> bool:
        if handler.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        _send(handler, 401, {"error": "unauthorized"})
        return False

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        if not self._authorized(handler):
            return
        parts = handler.path.strip("/").split("/")
        with self._lock:
            if len(parts) == 3 and parts[0] == "customers" and parts[2] == "orders":
                _send(handler, 200, {"orders": list(self.orders.get(parts[1], {}).values())})
                return
            if len(parts) == 4 and parts[0] == "customers" and parts[2] == "orders":
                order = self.orders.get(parts[1], {}).get(parts[3])
                _send(handler, 200 if order else 404, order or {"error": "not found"})
                return
        _send(handler, 404, {"error": "no such path"})

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        # The body first, whatever the answer: on a kept-alive connection it must not be taken for the next request.
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0)).decode()
        if not self._authorized(handler):
            return
        parts = handler.path.strip("/").split("/")
        key = handler.headers.get("Idempotency-Key") or ""
        if not (len(parts) == 5 and parts[0] == "customers" and parts[2] == "orders" and parts[4] == "refunds"):
            _send(handler, 404, {"error": "no such path"})
            return
        if not key:
            _send(handler, 400, {"error": "Idempotency-Key is required"})
            return
        with self._lock:
            self.requests.append({"key": key, "body": raw})
            if self.fail_next > 0:
                self.fail_next -= 1
                _send(handler, self.fail_status, {"error": "try again"})
                return
            if key in self._answers:
                first_body, status, answer = self._answers[key]
                if first_body != raw:
                    _send(handler, 409, {"error": "Idempotency-Key reused with another request"})
                else:
                    _send(handler, status, answer)
                return
            status, answer = self._refund(parts[1], parts[3], key, raw)
            self._answers[key] = (raw, status, answer)
            hold = self.hold_next > 0 and status == 201
            if hold:
                self.hold_next -= 1
        if hold:
            self.held.set()
            self._release.wait(self.hold_seconds)
        _send(handler, status, answer)

    def _refund(self, customer_id: str, order_id: str, key: str, raw: str) -> tuple[int, dict[str, Any]]:
        order = self.orders.get(customer_id, {}).get(order_id)
        if order is None:
            return 404, {"error": "no such order"}
        try:
            body = json.loads(raw)
            amount = Decimal(body["amount"])
        except (ValueError, KeyError, TypeError, ArithmeticError):
            return 422, {"error": "amount must be a decimal string"}
        refundable = Decimal(order["total"]) - Decimal(order["refunded_amount"])
        if body.get("currency") != order["currency"] or not 0 < amount <= refundable:
            return 422, {"error": f"cannot refund {body.get('amount')} {body.get('currency')}"}
        if order["status"] not in ("refunded", "partially_refunded"):
            order["status_before_refund"] = order["status"]
        order["refunded_amount"] = f"{Decimal(order['refunded_amount']) + amount:.2f}"
        done = Decimal(order["refunded_amount"]) >= Decimal(order["total"])
        order["status"] = "refunded" if done else "partially_refunded"
        self.refunds.append(
            {"key": key, "order_id": order_id, "amount": f"{amount:.2f}", "currency": order["currency"]}
        )
        return 201, {"refund_id": f"re_{len(self.refunds)}", "order": dict(order)}


def _send(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:
        pass  # the client went away (a timeout, a killed worker)
