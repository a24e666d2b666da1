"""The MCP client in this process, against the fake server (harness/fake_mcp.py) over HTTP and over stdio: what a
stdio server is given of the environment, structured content kept within its cap, a redirect off the server's
origin refused (the headers never reach the other host), a URL's query kept out of errors, and the order ids a
call's arguments name."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings

from agents.tools.mcp import STRUCTURED_CHARS, MCPRefused, MCPUnavailable, mcp_call, url_scrub
from agents.tools.mcp_agent import argument_order_ids
from harness.fake_mcp import FakeMCP
from tests.test_mcp import TOKEN_ENV

STDIO = ["-m", "harness.fake_mcp", "--stdio"]


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[FakeMCP]:
    server = FakeMCP().start()
    yield server
    server.stop()


@pytest.fixture
def mcp(mcp_server: FakeMCP, settings: Any, monkeypatch: pytest.MonkeyPatch) -> FakeMCP:
    """The fake server, reset, configured as `shop` (and over stdio as `kit`), its breakers closed."""
    mcp_server.reset()
    settings.MCP_SERVERS = {
        "shop": {"url": mcp_server.url, "headers": {"Authorization": "SHOP_MCP_TOKEN"}},
        "kit": {"command": sys.executable, "args": STDIO, "env": {"KIT_TOKEN": "KIT_TOKEN_SOURCE"}, "timeout": 15},
    }
    monkeypatch.setenv("SHOP_MCP_TOKEN", TOKEN_ENV["SHOP_MCP_TOKEN"])
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    for key in client.scan_iter("switchboard:breaker:mcp:*"):
        client.delete(key)
    return mcp_server


def test_a_stdio_server_gets_its_configured_secrets_and_nothing_else_of_the_environment(mcp, monkeypatch) -> None:
    monkeypatch.setenv("KIT_TOKEN_SOURCE", "kit-secret-value")
    monkeypatch.setenv("DATABASE_URL", "postgres://worker:hunter2@db/switchboard")
    monkeypatch.setenv("PLANTED_SECRET", "not-for-tools")
    names = mcp_call("kit", "environment_names", {}, customer_id="c-1")["text"].splitlines()
    assert "KIT_TOKEN" in names and "PATH" in names  # the configured secret, and the SDK's safe defaults
    assert not {"DATABASE_URL", "PLANTED_SECRET", "KIT_TOKEN_SOURCE", "SHOP_MCP_TOKEN"} & set(names), names


def test_structured_content_is_kept_within_its_cap(mcp) -> None:
    small = mcp_call("shop", "catalogue", {"count": 2}, customer_id="c-1")
    assert small["structured"] == {"products": [{"sku": f"ITEM-{n}", "name": f"Product number {n}"} for n in (0, 1)]}
    large = mcp_call("shop", "catalogue", {"count": 500}, customer_id="c-1")
    assert large["structured"] is None and not large["is_error"]
    assert "structured content left out: " in large["text"] and f"over the {STRUCTURED_CHARS} kept" in large["text"]
    assert len(large["text"]) < 4200
    assert [call["customer"] for call in mcp.calls] == ["c-1", "c-1"]  # the customer's id, in every request's _meta


def test_a_redirect_off_the_servers_origin_is_refused_and_not_followed() -> None:
    elsewhere = FakeMCP().start()
    redirecting = FakeMCP(redirect_to=f"http://localhost:{elsewhere.port}/mcp").start()  # another host
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SHOP_MCP_TOKEN", TOKEN_ENV["SHOP_MCP_TOKEN"])
            patch.setattr(django_settings, "MCP_SERVERS", {"hop": {"url": redirecting.url, "headers": HEADERS}})
            redis.Redis.from_url(django_settings.REDIS_URL).delete("switchboard:breaker:mcp:hop")
            with pytest.raises(MCPRefused, match=r"redirected the request \(HTTP 307\).*not followed"):
                mcp_call("hop", "stock_level", {"sku": "LANTERN-7"}, customer_id="c-1")
        assert redirecting.requests >= 1 and elsewhere.requests == 0  # the token never reached the other host
    finally:
        redirecting.stop()
        elsewhere.stop()


HEADERS = {"Authorization": "SHOP_MCP_TOKEN"}


def test_a_urls_query_is_left_out_of_errors(mcp, settings) -> None:
    settings.MCP_SERVERS = {"shop": {"url": f"{mcp.url}?token=query-secret-123", "headers": HEADERS}}
    mcp.fail_calls = True  # HTTP 503: httpx's error names the URL
    with pytest.raises(MCPUnavailable) as failed:
        mcp_call("shop", "stock_level", {"sku": "LANTERN-7"}, customer_id="c-1")
    assert "503" in failed.value.message and "query-secret-123" not in failed.value.message
    assert failed.value.__cause__ is None and failed.value.__suppress_context__  # no traceback quotes it either
    text = "Server error '503' for url 'https://shop.example/mcp?token=abc&x=1' (see https://x.example/a?b=c)"
    scrubbed = url_scrub(text)
    assert scrubbed.startswith("Server error '503' for url 'https://shop.example/mcp?[query left out]' (see https://")
    assert scrubbed.endswith("x.example/a?[query left out])") and "abc" not in scrubbed


def test_the_order_ids_a_calls_arguments_name() -> None:
    arguments = {
        "order_id": "sb-30001",
        "orderIds": ["SB-30002", 12345],
        "note": "also about sb-30003, please",
        "nested": {"order": None, "lines": [{"order_number": "FF104234"}], "sku": "LANTERN-7"},
        "express": True,
    }
    assert argument_order_ids(arguments) == {"sb-30001", "SB-30001", "SB-30002", "12345", "SB-30003", "FF104234"}
    assert argument_order_ids({"sku": "LANTERN-7", "count": 3}) == set()
