"""Settings of the order system agents talk to: the built-in database (the demo) or a shop's own REST API
(conversations/commerce.py, conversations/commerce_http.py; the contract is docs/commerce-api.md).

Part of `project.settings` (which imports every name here), read from the environment; the README's configuration
table lists them.
"""

from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured

from project.env import env_bool, env_float, env_int, env_str

#: The longest order id a pattern may match (the order-id columns: Order.id, LedgerEntry.order_id).
ORDER_ID_MAX_LENGTH = 32
_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")


def _nested_repeat(items: list[tuple[object, object]], inside: bool = False) -> bool:
    """Whether a parsed pattern repeats a part that repeats itself ((?:a+)+): its backtracking can grow
    exponentially with the text searched."""
    for op, arg in items:
        name = str(op)
        parts: list[list[tuple[object, object]]] = []
        if name in _REPEATS:
            if inside:
                return True
            parts, inside_part = [list(arg[2])], True  # type: ignore[index]
        elif name == "SUBPATTERN":
            parts, inside_part = [list(arg[-1])], inside  # type: ignore[index]
        elif name == "BRANCH":
            parts, inside_part = [list(branch) for branch in arg[1]], inside  # type: ignore[index]
        if any(_nested_repeat(part, inside_part) for part in parts):
            return True
    return False


def order_id_pattern_check(pattern: str, *, uppercase: bool) -> str:
    """COMMERCE_ORDER_ID_PATTERN, checked: a regular expression that compiles; captures no group (it is searched for
    in texts); is not anchored (it is anchored where it is used); matches no empty or blank text; matches at most
    ORDER_ID_MAX_LENGTH characters (no unbounded `+` or `*`); repeats no part that repeats itself (exponential
    backtracking on a hostile message); and, with `uppercase` (COMMERCE_ORDER_ID_UPPERCASE), has no lower-case
    letter (ids are matched in any case and written upper-case, so a lower-case part could never match)."""
    try:
        compiled = re.compile(pattern)
        parsed = re._parser.parse(pattern)  # type: ignore[attr-defined]  # the standard library's own parse tree
    except re.error as error:
        raise ImproperlyConfigured(
            f"COMMERCE_ORDER_ID_PATTERN {pattern!r} is not a regular expression: {error}."
        ) from error
    problems = []
    if compiled.groups:
        problems.append("capturing groups (write (?:...) instead)")
    if re.search(r"(?<!\\)[$^]|\\[AZbB]", pattern):
        problems.append("anchors or word boundaries (they are added where the pattern is used)")
    if compiled.fullmatch("") or compiled.search(" "):
        problems.append("a match of empty or blank text")
    if parsed.getwidth()[1] > ORDER_ID_MAX_LENGTH:
        problems.append(f"matches longer than {ORDER_ID_MAX_LENGTH} characters (bound every repeat: {{1,12}}, not +)")
    if _nested_repeat(list(parsed)):
        problems.append("a repeated part that repeats itself (exponential backtracking: write one repeat)")
    if uppercase and re.search(r"[a-z]", re.sub(r"\\.", "", pattern)):
        problems.append("lower-case letters (ids are written upper-case; set COMMERCE_ORDER_ID_UPPERCASE=false)")
    if problems:
        raise ImproperlyConfigured(f"COMMERCE_ORDER_ID_PATTERN {pattern!r} has {'; '.join(problems)}.")
    return pattern


