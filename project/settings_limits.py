"""Settings that bound what one client can cost — live-progress streams, request heads and bodies, the health
checks, sign-in attempts, what a page may load (Content-Security-Policy) — and what agents may pay out (refunds).

Part of `project.settings` (which imports every name here; kept apart only for the modules' size), read
from the environment with the same helpers; the README's configuration table lists them.
"""

from __future__ import annotations

from datetime import timedelta

import csp.constants as csp

from project.env import env_decimal, env_float, env_int

# --- Live progress (Server-Sent Events, api/events.py and api/streams.py) ---------------------
# A connection is closed after this many seconds (the browser reconnects, or the client polls).
SSE_MAX_SECONDS = env_float("SSE_MAX_SECONDS", 120.0)
# A waiting stream holds no database connection: it reads the run when Redis pings it (a Step, Run,
# ReviewItem or Message saved, see api/signals.py), and also this often in case a ping was lost.
# Shorter: a lost ping shows sooner; every open stream reads the database more often.
SSE_POLL_SECONDS = env_float("SSE_POLL_SECONDS", 5.0)
# A comment line after this many quiet seconds keeps proxies from closing an idle stream.
SSE_HEARTBEAT_SECONDS = env_float("SSE_HEARTBEAT_SECONDS", 15.0)
# Open streams per customer (429 above): a few tabs; more only costs the server.
SSE_MAX_STREAMS_PER_CUSTOMER = env_int("SSE_MAX_STREAMS_PER_CUSTOMER", 5)
# Open streams in total, all web processes together (429 above). Each holds a socket and a Redis
# connection (no thread, no database connection); keep it below uvicorn's --limit-concurrency x processes.
SSE_MAX_STREAMS = env_int("SSE_MAX_STREAMS", 500)
# Streams a customer may open per minute (429 above): every opening authenticates and reads the run.
# EventSource reconnects after each SSE_MAX_SECONDS, or 2 s after an error.
SSE_OPENS_PER_MINUTE = env_int("SSE_OPENS_PER_MINUTE", 30)

# --- API inputs -------------------------------------------------------------------------------
# Largest customer message accepted, in characters (the API answers 400 above it).
MESSAGE_MAX_CHARS = env_int("MESSAGE_MAX_CHARS", 4000)
# The largest page a list endpoint answers (`?limit=` above it gives this many): a larger page is fewer
# round trips for a client, and more rows read and serialised by one request.
API_PAGE_MAX_SIZE = env_int("API_PAGE_MAX_SIZE", 100)
# How deeply a JSON request body may nest arrays and objects (400 beyond): the API's bodies nest 3 levels
# at most; a higher limit allows richer bodies, and costs more to walk in every layer that reads them.
REQUEST_JSON_MAX_DEPTH = env_int("REQUEST_JSON_MAX_DEPTH", 20)

# --- Requests (project/request_limits.py, project/http_protocol.py: before a request takes a thread) ----
# Largest request body, in bytes, on every path: refused with 413 before it is read (under uvicorn; under a
# WSGI server RequestSizeLimitMiddleware checks Content-Length). Django's own name for the limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("REQUEST_MAX_BYTES", 64 * 1024)
# A body must arrive whole within this many seconds (408 after). A slow client holds a connection, never
# a thread, and at most this long; longer lets slower links post, shorter frees connections sooner.
REQUEST_BODY_TIMEOUT_SECONDS = env_float("REQUEST_BODY_TIMEOUT_SECONDS", 10.0)
# A request head (a connection's first, or the next on a kept-alive one) must arrive whole within this many seconds,
# else the connection is closed, with a 408 if part of a head came (project/http_protocol.py, named by the Procfile's
# --http). A connection waiting for its head holds no thread but counts towards --limit-concurrency (503 past it):
# longer lets slower links in; shorter frees a connection sooner, so slow heads fill the web tier for less long.
REQUEST_HEAD_TIMEOUT_SECONDS = env_float("REQUEST_HEAD_TIMEOUT_SECONDS", 10.0)
# Header count and total header bytes of a request (431 above): a token, a session cookie and the usual
# browser headers take a few KiB. uvicorn's h11 parser also stops buffering an incomplete head at
# --h11-max-incomplete-event-size (Procfile, docker-compose.yml).
REQUEST_MAX_HEADERS = env_int("REQUEST_MAX_HEADERS", 100)
REQUEST_MAX_HEADER_BYTES = env_int("REQUEST_MAX_HEADER_BYTES", 16 * 1024)

