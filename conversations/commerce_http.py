"""`HttpCommerce`: a shop's own REST API as the `Commerce` interface (the contract: docs/commerce-api.md).

Everything the shop answers is checked before use, as any input from outside: an order must have a valid id, be
the asked customer's, carry amounts in cents, a known status and a currency code; anything else is a PermanentError
naming what was wrong (never a guess). Errors: 404 on a lookup is "not found"; other 4xx are permanent
(RefundRefused for a refund); 5xx, timeouts and lost connections are CommerceUnavailable (transient: retried with
backoff, a refund with the same Idempotency-Key).

The wire: one pooled `httpx.Client` per process (`shop_client`: connections kept alive between calls, shared by the
process's threads, created anew after a fork — Celery's prefork pool forks after import), and a circuit breaker per
shop API (`commerce:<url>`, project/breaker.py, its state in Redis): COMMERCE_BREAKER_FAILURES failures in a row
pause every process's calls for COMMERCE_BREAKER_COOLDOWN_SECONDS (CommerceCircuitOpen, a Postponed error: the
step waits, nothing is sent).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from django.conf import settings

from conversations.commerce import (
    CommerceCircuitOpen,
    CommerceUnavailable,
    RefundOutcome,
    RefundRefused,
    ShopOrder,
)
from conversations.models import Order
from conversations.orders import CURRENCY_CODE, amount_format, amount_parse, order_id_valid
from project.breaker import CircuitBreaker
from project.errors import PermanentError

#: How much of an error body is kept as evidence (ledger rows, run reasons).
EVIDENCE_CHARS = 300

_client_lock = threading.Lock()
_client: httpx.Client | None = None
_slots = threading.BoundedSemaphore(1)
_client_pid = 0


def shop_client() -> tuple[httpx.Client, threading.BoundedSemaphore]:
    """This process's client for shop APIs, and its slots: one connection pool (COMMERCE_API_MAX_CONNECTIONS, idle
    connections kept COMMERCE_API_KEEPALIVE_SECONDS) shared by the process's threads, each call passing its own
    headers and timeout. A call holds a slot while it runs, so the pool never has more calls than connections: with
    calls queued inside it, httpcore 1.0.x may close a connection already handed to a waiting call (encode/httpcore
    #1110; 8 threads on 4 connections failed ~6% of calls in a test, with slots none). A forked child never uses its
    parent's sockets: the client is dropped at fork and, should a fork escape the hook, whenever the pid changed."""
    global _client, _slots, _client_pid
    client = _client
    if client is not None and _client_pid == os.getpid():
        return client, _slots
    with _client_lock:
        if _client is None or _client_pid != os.getpid():
            size = settings.COMMERCE_API_MAX_CONNECTIONS
            limits = httpx.Limits(
                max_connections=size,
                max_keepalive_connections=size,
                keepalive_expiry=settings.COMMERCE_API_KEEPALIVE_SECONDS,
            )
            _client = httpx.Client(limits=limits, follow_redirects=False)
            _slots = threading.BoundedSemaphore(size)
            _client_pid = os.getpid()
        return _client, _slots


def shop_client_close() -> None:
    """Close this process's client (its connections); the next call opens a new one. Tests and shutdown use it."""
    global _client
    with _client_lock:
        client, _client = _client, None
    if client is not None:
        client.close()


def _client_forget_after_fork() -> None:
    """In a forked child: forget the parent's client without closing it (its sockets are the parent's)."""
    global _client, _client_lock
    _client, _client_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_client_forget_after_fork)


