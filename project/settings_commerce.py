"""Settings of the order system agents talk to: the built-in database (the demo) or a shop's own REST API
(conversations/commerce.py, conversations/commerce_http.py; the contract is docs/commerce-api.md).

Part of `project.settings` (which imports every name here), read from the environment; the README's configuration
table lists them.
"""

from __future__ import annotations

from project.env import env_float, env_str

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