# --- Health (api/health.py) ---------------------------------------------------------------------
# The database and worker checks are reused for this many seconds by each web process (the broker's ping
# is live): a probe sees a dead worker up to this (plus the 1 s ping) late, and however many probes come,
# they cost one worker ping per process per period.
HEALTH_CACHE_SECONDS = env_float("HEALTH_CACHE_SECONDS", 5.0)

# --- Sign-in lockout (django-axes) on /login/ and /admin/login/ ---------------------------------------
# After LOGIN_FAILURE_LIMIT failed sign-ins of one username from one IP address, that pair is refused (429,
# a page saying when to try again) for LOGIN_COOLOFF_SECONDS, counted from the last failure (an attempt
# while locked out starts the wait again); a successful sign-in clears the count. Attempts are rows (admin:
# Axes -> Access attempts; `manage.py axes_reset_username EMAIL` unlocks). By username and address together,
# so nobody can lock a customer out from elsewhere; the trade-off: one account guessed from many addresses
# is only slowed by the per-address limits. API tokens never pass through sign-in and are never locked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(seconds=env_float("LOGIN_COOLOFF_SECONDS", 15 * 60))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "chat.views.login_locked_out"
# The client's address as the API's throttles see it (NUM_PROXIES trusted X-Forwarded-For entries).
AXES_CLIENT_IP_CALLABLE = "chat.views.client_ip"
# Successful sign-ins are not logged by axes (no trail of every customer's addresses and browsers).
AXES_DISABLE_ACCESS_LOG = True
# No banner line at every process start (web, each worker).
AXES_VERBOSE = False

# --- Content-Security-Policy (django-csp 4) on every response ---------------------------------------
# Scripts, styles, fonts and connections from this origin only; no inline script anywhere, no plugins, no
# framing. The chat page has no inline script or style. The admin and the API docs (Swagger UI, Redoc)
# carry inline <style> blocks: under CSP_INLINE_STYLE_PATHS style-src also allows 'unsafe-inline' (and
# Redoc's blob: worker; `project.middleware.ContentSecurityPolicyMiddleware`). Trade-off: a CDN, an
# analytics script or a font service needs an entry here (Redoc's Google fonts and logo are refused and
# it renders without them); inline styles can be injected on those staff and docs pages (CSS, not script).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF],
        "style-src": [csp.SELF],
        "img-src": [csp.SELF, "data:"],
        "font-src": [csp.SELF],
        "connect-src": [csp.SELF],
        "worker-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.SELF],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    }
}
CSP_INLINE_STYLE_PATHS = ("/admin/", "/api/v1/docs/", "/api/v1/redoc/")

# --- Refunds ------------------------------------------------------------------------------------
# The refund policy (conversations/refunds.py); amounts at face value in the order's currency, no exchange rates.
# Most agents refund on one order, all their refunds of it together: higher, fewer reviews, more paid on their word.
REFUND_AUTO_LIMIT = env_decimal("REFUND_AUTO_LIMIT", "100.00")
# Most agents refund to one customer in the window, all orders and currencies: bounds one account (or stolen token).
REFUND_AUTO_CUSTOMER_LIMIT = env_decimal("REFUND_AUTO_CUSTOMER_LIMIT", "200.00")
# That window in days: longer, a tighter bound per account, and more customers with several returns sent to a person.
REFUND_AUTO_WINDOW_DAYS = env_int("REFUND_AUTO_WINDOW_DAYS", 30)
# Reviewers' refunds of an order above this (a decision's with all approved before) need a second reviewer too.
REFUND_SECOND_APPROVAL_ABOVE = env_decimal("REFUND_SECOND_APPROVAL_ABOVE", "500.00")

# --- Worker threads -----------------------------------------------------------------------------
# Stack of each thread a thread-pool worker starts (the `llm` worker's LLM_WORKER_CONCURRENCY threads), in KiB; 0
# keeps the platform's default (8 MiB of address space per thread on Linux, of which only the pages touched are
# resident). A task's deepest C recursion (JSON nested REQUEST_JSON_MAX_DEPTH deep, Django, psycopg) needs far less.
WORKER_THREAD_STACK_KB = env_int("WORKER_THREAD_STACK_KB", 512)