class HttpCommerce:
    """The shop's API at `base_url`, with a bearer token (or none) and a timeout per call."""

    transactional = False

    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise PermanentError("COMMERCE_API_URL must be an http(s) URL when COMMERCE_BACKEND is 'http'.")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_settings(cls) -> HttpCommerce:
        token_env = settings.COMMERCE_API_TOKEN_ENV
        return cls(
            settings.COMMERCE_API_URL,
            os.environ.get(token_env, "") if token_env else "",
            settings.COMMERCE_API_TIMEOUT_SECONDS,
        )

    # --- the interface ---------------------------------------------------------------------------------------
    def orders_get(self, *, customer_id: str, order_ids: Iterable[str]) -> dict[str, ShopOrder]:
        found = {}
        for order_id in sorted({order_id for order_id in order_ids if order_id_valid(order_id)}):
            response = self._send("GET", f"{self._customer(customer_id)}/orders/{quote(order_id, safe='')}")
            if response.status_code == 404:
                continue
            self._check(response, "order lookup")
            found[order_id] = order_parse(_json(response), customer_id=customer_id, order_id=order_id)
        return found

    def order_list(self, *, customer_id: str) -> list[ShopOrder]:
        response = self._send("GET", f"{self._customer(customer_id)}/orders")
        self._check(response, "order list")
        body = _json(response)
        orders = body.get("orders") if isinstance(body, dict) else None
        if not isinstance(orders, list):
            raise PermanentError("the shop's order list has no 'orders' list.")
        parsed = [order_parse(order, customer_id=customer_id) for order in orders]
        return sorted(parsed, key=lambda o: o.placed_at.timestamp() if o.placed_at else 0.0, reverse=True)

    def refund(self, *, key: str, customer_id: str, order_id: str, amount: Decimal, currency: str) -> RefundOutcome:
        path = f"{self._customer(customer_id)}/orders/{quote(order_id, safe='')}/refunds"
        body = {"amount": amount_format(amount), "currency": currency}
        response = self._send("POST", path, json=body, headers={"Idempotency-Key": key})
        if response.status_code == 409:
            raise PermanentError(
                f"the shop refused refund key {key}: it was used before with another request ({_evidence(response)})."
            )
        if 400 <= response.status_code < 500:
            raise RefundRefused(
                f"the shop refused the refund of {body['amount']} {currency} on order {order_id} "
                f"(key {key}): {_evidence(response)}"
            )
        self._check(response, f"refund {key}")
        # 2xx: the refund is done. Its body is read for the order's new status and the shop's reference only.
        answer = _json_or_empty(response)
        order = answer.get("order")
        status = order.get("status") if isinstance(order, dict) else None
        reference = answer.get("refund_id")
        return RefundOutcome(
            order_id=order_id,
            amount=amount,
            currency=currency,
            order_status=status if status in Order.Status.values else "",
            reference=str(reference)[:100] if isinstance(reference, str | int) else "",
        )

    # --- the wire -------------------------------------------------------------------------------------------
    def _customer(self, customer_id: str) -> str:
        return f"/customers/{quote(str(customer_id), safe='')}"

    def breaker(self) -> CircuitBreaker:
        """The circuit breaker of this shop API (one per host, shared by every process; named by host and port only:
        the name is a metrics label, and a URL may carry credentials)."""
        return CircuitBreaker(
            f"commerce:{urlsplit(self.base_url).netloc.rpartition('@')[2]}",
            threshold=settings.COMMERCE_BREAKER_FAILURES,
            cooldown=settings.COMMERCE_BREAKER_COOLDOWN_SECONDS,
            call_seconds=self.timeout,
            open_error=CommerceCircuitOpen,
        )

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call through the pooled client, behind the breaker: a 5xx, a timeout or no connection counts as a
        failure; any other answer (4xx included: the shop is up, the request is what it refuses) closes it."""
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        client, slots = shop_client()
        if not slots.acquire(timeout=self.timeout):  # the process's connections all busy: nothing was sent
            raise CommerceUnavailable(f"no connection to the shop was free for {method} {path} in {self.timeout}s.")
        try:
            return self._send_through(client, method, path, headers=headers, **kwargs)
        finally:
            slots.release()

    def _send_through(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The call itself, holding a slot, behind the breaker (see `_send`)."""
        breaker = self.breaker()
        probing = breaker.before_call()  # CommerceCircuitOpen while paused: nothing is sent
        try:
            response = self._request_bounded(client, method, path, **kwargs)
        except httpx.TimeoutException as exc:
            breaker.record_failure(probing)
            raise CommerceUnavailable(f"the shop did not answer {method} {path} within {self.timeout}s.") from exc
        except httpx.TransportError as exc:
            breaker.record_failure(probing)
            raise CommerceUnavailable(f"the shop could not be reached for {method} {path}: {exc!r}"[:400]) from exc
        if response.status_code >= 500:
            breaker.record_failure(probing)
        else:
            breaker.record_success()
        return response

    def _request_bounded(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The request, its answer read whole within `timeout` seconds in all (not per read: a shop that drips a
        byte at a time is cut off) and at most COMMERCE_API_MAX_RESPONSE_BYTES long (decoded)."""
        deadline = time.monotonic() + self.timeout
        limit = settings.COMMERCE_API_MAX_RESPONSE_BYTES
        with client.stream(method, self.base_url + path, timeout=self.timeout, **kwargs) as streamed:
            body, size = [], 0
            for chunk in streamed.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise PermanentError(f"the shop's answer to {method} {path} is longer than {limit} bytes.")
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"the answer took longer than {self.timeout}s", request=streamed.request)
                body.append(chunk)
        skip = {"content-encoding", "content-length", "transfer-encoding"}
        headers = [(name, value) for name, value in streamed.headers.items() if name.lower() not in skip]
        return httpx.Response(streamed.status_code, headers=headers, content=b"".join(body), request=streamed.request)

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code >= 500:
            raise CommerceUnavailable(f"the shop failed the {what}: {_evidence(response)}")
        if not 200 <= response.status_code < 300:
            raise PermanentError(f"the shop refused the {what}: {_evidence(response)}")


def order_parse(data: object, *, customer_id: str, order_id: str | None = None) -> ShopOrder:
    """An order from the shop's JSON, checked field by field (see the module's docstring)."""
    if not isinstance(data, dict):
        raise PermanentError("the shop's order is not a JSON object.")
    got_id = data.get("id")
    if not order_id_valid(got_id) or (order_id is not None and got_id != order_id):
        raise PermanentError(f"the shop answered order id {str(got_id)[:40]!r} for {order_id!r}.")
    if str(data.get("customer_id")) != str(customer_id):
        raise PermanentError(f"the shop answered order {got_id} of another customer.")
    total, refunded = amount_parse(data.get("total")), amount_parse(data.get("refunded_amount", "0"))
    if total is None or refunded is None or refunded > total:
        raise PermanentError(f"the shop's order {got_id} has amounts that are not amounts in cents.")
    currency, status = data.get("currency"), data.get("status")
    before = data.get("status_before_refund") or ""
    if not isinstance(currency, str) or CURRENCY_CODE.match(currency) is None:
        raise PermanentError(f"the shop's order {got_id} has no valid currency code.")
    if status not in Order.Status.values or (before and before not in Order.Status.values):
        raise PermanentError(f"the shop's order {got_id} has an unknown status.")
    description = data.get("description")
    return ShopOrder(
        id=got_id,
        customer_id=str(customer_id),
        description=description[:300] if isinstance(description, str) else "",
        total=total,
        currency=currency,
        status=status,
        refunded_amount=refunded,
        status_before_refund=before,
        placed_at=_datetime(data.get("placed_at")),
        delivered_at=_datetime(data.get("delivered_at")),
    )


def _datetime(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise PermanentError(f"the shop answered something that is not JSON: {_evidence(response)}") from exc


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _evidence(response: httpx.Response) -> str:
    """The status and the start of the body: what a reviewer needs, bounded."""
    return f"HTTP {response.status_code} {response.text[:EVIDENCE_CHARS]!r}"
