"""The Celery application: broker, result backend and delivery guarantees.

Delivery is at-least-once (late acks, requeue when a worker dies, prefetch 1);
every agent task is an idempotent receiver, so a redelivered message is harmless.
"""

import os
import threading

from celery import Celery, signals
from celery.app import trace as celery_trace
from django.conf import settings
from django.db import connections
from kombu import Exchange, Queue

from project.celery_backend import backend_url
from project.otel import otel_worker_init
from project.tracing import connect_celery_signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("switchboard")

#: The agents' queues (agents.base.Queue's values).
AGENT_QUEUE_NAMES = ("default", "llm")
#: Where RabbitMQ puts a message delivered BROKER_DELIVERY_LIMIT times (orchestration.broker_dead_letters reads it).
DEAD_LETTER_EXCHANGE = DEAD_LETTER_QUEUE = "switchboard.dead"


def broker_is_amqp(url: str) -> bool:
    """Whether the broker is RabbitMQ (AMQP) rather than Redis."""
    return url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp")


def task_queues() -> tuple[Queue, ...]:
    """The agents' queues. On Redis, plain lists. On RabbitMQ, quorum queues (replicated, durable) with a delivery
    limit as the cap on poison messages: a message returned more than BROKER_DELIVERY_LIMIT times (its worker died
    or rejected it) goes to the dead-letter exchange, at least once, and from there to our dead letters. Topic
    exchanges let Celery's native delayed delivery serve any countdown task (Switchboard sends none: retries wait in
    the database)."""
    if not broker_is_amqp(settings.CELERY_BROKER_URL):
        return tuple(Queue(name) for name in AGENT_QUEUE_NAMES)
    arguments = {
        "x-queue-type": "quorum",
        "x-delivery-limit": settings.BROKER_DELIVERY_LIMIT,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # at-least-once dead-lettering requires it
    }
    return tuple(
        Queue(name, Exchange(name, type="topic"), routing_key=name, queue_arguments=arguments)
        for name in AGENT_QUEUE_NAMES
    )


def dead_letter_queue() -> Queue:
    """The queue RabbitMQ dead-letters into (a quorum queue behind a fanout exchange: every reason lands here)."""
    exchange = Exchange(DEAD_LETTER_EXCHANGE, type="fanout")
    return Queue(DEAD_LETTER_QUEUE, exchange, routing_key="#", queue_arguments={"x-queue-type": "quorum"})


def configure(app: Celery) -> None:
    transport_options = {
        "visibility_timeout": settings.BROKER_VISIBILITY_TIMEOUT,
        "unacked_restore_interval": settings.BROKER_UNACKED_RESTORE_INTERVAL,
        "unacked_restore_throttle": settings.BROKER_UNACKED_RESTORE_THROTTLE,
        # A publish to a Redis that vanished without closing the connection must not hang forever.
        "socket_timeout": 30,
        "socket_connect_timeout": 5,
        "health_check_interval": 25,
        "max_connections": settings.BROKER_REDIS_MAX_CONNECTIONS,
    }
    broker_transport = None
    if broker_is_amqp(settings.CELERY_BROKER_URL):
        # Publisher confirms: a publish returns once RabbitMQ has the message (quorum queues need them).
        transport_options = {"confirm_publish": True}
    elif settings.CELERY_BROKER_URL.startswith("redis"):
        # kombu's Redis transport, surviving a channel closed after its connection (project/broker.py).
        broker_transport = "project.broker:RedisTransport"
    if settings.CELERY_DB_REUSE_MAX:
        # Read by Celery's Django fixup under this (old-style) name.
        app.conf["CELERY_DB_REUSE_MAX"] = settings.CELERY_DB_REUSE_MAX
    app.conf.update(
        broker_url=settings.CELERY_BROKER_URL,
        broker_transport=broker_transport,
        # After a broker connection is lost, Celery can lower the prefetch count to the tasks still running and raise
        # it as they finish; on RabbitMQ a thread-pool worker was seen waiting forever in basic.qos after a broker
        # restart doing so (celery#9512). Prefetch is 1 per slot anyway: nothing to lower.
        worker_enable_prefetch_count_reduction=False,
        result_backend=backend_url(settings.CELERY_RESULT_BACKEND),
        broker_transport_options=transport_options,
        result_backend_transport_options={"visibility_timeout": settings.BROKER_VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=24 * 3600,
        result_extended=settings.CELERY_RESULT_EXTENDED,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_deduplicate_successful_tasks=False,
        task_track_started=settings.CELERY_TASK_EVENTS,
        task_send_sent_event=settings.CELERY_TASK_EVENTS,
        worker_send_task_events=settings.CELERY_TASK_EVENTS,
        task_default_queue="default",
        task_queues=task_queues(),
        task_routes=("orchestration.routing.route_for_task",),
        task_always_eager=settings.CELERY_TASK_ALWAYS_EAGER,
        worker_hijack_root_logger=False,
        timezone="UTC",
        # Beat keeps its schedule in memory, not in a file: nothing to create before it starts (a fresh clone, a
        # read-only container), and a missed 30-second sweep is not worth catching up after a restart.
        beat_scheduler="celery.beat:Scheduler",
        beat_schedule={
            "supervisor-sweep": {
                "task": "supervisor.sweep",
                "schedule": settings.SUPERVISOR_SWEEP_SECONDS,
                "options": {"expires": settings.SUPERVISOR_SWEEP_SECONDS},
            },
        },
    )


configure(app)
app.autodiscover_tasks(["orchestration"])


@signals.task_prerun.connect
def _database_hygiene(**kwargs: object) -> None:
    """What Django does per request: drop a connection that broke or outlived CONN_MAX_AGE."""
    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()


@signals.worker_init.connect
def _thread_stack_size(sender: object = None, **kwargs: object) -> None:
    """A thread pool's threads (started after this, on demand) get WORKER_THREAD_STACK_KB of stack each."""
    pool = getattr(sender, "pool_cls", None)
    if "concurrency.thread" in str(getattr(pool, "__module__", pool)) and settings.WORKER_THREAD_STACK_KB:
        threading.stack_size(settings.WORKER_THREAD_STACK_KB * 1024)


@signals.worker_init.connect
def _otel_worker_init(sender: object = None, **kwargs: object) -> None:
    pool = getattr(sender, "pool_cls", None)
    otel_worker_init(prefork_parent="prefork" in str(getattr(pool, "__module__", pool)))


@signals.worker_process_init.connect
def _otel_worker_process_init(**kwargs: object) -> None:
    otel_worker_init(prefork_parent=False)


# Trace ids in message headers and logs; no task arguments in logs (they hold customer messages).
celery_trace.LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"
connect_celery_signals()
