"""Celery configuration: broker, topology, serialization and worker defaults.

Celery settings live here only, never in Django settings. docs/architecture.md draws the
topology: a planning queue, one queue per lane and channel, and a dead-letter queue.
"""

from pathlib import Path

import environ
from kombu import Exchange, Queue

# The celery command imports this module before Django settings load, so read .env here
# too: the broker must be the same one the web process publishes to.
env = environ.Env()
_DOTENV = Path(__file__).resolve().parent / ".env"
if _DOTENV.exists():
    environ.Env.read_env(_DOTENV, overwrite=False)

broker_url = env.str("CELERY_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//")
broker_connection_retry_on_startup = True
# Without confirms a publish can be dropped silently when the broker is under resource
# pressure (celery#5410); quorum queues require them.
broker_transport_options = {"confirm_publish": True}

task_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
timezone = "UTC"
enable_utc = True

# Tasks re-read their rows and are idempotent, so a message may be redelivered safely:
# ack only after the task has run, and requeue when the worker process dies.
task_acks_late = True
task_reject_on_worker_lost = True
# A task that raises is rejected, not acked, so its message dead-letters to notify.dead
# (where it can be inspected and replayed) instead of vanishing.
task_acks_on_failure = False
# Provider calls are slow and uneven; prefetching more than one message would let a slow
# task hold messages another worker could be sending.
worker_prefetch_multiplier = 1
# A task that hangs (a lock never released, a call without a timeout) has its pool process
# killed after this many seconds; its message is requeued (reject on worker lost), and one that
# hangs every time dead-letters at the queue's delivery limit, as any crash loop does. Far
# above any honest task: a delivery batch is bounded by its provider calls' timeouts.
task_time_limit = env.int("CELERY_TASK_TIME_LIMIT", default=300)
task_acks_on_timeout = False  # Celery's default acks it: the message would be gone
# Undecodable messages dead-letter instead of being acked away (see notifier/consumer.py).
worker_consumer = "notifier.consumer:Consumer"

# Topic exchanges: Celery's native delayed delivery does not work with direct exchanges.
NOTIFY_EXCHANGE = Exchange("notify", type="topic", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("notify.dlx", type="topic", durable=True)


def quorum_queue(name: str) -> Queue:
    """A work queue: replicated, bounded redelivery, dead letters kept until confirmed.

    RabbitMQ 3.x has no default delivery limit, so a message that crashes its worker would
    loop forever; at-least-once dead-lettering requires ``reject-publish`` overflow.
    """
    return Queue(
        name,
        NOTIFY_EXCHANGE,
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": 5,
        },
    )


PLANNING_QUEUE = "notify.planning"
# Critical notifications are planned apart too: a campaign being expanded on notify.planning
# must not hold up a one-time password.
CRITICAL_PLANNING_QUEUE = "notify.critical.planning"
# Lanes isolate urgency: each has its own queues and worker pool, so a bulk backlog never
# sits in front of a critical message (SPEC guarantee 4). One queue per lane and channel
# keeps a slow provider of one channel from holding up the others.
LANES = ("critical", "transactional", "bulk")
CHANNELS = ("push", "email", "sms")


def delivery_queue_name(lane: str, channel: str) -> str:
    return f"notify.{lane}.{channel}"


task_queues = (
    quorum_queue(PLANNING_QUEUE),
    quorum_queue(CRITICAL_PLANNING_QUEUE),
    *(quorum_queue(delivery_queue_name(lane, ch)) for lane in LANES for ch in CHANNELS),
)
task_routes = ("notifier.notifications.routing.route_task",)
# Dead letters are declared apart from task_queues: Celery binds every queue in task_queues
# to its delayed-delivery exchange at start, which fails for a queue on the DLX.
dead_letter_queues = (
    Queue(
        "notify.dead",
        DEAD_LETTER_EXCHANGE,
        routing_key="#",
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    ),
)

# A worker started on a queue name that is not declared here fails at once, instead of
# creating a classic queue that would clash with the quorum declaration later.
task_create_missing_queues = False
task_default_queue = PLANNING_QUEUE
task_default_exchange = NOTIFY_EXCHANGE.name
task_default_exchange_type = "topic"
task_default_routing_key = PLANNING_QUEUE

beat_scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
# Beat only ticks; the work and its schedule state live in PostgreSQL. Each entry expires
# after its interval, so a backlog of ticks never piles up behind a stopped worker.
beat_schedule = {
    "relay-outbox": {"task": "notify.outbox.relay", "schedule": 2.0, "options": {"expires": 2}},
    "release-due-deliveries": {
        "task": "notify.schedule.release_due",
        "schedule": 5.0,
        "options": {"expires": 5},
    },
    "recover-expired-leases": {
        "task": "notify.maintenance.recover_leases",
        "schedule": 10.0,
        "options": {"expires": 10},
    },
    "purge-idempotency-records": {
        "task": "notify.maintenance.purge_idempotency_records",
        "schedule": 3600.0,
        "options": {"expires": 3600},
    },
    "purge-outbox": {
        "task": "notify.maintenance.purge_outbox",
        "schedule": 3600.0,
        "options": {"expires": 3600},
    },
}
