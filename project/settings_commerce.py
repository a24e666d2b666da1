"""Settings of the order system agents talk to: the built-in database (the demo) or a shop's own REST API
(conversations/commerce.py, conversations/commerce_http.py; the contract is docs/commerce-api.md).

Part of `project.settings` (which imports every name here), read from the environment; the README's configuration
table lists them.
"""

from __future__ import annotations

from project.env import env_float, env_int, env_str

# Where orders live and refunds are executed: "database" (the built-in demo tables; a refund is written in the same
# transaction as its ledger row, so it is exactly once by construction) or "http" (your shop's REST API: a refund is
# recorded as requested before the call and as done after it, and re-sent with the same Idempotency-Key after a
# crash; an outcome still unknown after the retries goes to a person).
COMMERCE_BACKEND = env_str("COMMERCE_BACKEND", "database")
# The base URL of the shop's API (http backend), e.g. https://shop.example.com/switchboard/v1 (no trailing slash
# needed). Use https outside a private network: the token travels with every request.
COMMERCE_API_URL = env_str("COMMERCE_API_URL", "")
# The NAME of the environment variable that holds the API's bearer token (never the token itself: settings are
# printed and committed, secrets are not). Empty: no Authorization header.
COMMERCE_API_TOKEN_ENV = env_str("COMMERCE_API_TOKEN_ENV", "COMMERCE_API_TOKEN")
# Seconds one call to the shop may take (connect, and each read). A refund whose answer does not come in time is
# retried with the same key (the shop deduplicates it). Shorter: a hung shop frees the worker sooner; too short
# cuts a slow but successful refund (harmless, re-sent with its key, but it costs a retry).
COMMERCE_API_TIMEOUT_SECONDS = env_float("COMMERCE_API_TIMEOUT_SECONDS", 10.0)
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
