"""`manage.py shop check`: what Switchboard will answer for, read from the configured shop, before a customer asks.

One report over the four parts of "Use your own shop" (README): the brand the prompts carry, the documents the
retrieval agent searches (and, with a question, what it would find), the order system (`COMMERCE_BACKEND`: reached
with the configured token, and a customer's orders as the agents would read them) and every MCP server in
`MCP_SERVERS` (listed now, its tools with their modes, and tool modes naming tools the server does not list).

Each line is a `Finding`: OK, WARN (works, but probably not what was meant) or FAIL (a customer would meet it). The
checks only read: nothing is refunded, no MCP tool is called.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Q

from agents.tools.mcp import server_tools
from conversations.models import Customer
from conversations.selectors import order_list
from knowledge.models import Document
from knowledge.search import search
from knowledge.services import DEMO_DOCS_DIR
from project.brand import fill
from project.errors import PermanentError, TransientError

#: The customer id asked for when none is given: a well-formed id no shop knows, so the answer (an empty list)
#: shows only that the API is reached and accepts the token.
PROBE_CUSTOMER = "00000000-0000-0000-0000-000000000000"


class Level(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    part: str
    """brand, documents, orders or mcp:<server>."""
    level: Level
    text: str
    """What was found, in words (never a secret's value)."""


def brand_findings() -> list[Finding]:
    """The shop's name and persona as every prompt carries them, and the support languages."""
    name = fill("{persona} of {shop}, {shop_description}")
    languages = ", ".join(settings.BRAND_SUPPORT_LANGUAGES) or "the customer's language"
    return [Finding("brand", Level.OK, f"{name}; answers in {languages}.")]


def documents_findings(*, question: str = "") -> list[Finding]:
    """The knowledge base: its documents and searchable sections, the demo's left beside your own, and the sections a
    question finds."""
    documents = Document.objects.annotate(
        searchable=Count("sections", filter=Q(sections__staff_only=False)),
        staff=Count("sections", filter=Q(sections__staff_only=True)),
    )
    demo_prefix = str(DEMO_DOCS_DIR)
    demo = [d for d in documents if d.source.startswith(demo_prefix)]
    own = [d for d in documents if not d.source.startswith(demo_prefix)]
    searchable = sum(d.searchable for d in documents)
    staff = sum(d.staff for d in documents)
    findings = []
    if not searchable:
        findings.append(Finding("documents", Level.FAIL, "no searchable section: import your help centre."))
    else:
        what = f"{len(own)} of your own documents, {len(demo)} demo documents"
        counts = f"{searchable} searchable sections, {staff} staff-only"
        findings.append(Finding("documents", Level.OK, f"{what}; {counts}."))
    if own and demo:
        findings.append(
            Finding(
                "documents",
                Level.WARN,
                "the demo shop's documents are still loaded beside yours: "
                "`manage.py knowledge import <your folder> --prune` removes them.",
            )
        )
    if question:
        hits = search(question, k=3)
        found = "; ".join(f"{hit.title} — {hit.section} ({hit.score:.2f})" for hit in hits)
        level = Level.OK if hits else Level.WARN
        findings.append(Finding("documents", level, f"{question!r} finds: {found or 'nothing'}."))
    return findings


def orders_findings(*, customer_id: str = "") -> list[Finding]:
    """The order system: which backend, its token's variable, and one customer's orders read through it."""
    backend = settings.COMMERCE_BACKEND
    if backend == "database":
        orders_in_tables = "the demo tables (COMMERCE_BACKEND=database)"
        findings = [Finding("orders", Level.OK, f"orders and refunds in {orders_in_tables}.")]
    else:
        token_env = settings.COMMERCE_API_TOKEN_ENV
        if token_env and not os.environ.get(token_env):
            return [Finding("orders", Level.FAIL, f"COMMERCE_API_TOKEN_ENV names {token_env}, which is not set.")]
        token = f"the token in {token_env}" if token_env else "no token"
        findings = [Finding("orders", Level.OK, f"your shop's API at {settings.COMMERCE_API_URL}, with {token}.")]
    asked = customer_id or PROBE_CUSTOMER
    try:
        orders = order_list(customer_id=asked)
    except (TransientError, PermanentError) as error:
        return [*findings, Finding("orders", Level.FAIL, f"listing customer {asked}'s orders failed: {error.message}")]
    if not customer_id:
        findings.append(Finding("orders", Level.OK, "the order list answers (add --customer ID to see one's orders)."))
    else:
        listed = ", ".join(f"{o.id} {o.total} {o.currency} {o.status}" for o in orders[:5])
        level = Level.OK if orders else Level.WARN
        findings.append(Finding("orders", level, f"customer {asked} has {len(orders)} orders: {listed or 'none'}."))
        if not Customer.objects.filter(id=customer_id).exists():
            findings.append(
                Finding("orders", Level.WARN, f"no Switchboard customer has the id {asked}: create_customer makes one.")
            )
    return findings


def mcp_findings() -> list[Finding]:
    """Every configured MCP server, listed now: its tools and their modes; tool modes naming tools it does not list."""
    findings = []
    for server, config in settings.MCP_SERVERS.items():
        part = f"mcp:{server}"
        try:
            tools = server_tools(server)
        except (TransientError, PermanentError) as error:
            findings.append(Finding(part, Level.FAIL, f"its tools could not be listed: {error.message}"))
            continue
        listed = ", ".join(f"{tool.name} ({tool.mode})" for tool in tools)
        findings.append(Finding(part, Level.OK if tools else Level.WARN, f"{len(tools)} tools: {listed or 'none'}."))
        unknown = sorted(set(config.get("tools", {})) - {tool.name for tool in tools})
        if unknown:
            findings.append(Finding(part, Level.WARN, f"tool modes name tools the server does not list: {unknown}."))
    return findings


def shop_check(*, question: str = "", customer_id: str = "") -> list[Finding]:
    """The whole report, in the README's order."""
    return [
        *brand_findings(),
        *documents_findings(question=question),
        *orders_findings(customer_id=customer_id),
        *mcp_findings(),
    ]
