"""Settings of the A2A (Agent2Agent protocol) server: the agent card's addresses, this instance's identity in the
loop-guard extension, and how long a blocking `SendMessage` waits (a2a_server/, docs/a2a.md).

Part of `project.settings` (which imports every name here; kept apart for the modules' size), read from the
environment; the README's configuration table lists them.
"""

from __future__ import annotations

import hashlib
import os

from project.env import env_float, env_int, env_str

# The A2A app `project.asgi` serves /.well-known/agent-card.json and /a2a/... with ("" turns A2A off: 404).
A2A_ASGI_APP = env_str("A2A_ASGI_APP", "a2a_server.app.application")

# The address clients reach this deployment at (scheme, host, port; no trailing slash): the agent card's interface
# URLs are absolute and built from it. Behind a proxy, the proxy's public address.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

# This deployment's stable id in the loop-guard extension's path of systems visited. It must differ between
# deployments that may delegate to each other and stay the same across restarts and replicas of one deployment:
# by default a digest of PUBLIC_BASE_URL and the database's URL. Set it explicitly when either may change.
A2A_INSTANCE_ID = env_str(
    "A2A_INSTANCE_ID",
    "switchboard-"
    + hashlib.sha256(f"{PUBLIC_BASE_URL}|{os.environ.get('DATABASE_URL', 'sqlite')}".encode()).hexdigest()[:16],
)

# How long a blocking SendMessage (the default; `returnImmediately` false) holds its request waiting for the run to
# end before answering the task as it stands (working): longer answers more calls in one round trip, but holds a
# connection (not a thread: the wait is asynchronous) and a client's timeout; clients then poll GetTask or subscribe.
A2A_BLOCKING_WAIT_SECONDS = env_float("A2A_BLOCKING_WAIT_SECONDS", 30.0)

# The most systems one request may cross when this deployment starts the chain (the loop-guard extension's maxHops
# on what we send; a request arriving with its own keeps the sender's). A receiver refuses past it.
A2A_MAX_HOPS = env_int("A2A_MAX_HOPS", 4)

# ListTasks: the page size when the client names none, and the most it may ask for.
A2A_LIST_PAGE_SIZE = env_int("A2A_LIST_PAGE_SIZE", 50)
A2A_LIST_PAGE_SIZE_MAX = env_int("A2A_LIST_PAGE_SIZE_MAX", 100)
