"""Prometheus metrics (`/metrics`: api/metrics.py; project/metrics.py; orchestration/metrics_state.py)."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from project.env import env_str

_ROOT = Path(__file__).resolve().parent.parent
_PRODUCTION = os.environ.get("DJANGO_ENV") == "production"  # read here: project/settings.py imports this module first
# Where every process of one host writes its counters and histograms (prometheus_client's multiprocess mode): web
# workers, worker processes and their children, the supervisor. It must be one directory shared by all of them (a
# volume shared by the containers of one host), emptied when they all start (`make run` does; stale files only keep
# old counts, which Prometheus reads as counters that went on). Read by prometheus_client when it is imported: set
# here, before any module imports it.
# In production it must be given (a read-only image has no .run/, and a directory per container would hide the
# others' counts); locally it defaults to .run/prometheus.
if _PRODUCTION and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    raise ImproperlyConfigured(
        "Set PROMETHEUS_MULTIPROC_DIR to a writable directory shared by the host's Switchboard processes (a volume)."
    )
PROMETHEUS_MULTIPROC_DIR = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_ROOT / ".run" / "prometheus"))
if not _PRODUCTION:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
# Who may read /metrics: a scraper sending `Authorization: Bearer <METRICS_TOKEN>`, or basic auth with
# METRICS_BASIC_AUTH ("user:password"). Neither set: only direct clients on this host (127.0.0.1, ::1, no proxy's
# X-Forwarded-For) while DEBUG is on, nobody otherwise (the endpoint answers 403 saying what to set). The metrics hold
# no customer data, but queue depths and spend are the business's own.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
if _PRODUCTION and "change-me" in METRICS_TOKEN:
    raise ImproperlyConfigured("METRICS_TOKEN is docker-compose's example value: set a secret of your own.")
METRICS_BASIC_AUTH = env_str("METRICS_BASIC_AUTH", "")
if METRICS_BASIC_AUTH and ":" not in METRICS_BASIC_AUTH:
    raise ImproperlyConfigured("METRICS_BASIC_AUTH must be user:password.")
