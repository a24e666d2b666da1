"""The scrape-time gauges: read from the database and Redis when `/metrics` is scraped. (A placeholder: the names the
dashboard and the alert rules use, checked by tests/test_ops_artifacts.py; the collector replaces this file.)"""

GAUGES = (
    "switchboard_review_queue_depth",
    "switchboard_review_queue_oldest_age_seconds",
    "switchboard_review_queue_overdue",
    "switchboard_dead_letters_open",
    "switchboard_circuit_breaker_open",
    "switchboard_circuit_breaker_open_seconds",
    "switchboard_workers_alive",
    "switchboard_worker_heartbeat_age_seconds",
    "switchboard_runs_active",
)
