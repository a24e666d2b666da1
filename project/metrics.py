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

import base64
import binascii
import glob
import hmac
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from prometheus_client import Counter, Histogram, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

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

#: The event metrics, made at first use (`__getattr__`): a process that counts nothing (a one-off manage.py command)
#: leaves no files behind. Each: (kind, name, help, labels, buckets or None).
SPECS: dict[str, tuple[type[Counter] | type[Histogram], str, str, tuple[str, ...], tuple[float, ...] | None]] = {
    "RUNS_STARTED": (
        Counter,
        "switchboard_runs_started",
        "Runs started (one per customer message), replays left out.",
        (),
        None,
    ),
    "RUNS_FINISHED": (
        Counter,
        "switchboard_runs_finished",
        "Run endings, by status (completed, failed, timed_out, cancelled) and reason code ('' when completed). A run a"
        " person or a dead-letter replay reopens ends again: it is counted at each ending.",
        ("status", "reason"),
        None,
    ),
    "RUNS_ESCALATED": (
        Counter,
        "switchboard_runs_escalated",
        "Runs handed to a person, by reason code.",
        ("reason",),
        None,
    ),
    "REPLY_SECONDS": (
        Histogram,
        "switchboard_reply_seconds",
        "Seconds from the customer's message to the reply stored (completed runs; a person's decision included).",
        (),
        REPLY_BUCKETS,
    ),
    "STEP_SECONDS": (
        Histogram,
        "switchboard_step_duration_seconds",
        "Seconds of a step's successful try, by agent.",
        ("agent",),
        STEP_BUCKETS,
    ),
    "STEP_ATTEMPTS": (
        Counter,
        "switchboard_step_attempts",
        "Tries of steps by agent and outcome: succeeded, retried (a transient failure, tried again), postponed (no"
        " fault: a breaker is open), polled (a remote task asked later), halted (to a person), failed (for good).",
        ("agent", "outcome"),
        None,
    ),
    "LLM_CALLS": (
        Counter,
        "switchboard_llm_calls",
        "Requests to a model, by model, agent and outcome (ok; error: the provider failed or timed out).",
        ("model", "agent", "outcome"),
        None,
    ),
    "LLM_TOKENS": (
        Counter,
        "switchboard_llm_tokens",
        "Tokens used, by model, agent and direction (input, output).",
        ("model", "agent", "kind"),
        None,
    ),
    "LLM_COST": (
        Counter,
        "switchboard_llm_cost_usd",
        "LLM cost in US dollars, by model and agent.",
        ("model", "agent"),
        None,
    ),
    "REVIEW_DECISIONS": (
        Counter,
        "switchboard_review_decisions",
        "Review decisions, by kind (approve, edit, reject, expire).",
        ("kind",),
        None,
    ),
    "DEAD_LETTERS": (
        Counter,
        "switchboard_dead_letters",
        "Messages and steps dead-lettered, by reason.",
        ("reason",),
        None,
    ),
    "RECOVERIES": (
        Counter,
        "switchboard_supervisor_recoveries",
        "Runs the supervisor sent again, by cause (dead worker, lease or retry due, broker lost, stalled).",
        ("cause",),
        None,
    ),
    "THROTTLED": (
        Counter,
        "switchboard_throttled_requests",
        "API requests refused by a throttle, by scope.",
        ("scope",),
        None,
    ),
}
_made: dict[str, Any] = {}
_lock = threading.Lock()
logger = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    """`metrics.RUNS_STARTED` and the others: made once per process, at first use."""
    spec = SPECS.get(name)
    if spec is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        if name not in _made:
            kind, metric_name, help_text, labels, buckets = spec
            if buckets is not None:
                _made[name] = Histogram(metric_name, help_text, list(labels), buckets=buckets)
            else:
                _made[name] = kind(metric_name, help_text, list(labels))
        return _made[name]


def event_metrics() -> list[Any]:
    """Every event metric (made now if need be), for the dashboard's and the alerts' checks; the scrape-time gauges are
    in `orchestration.metrics_state.GAUGES`."""
    return [__getattr__(name) for name in SPECS]


def count(update: Callable[[], object]) -> None:
    """Apply a metric update; one that cannot be written (the directory full or gone, a damaged file) is logged and
    dropped: counting never fails what is counted."""
    try:
        update()
    except (OSError, ValueError, RuntimeError, struct.error) as exc:
        logger.warning("a metric could not be counted: %s", exc)


def llm_call(
    *, model: str, agent: str, ok: bool, input_tokens: int = 0, output_tokens: int = 0, cost_usd: float = 0
) -> None:
    """One request to a model: counted with its tokens and cost."""

    def update() -> None:
        __getattr__("LLM_CALLS").labels(model=model, agent=agent, outcome="ok" if ok else "error").inc()
        if input_tokens or output_tokens:
            __getattr__("LLM_TOKENS").labels(model=model, agent=agent, kind="input").inc(input_tokens)
            __getattr__("LLM_TOKENS").labels(model=model, agent=agent, kind="output").inc(output_tokens)
        if cost_usd:
            __getattr__("LLM_COST").labels(model=model, agent=agent).inc(cost_usd)

    count(update)


class HostCollector(MultiProcessCollector):
    """The counts every process of this host wrote (prometheus_client's multiprocess collector), with a damaged file
    (a process killed while it wrote one, a full disk) left out and logged instead of failing the whole scrape."""

    def __init__(self) -> None:
        super().__init__(registry=None, path=settings.PROMETHEUS_MULTIPROC_DIR)

    def collect(self) -> Iterable[Metric]:
        files = glob.glob(os.path.join(settings.PROMETHEUS_MULTIPROC_DIR, "*.db"))
        try:
            return self.merge(files, accumulate=True)
        except (struct.error, RuntimeError, OSError, ValueError, KeyError) as exc:
            readable = [path for path in files if _readable(path)]
            logger.warning("metrics: %d damaged files left out (%s)", len(files) - len(readable), exc)
            return self.merge(readable, accumulate=True)


def _readable(path: str) -> bool:
    try:
        MultiProcessCollector.merge([path], accumulate=True)
    except (struct.error, RuntimeError, OSError, ValueError, KeyError):
        return False
    return True


def credentials_valid(authorization: str) -> bool:
    """Whether an Authorization header carries METRICS_TOKEN (Bearer) or METRICS_BASIC_AUTH (Basic)."""
    token, basic = settings.METRICS_TOKEN, settings.METRICS_BASIC_AUTH
    scheme, _, credentials = authorization.partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(credentials.encode(), token.encode()):
        return True
    if basic and scheme.lower() == "basic":
        try:
            given = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, basic.encode())
    return False