# Where orders live and refunds are executed: "database" (the built-in demo tables; a refund is written in the same
# transaction as its ledger row, so it is exactly once by construction) or "http" (your shop's REST API: a refund is
# recorded as requested before the call and as done after it, and re-sent with the same Idempotency-Key after a
# crash; an outcome still unknown after the retries goes to a person).
COMMERCE_BACKEND = env_str("COMMERCE_BACKEND", "database")
# What an order id looks like in your shop, a regular expression without anchors or capturing groups (the demo's:
# SB- and five digits), read once at start-up. Agents look up only ids of this shape: it is found in customers'
# messages (any case, as a whole word, then upper-cased), required of the model's tool arguments, and checked before
# an id from outside reaches a query or your API. Begin and end it with a letter or digit; at most 32 characters,
# every repeat bounded ({1,12}), no repeat inside a repeat (checked at start-up, with the rest).
# A shape plain numbers also fit ("[0-9]+") makes amounts and years look like order ids: nothing is refunded on
# them (they are not the customer's orders), but a refund whose amount reads as an id goes to a person; a prefix or
# a fixed length ("[0-9]{6}", "FF[0-9]{6}") keeps them apart.
# Whether order ids are upper-case (the default): then they are found in texts in any case and written upper-case
# ("sb-10001" is SB-10001). False: ids are matched exactly as written, case included (a shop whose ids hold
# lower-case letters: "ord_[a-z0-9]{8}"), and a customer who changes the case names no order.
COMMERCE_ORDER_ID_UPPERCASE = env_bool("COMMERCE_ORDER_ID_UPPERCASE", True)
COMMERCE_ORDER_ID_PATTERN = order_id_pattern_check(
    env_str("COMMERCE_ORDER_ID_PATTERN", "SB-[0-9]{5}"), uppercase=COMMERCE_ORDER_ID_UPPERCASE
)
# The base URL of the shop's API (http backend), e.g. https://shop.example.com/switchboard/v1 (no trailing slash
# needed). Use https outside a private network: the token travels with every request.
COMMERCE_API_URL = env_str("COMMERCE_API_URL", "")
# The NAME of the environment variable that holds the API's bearer token (never the token itself: settings are
# printed and committed, secrets are not). Empty: no Authorization header.
COMMERCE_API_TOKEN_ENV = env_str("COMMERCE_API_TOKEN_ENV", "COMMERCE_API_TOKEN")
# Seconds one call to the shop may take, its whole answer read (not per read). A refund whose answer does not come
# in time is retried with the same key (the shop deduplicates it). Shorter: a hung shop frees the worker sooner;
# too short cuts a slow but successful refund (harmless, re-sent with its key, but it costs a retry).
COMMERCE_API_TIMEOUT_SECONDS = env_float("COMMERCE_API_TIMEOUT_SECONDS", 10.0)
# The longest answer read from the shop, in bytes (decoded): an order, a list of a customer's orders, a refund's
# result are a few KB; a longer answer is refused as an error (a person sees it), never read whole into memory.
# Raise it for customers with thousands of orders in one list.
COMMERCE_API_MAX_RESPONSE_BYTES = env_int("COMMERCE_API_MAX_RESPONSE_BYTES", 1_048_576)
# Connections to the shop's API: one pooled client per process (kept alive between calls, shared by the threads of
# the process, created anew in a forked child). At most this many connections per process are open at once; a call
# beyond them waits for a free one (within the timeout). Higher: more calls at once from a threaded worker or web
# process; lower: fewer sockets held open on the shop (each prefork worker process has its own pool).
COMMERCE_API_MAX_CONNECTIONS = env_int("COMMERCE_API_MAX_CONNECTIONS", 10)
# Seconds an idle connection is kept for the next call. Keep it below the shop's own idle timeout (or its load
# balancer's, often 60s): a connection the shop closed just as a request left on it fails that request (transient:
# retried, a refund with its key). 0 closes every connection after its call (a new TCP/TLS handshake each time).
COMMERCE_API_KEEPALIVE_SECONDS = env_float("COMMERCE_API_KEEPALIVE_SECONDS", 30.0)
# The circuit breaker per shop API (`commerce:<url>`, shared by every process through Redis): after this many
# failures in a row (5xx, timeouts, no connection) calls are paused: a step that needs the shop waits for the
# cool-down, using up no retry, and nothing is sent. Keep it above deliver's tries (4) so that one run's retries
# end in review before the breaker pauses everyone's calls; lower spares a struggling shop sooner, but a run caught
# by the open breaker waits (up to its deadline) instead of going to review.
COMMERCE_BREAKER_FAILURES = env_int("COMMERCE_BREAKER_FAILURES", 10)
# ... and after this many seconds one call is let through as a probe (success closes the breaker). Longer spares a
# shop that is down; shorter notices sooner that it is back.
COMMERCE_BREAKER_COOLDOWN_SECONDS = env_float("COMMERCE_BREAKER_COOLDOWN_SECONDS", 30.0)
