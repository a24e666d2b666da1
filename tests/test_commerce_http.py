"""The HTTP adapter's wire (conversations/commerce_http.py) against the fake shop (harness/fake_commerce.py): one
pooled client per process whose connections are reused, shared by threads and never inherited by a forked child;
and the circuit breaker per shop API, which stops calls to a shop that keeps failing (nothing reaches it while it
is open) and lets one probe through after the cool-down."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings

from agents.models import LedgerEntry
from conversations.commerce import CommerceCircuitOpen, CommerceUnavailable, RefundRefused
from conversations.commerce_http import HttpCommerce, shop_client, shop_client_close
from project.errors import PermanentError
from tests.commerce_data import customer_with_order, execute

pytestmark = [pytest.mark.e2e]


def refund(adapter: HttpCommerce, customer: Any, key: str, amount: str = "1.00") -> Any:
    return adapter.refund(
        key=key, customer_id=str(customer.id), order_id="SB-50001", amount=Decimal(amount), currency="EUR"
    )


def test_calls_reuse_one_kept_alive_connection(make_customer, shop) -> None:
    customer, _ = customer_with_order(make_customer, shop)
    shop_client_close()  # no connection left from an earlier test
    adapter = HttpCommerce.from_settings()
    for number in range(5):
        assert adapter.orders_get(customer_id=str(customer.id), order_ids=["SB-50001"])
        assert adapter.order_list(customer_id=str(customer.id))
        refund(adapter, customer, f"k{number}")
    assert len(shop.refunds) == 5 and shop.connections == 1
    assert HttpCommerce.from_settings() is not adapter and shop_client()[0] is shop_client()[0]  # one per process


def test_threads_share_the_pool(make_customer, shop) -> None:
    customer, _ = customer_with_order(make_customer, shop, total="9000.00")
    shop_client_close()
    adapter = HttpCommerce.from_settings()

    def work(number: int) -> str:
        refund(adapter, customer, f"t{number}")
        return adapter.orders_get(customer_id=str(customer.id), order_ids=["SB-50001"])["SB-50001"].status

    # More threads than connections: calls wait for a slot (never queue inside httpcore's pool, see shop_client).
    with override_settings(COMMERCE_API_MAX_CONNECTIONS=4), ThreadPoolExecutor(max_workers=12) as pool:
        shop_client_close()  # the next client has the 4 connections
        statuses = list(pool.map(work, range(120)))
    assert set(statuses) == {"partially_refunded"} and len(shop.refunds) == 120
    assert 1 <= shop.connections <= 4  # at most the pool's size, however many threads


def test_a_forked_child_opens_its_own_connection(make_customer, shop) -> None:
    customer, _ = customer_with_order(make_customer, shop)
    shop_client_close()
    adapter = HttpCommerce.from_settings()
    refund(adapter, customer, "parent")
    parent_client = shop_client()[0]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child (as a Celery prefork pool process): never the parent's client or sockets
        ok = False
        try:
            ok = shop_client()[0] is not parent_client and refund(adapter, customer, "child").amount == Decimal("1")
        finally:  # whatever happened, the child reports and exits (it never goes on running pytest)
            os.write(write_end, b"1" if ok else b"0")
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    assert os.read(read_end, 1) == b"1" and status == 0
    refund(adapter, customer, "parent-again")  # the parent's kept connection still works
    assert shop_client()[0] is parent_client and [r["key"] for r in shop.refunds] == ["parent", "child", "parent-again"]
    assert shop.connections == 2  # the parent's (kept alive across the fork) and the child's


@override_settings(COMMERCE_BREAKER_FAILURES=2, COMMERCE_BREAKER_COOLDOWN_SECONDS=30)
def test_the_breaker_opens_after_failures_and_nothing_reaches_the_shop(make_customer, shop) -> None:
    customer, _ = customer_with_order(make_customer, shop)
    adapter = HttpCommerce.from_settings()
    shop.fail_next = 100
    for key in ("b1", "b2"):
        with pytest.raises(CommerceUnavailable):
            refund(adapter, customer, key)
    connections = shop.connections
    with pytest.raises(CommerceCircuitOpen, match="paused") as paused:
        refund(adapter, customer, "b3")
    assert 25 < (paused.value.retry_after or 0) <= 31
    with pytest.raises(CommerceCircuitOpen):  # lookups too: every call to this shop
        adapter.orders_get(customer_id=str(customer.id), order_ids=["SB-50001"])
    assert [r["key"] for r in shop.requests] == ["b1", "b2"] and shop.connections == connections


@override_settings(COMMERCE_BREAKER_FAILURES=1, COMMERCE_BREAKER_COOLDOWN_SECONDS=0.5)
def test_after_the_cool_down_one_probe_closes_it(make_customer, shop) -> None:
    customer, _ = customer_with_order(make_customer, shop)
    adapter = HttpCommerce.from_settings()
    shop.fail_next = 1
    with pytest.raises(CommerceUnavailable):
        refund(adapter, customer, "p1")
    with pytest.raises(CommerceCircuitOpen):
        refund(adapter, customer, "p1")
    time.sleep(0.6)
    assert refund(adapter, customer, "p1").amount == Decimal("1.00")  # the probe: the shop is back
    assert refund(adapter, customer, "p2").amount == Decimal("1.00")  # closed again
    assert [r["key"] for r in shop.requests] == ["p1", "p1", "p2"] and len(shop.refunds) == 2


@override_settings(COMMERCE_BREAKER_FAILURES=2)
def test_refusals_do_not_open_it(make_customer, shop) -> None:
    customer, _ = customer_with_order(make_customer, shop)
    adapter = HttpCommerce.from_settings()
    shop.fail_next, shop.fail_status = 3, 422
    for key in ("r1", "r2", "r3"):
        with pytest.raises(RefundRefused):  # the shop is up; it refuses the request
            refund(adapter, customer, key)
    assert refund(adapter, customer, "r4").amount == Decimal("1.00")


@override_settings(COMMERCE_BREAKER_FAILURES=1, COMMERCE_BREAKER_COOLDOWN_SECONDS=30)
def test_a_refund_while_it_is_open_waits_with_its_row_pending_and_sends_nothing(make_customer, shop) -> None:
    _, conversation_id = customer_with_order(make_customer, shop)
    shop.fail_next = 1
    with pytest.raises(CommerceUnavailable):
        execute(conversation_id, "run-open")
    with pytest.raises(CommerceCircuitOpen):  # a Postponed error: the step waits, using up no retry
        execute(conversation_id, "run-open")
    entry = LedgerEntry.objects.get(kind="refund")
    assert entry.status == "pending" and entry.result["tries"] == 1 and len(shop.requests) == 1


class _Dripping:
    """A shop that answers 200 and then one byte every 0.2 s, or a body of `size` bytes at once."""

    def __init__(self, *, size: int = 0) -> None:
        import socket
        import threading

        self.size = size
        self.sent = 0
        """Bytes of the body sent before the client hung up (or all of them)."""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.recv(65536)
            length = self.size or 1000
            connection.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode())
            if self.size:
                connection.sendall(b"x" * self.size)
                return
            for _ in range(40):  # bounded: 8 s at most
                try:
                    connection.sendall(b" ")
                except OSError:
                    return
                self.sent += 1
                time.sleep(0.2)


def test_an_answer_is_read_within_the_timeout_in_all_and_bounded_in_size(make_customer) -> None:
    customer, _ = make_customer()
    shop_client_close()
    drip = _Dripping()
    with (
        override_settings(COMMERCE_API_TIMEOUT_SECONDS=1.0, COMMERCE_API_URL=drip.url, COMMERCE_BACKEND="http"),
        pytest.raises(CommerceUnavailable, match=r"within 1\.0s"),
    ):
        HttpCommerce.from_settings().order_list(customer_id=str(customer.id))
    shop_client_close()  # hangs up on the dripping shop
    time.sleep(0.5)
    assert drip.sent < 40  # cut off, not read to its end (each read came well within the timeout)
    big = _Dripping(size=2_000_000)
    with (
        override_settings(COMMERCE_API_URL=big.url, COMMERCE_BACKEND="http"),
        pytest.raises(PermanentError, match="longer than 1048576 bytes"),
    ):
        HttpCommerce.from_settings().order_list(customer_id=str(customer.id))
    shop_client_close()
