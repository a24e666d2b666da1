"""Prometheus metrics: what happens (counters and histograms, counted where it happens, in every process) and what
is (gauges read from the database and Redis when scraped: `orchestration.metrics_state`).

Counters and histograms live in prometheus_client's multiprocess mode: each process (web workers, prefork children,
the thread-pool worker, the supervisor) writes its own files in PROMETHEUS_MULTIPROC_DIR, and `/metrics` sums them
(`api.metrics`). That is the library's way for processes that share a host; the state of the queue, the dead letters,
the breakers and the workers is not counted by anyone: it is read from where it is kept, so it is right whichever
process answers the scrape, and after any restart. Names follow Prometheus' conventions: base units (seconds,
dollars as `_usd`), `_total` for counters, and bounded labels (agent, model, status, reason codes, kinds — never run,
conversation or customer ids).
"""

from __future__ import annotations

import os
import socket

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from prometheus_client import Counter, Histogram, values

# The settings choose the directory (project/settings_metrics.py: PROMETHEUS_MULTIPROC_DIR, set in the environment,
# where prometheus_client reads it); reading them here makes sure they did before the first metric is made.
if not settings.PROMETHEUS_MULTIPROC_DIR:
    raise ImproperlyConfigured("PROMETHEUS_MULTIPROC_DIR must name a directory shared by the host's processes.")

# Each process's files are named by host and process id, not the process id alone: containers of one host that share
# the directory (docker-compose's volume) number their processes from 1, and two processes writing one file would
# lose counts. Set before any metric is made.
values.ValueClass = values.MultiProcessValue(lambda: f"{socket.gethostname()}-{os.getpid()}")

#: Seconds from a customer's message to the reply stored: a reply within seconds, or after a person decided.
REPLY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 4 * 3600, 24 * 3600)
#: Seconds of one step's try: database-only steps take milliseconds, LLM steps seconds.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

RUNS_STARTED = Counter("switchboard_runs_started", "Runs started (one per customer message), replays left out.")
RUNS_FINISHED = Counter(
    "switchboard_runs_finished",
    "Runs that ended, by status (completed, failed, timed_out, cancelled) and reason code ('' when completed).",
    ["status", "reason"],
)
RUNS_ESCALATED = Counter("switchboard_runs_escalated", "Runs handed to a person, by reason code.", ["reason"])
REPLY_SECONDS = Histogram(
    "switchboard_reply_seconds",
    "Seconds from the customer's message to the reply stored (completed runs; a person's decision included).",
    buckets=REPLY_BUCKETS,
)
STEP_SECONDS = Histogram(
    "switchboard_step_duration_seconds",
    "Seconds of a step's successful try, by agent.",
    ["agent"],
    buckets=STEP_BUCKETS,
)
STEP_ATTEMPTS = Counter(
    "switchboard_step_attempts",
    "Tries of steps by agent and outcome: succeeded, retried (a transient failure, tried again), postponed (no fault:"
    " a breaker is open), halted (handed to a person), failed (for good).",
    ["agent", "outcome"],
)
LLM_CALLS = Counter(
    "switchboard_llm_calls",
    "Completions asked of a model, by model, agent and outcome (ok, rejected: unusable after the repair round,"
    " error: the provider failed).",
    ["model", "agent", "outcome"],
)
LLM_TOKENS = Counter(
    "switchboard_llm_tokens", "Tokens used, by model, agent and direction (input, output).", ["model", "agent", "kind"]
)
LLM_COST = Counter("switchboard_llm_cost_usd", "LLM cost in US dollars, by model and agent.", ["model", "agent"])
REVIEW_DECISIONS = Counter(
    "switchboard_review_decisions", "Review decisions, by kind (approve, edit, reject, expire).", ["kind"]
)
DEAD_LETTERS = Counter("switchboard_dead_letters", "Messages and steps dead-lettered, by reason.", ["reason"])
RECOVERIES = Counter(
    "switchboard_supervisor_recoveries",
    "Runs the supervisor sent again, by cause (dead worker, lease or retry due, broker lost, stalled).",
    ["cause"],
)
THROTTLED = Counter("switchboard_throttled_requests", "API requests refused by a throttle, by scope.", ["scope"])

#: Every metric's name as exposed (counters with `_total`; histograms with `_bucket`, `_sum`, `_count`), for the
#: dashboard's and the alerts' checks (`tests/test_ops_artifacts.py`); the scrape-time gauges are in
#: `orchestration.metrics_state.GAUGES`.
EVENT_METRICS = (
    RUNS_STARTED,
    RUNS_FINISHED,
    RUNS_ESCALATED,
    REPLY_SECONDS,
    STEP_SECONDS,
    STEP_ATTEMPTS,
    LLM_CALLS,
    LLM_TOKENS,
    LLM_COST,
    REVIEW_DECISIONS,
    DEAD_LETTERS,
    RECOVERIES,
    THROTTLED,
)
