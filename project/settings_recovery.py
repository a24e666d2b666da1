"""Settings of delivery and recovery: how the broker hands messages back, how agents retry, and how the supervisor
finds work whose worker died and resumes it (orchestration/liveness.py, recovery.py, supervisor.py).

Part of `project.settings` (which imports every name here; kept apart only for the modules' size), read from the
environment with the same helpers; docs/reliability.md explains the design and the README's configuration table
lists them.
"""

from __future__ import annotations

from project.env import env_bool, env_float, env_int

# --- The broker (Redis): its own redelivery, the slow path ---------------------------------------
# Redis hands an unacknowledged message to another worker this many seconds after a worker took it, whether or not
# that worker still works on it: it must exceed the longest step plus any retry countdown (`manage.py check` warns).
# Recovery does not wait for it: the supervisor resumes a dead worker's work from the database within seconds.
BROKER_VISIBILITY_TIMEOUT = env_int("BROKER_VISIBILITY_TIMEOUT", 3600)
# Redis connections a worker process may open to the broker at once (kombu's default is 10): every thread of the
# `llm` worker publishes its next step when its call returns, and past the limit a publish fails ("Too many
# connections") instead of waiting. Only the connections in use are opened.
BROKER_REDIS_MAX_CONNECTIONS = env_int("BROKER_REDIS_MAX_CONNECTIONS", 1024)
# How often a worker looks for unacknowledged messages past that timeout (kombu 5.7), and every how many looks it
# scans Redis: the scan period is interval x throttle (kombu's default 10 x 10 s).
BROKER_UNACKED_RESTORE_INTERVAL = env_float("BROKER_UNACKED_RESTORE_INTERVAL", 10.0)
BROKER_UNACKED_RESTORE_THROTTLE = env_int("BROKER_UNACKED_RESTORE_THROTTLE", 10)

# --- The broker (RabbitMQ, with CELERY_BROKER_URL=amqp://...) --------------------------------------
# The agents' queues are quorum queues; a message returned to one more than this many times (its worker died with it
# each time, or rejected it) is dead-lettered by RabbitMQ into our dead letters: the broker's cap on poison messages,
# beside STEP_MAX_LOST (which counts lost tries per step in the database and usually stops a poison message first).
# Changing it on an existing vhost needs the queues deleted first (RabbitMQ refuses other arguments for a queue).
BROKER_DELIVERY_LIMIT = env_int("BROKER_DELIVERY_LIMIT", 5)

# --- Agent retries -----------------------------------------------------------------------------
# Backoff before retry n (1-based): min(cap, base * 2**(n-1)), with jitter between half and the whole delay.
AGENT_RETRY_BACKOFF_SECONDS = env_float("AGENT_RETRY_BACKOFF_SECONDS", 1.0)
AGENT_RETRY_BACKOFF_MAX_SECONDS = env_float("AGENT_RETRY_BACKOFF_MAX_SECONDS", 30.0)
# When the supervisor sends a step again (a retry that is due, a try lost with its worker), it sends it once more if
# nobody has taken the step this long after. Shorter: a message lost twice resumes sooner; a busy queue that delays
# the first past it makes a second delivery (harmless: the step is claimed once).
RETRY_GRACE_SECONDS = env_float("RETRY_GRACE_SECONDS", 5.0)
# A step whose tries died with their worker process more than this many times is poison (it takes its worker down
# every time): it is given up and dead-lettered with the evidence instead of killing workers forever. Higher:
# more crashes before a person looks; lower: two unlucky kills in a row could give up a healthy step.
STEP_MAX_LOST = env_int("STEP_MAX_LOST", 2)

# A read-only atomic agent's step (retrieval, account: `Agent.writes_database` False) is claimed, guarded and recorded
# by one statement when nothing is unusual, instead of a six-statement transaction (orchestration/fast_steps.py,
# docs/performance.md). PostgreSQL only. Off: every atomic agent takes the locked path (to compare, or to rule it out).
STEP_FAST_PATH = env_bool("STEP_FAST_PATH", True)

# While the database cannot be reached, an agent task waits for it this long (claiming its step, recording its
# result) before giving up the delivery; the supervisor resumes the run later. Longer: a database restart costs no
# redelivery; a worker slot is held meanwhile (nothing could run anyway).
DATABASE_WAIT_SECONDS = env_float("DATABASE_WAIT_SECONDS", 30.0)

# PostgreSQL ends a session that stays idle inside a transaction this long, releasing its row locks: a host that
# vanished mid-transaction (a partition) would otherwise hold a run's lock until TCP gives up (hours). Our
# transactions last milliseconds; shorter frees locks sooner, too short would cut a slow but live transaction.
DATABASE_IDLE_IN_TRANSACTION_SECONDS = env_float("DATABASE_IDLE_IN_TRANSACTION_SECONDS", 60.0)

# --- Worker liveness (orchestration/liveness.py) -----------------------------------------------------
# Every worker writes its row (the runs it holds, its pool's process ids) this often: one small UPDATE per worker.
WORKER_BEAT_SECONDS = env_float("WORKER_BEAT_SECONDS", 1.0)
# A worker whose row is older than this is dead, and the supervisor takes its work over. Shorter: faster recovery;
# too short and a worker stalled by load (or a database blip) is taken for dead: its work is done twice over
# (harmless, every step is claimed once) and costs more.
WORKER_DEAD_SECONDS = env_float("WORKER_DEAD_SECONDS", 5.0)

# --- The supervisor (orchestration/supervisor.py) --------------------------------------------------
# `manage.py supervise` (the Procfile's `supervisor`) ticks this often: dead workers, expired leases, overdue
# retries, run deadlines, a broker that lost its data, stalled runs. Each tick is a few indexed queries.
SUPERVISOR_TICK_SECONDS = env_float("SUPERVISOR_TICK_SECONDS", 1.0)
# Beat runs the sweep this often: review deadlines, and one tick in case no supervisor process runs.
SUPERVISOR_SWEEP_SECONDS = env_float("SUPERVISOR_SWEEP_SECONDS", 30.0)
# An active run with no step under way, none waiting to retry and no progress for this long is re-dispatched (its
# message was lost outside any worker: a web process killed after its commit, a message lost by the broker). While
# messages wait in the agents' queues a run may simply be waiting its turn: then SUPERVISOR_STALL_BUSY_SECONDS.
SUPERVISOR_STALL_SECONDS = env_float("SUPERVISOR_STALL_SECONDS", 10.0)
SUPERVISOR_STALL_BUSY_SECONDS = env_float("SUPERVISOR_STALL_BUSY_SECONDS", 60.0)
