"""Celery configuration, queues and the beat schedule, derived from ``Settings``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kombu import Queue  # type: ignore[attr-defined]

from config.settings import Settings
from config.time_limits import FamilyTimeLimits, family_time_limits

FAMILIES = ("persist", "llm", "maintenance")
# Retries go to a queue of their own per family, so a backlog of retries never starves fresh
# work: a family's workers consume both, and kombu alternates between them.
QUEUES = (*FAMILIES, *(f"{family}.retry" for family in FAMILIES))
# Tasks are named "<family>.<verb>"; the family is the queue.
ROUTES = {f"{family}.*": {"queue": family} for family in FAMILIES}


def family_queues(family: str) -> list[str]:
    """The queues one family's workers consume: fresh work and its retries."""
    return [family, f"{family}.retry"]


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    interval = settings.flush_interval_s
    return {
        "persist-flush": {
            "task": "persist.flush",
            "schedule": interval,
            # A tick nobody picked up soon is worthless: the next one does the same work.
            "options": {"queue": "persist", "expires": max(5.0, interval * 5)},
        },
        # A summary whose llm.summarize publish failed is asked for again within minutes.
        "llm-resend-stale": {
            "task": "llm.resend_stale",
            "schedule": min(60.0, settings.summary_resend_after_s),
            "options": {"queue": "llm", "expires": 60},
        },
        # Memory consolidation: one llm.consolidate_subject per subject with unexamined memories.
        "llm-consolidate": {
            "task": "llm.consolidate",
            "schedule": settings.consolidate_interval_s,
            "options": {"queue": "llm", "expires": settings.consolidate_interval_s},
        },
        # Retention: delete what is past expires_at, in bounded batches (core/retention). A
        # tick still queued when the next is due is dropped; the next run does the same work.
        "maintenance-purge-expired": {
            "task": "maintenance.purge_expired",
            "schedule": settings.purge_interval_s,
            "options": {"queue": "maintenance", "expires": settings.purge_interval_s},
        },
        # Backups (core/backups): one per interval however many beats run (a slot claim in
        # Redis), each under a lease; prune keeps the newest full backups.
        "maintenance-backup": {
            "task": "maintenance.backup",
            "schedule": settings.backup_interval_s,
            "options": {"queue": "maintenance", "expires": settings.backup_interval_s},
        },
        "maintenance-prune-backups": {
            "task": "maintenance.prune_backups",
            "schedule": settings.backup_prune_interval_s,
            "options": {"queue": "maintenance", "expires": settings.backup_prune_interval_s},
        },
        # Summaries deferred by a spent daily token budget are re-enqueued once it resets.
        "llm-resume-deferred": {
            "task": "llm.resume_deferred",
            "schedule": 60.0,
            "options": {"queue": "llm", "expires": 60},
        },
    }


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """Transport options for the configured broker (Redis or RabbitMQ)."""
    if urlsplit(settings.broker_url).scheme in ("amqp", "amqps", "pyamqp"):
        # RabbitMQ tracks unacked deliveries per connection: a lost connection redelivers at
        # once, so there is no visibility timeout. Its consumer_timeout (30 min by default)
        # plays that role and must exceed the longest retry countdown (RETRY_CAP_S).
        return {}
    return {
        # kombu's Redis transport redelivers an unacked task after this long: it must exceed
        # the longest retry countdown or a task still waiting for its retry runs twice.
        "visibility_timeout": settings.visibility_timeout_s,
        # Find a dead broker connection within seconds, not at the next send.
        "health_check_interval": 10,
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings that matter (DESIGN.md section 4)."""
    return {
        "broker_url": settings.broker_url,
        # Reconnect forever instead of exiting after Celery's default 100 attempts, and treat
        # channel errors (a channel closed under the consumer when the broker restarts) as
        # recoverable. These narrow, but do not close, the crash window of kombu's reconnect
        # (celery/kombu#582): `memscribe worker` supervises regardless (worker/supervisor.py).
        "broker_connection_retry": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_channel_error_retry": True,
        # A task running when the connection drops cannot be acked on it any more (acks_late),
        # so the broker redelivers it: cancel it rather than run it twice at once.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_transport_options": broker_transport_options(settings),
        # JSON only: a binary object serializer lets whoever can write to the broker run code
        # in the worker.
        "accept_content": ["json"],
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": 1000,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": max(1, int(settings.task_time_limit_s * 0.9)),
        # Workers per family (config/time_limits.py): each family's own time limits, over the
        # global ones above; and the autoscaler's keepalive from the settings.
        "task_annotations": [FamilyTimeLimits(family_time_limits(settings))],
        "worker_autoscaler": "worker.autoscale:Autoscaler",
        # Flower needs events.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_queues": [Queue(name) for name in QUEUES],  # type: ignore[no-untyped-call]
        "task_default_queue": "persist",
        "task_routes": ROUTES,
        "beat_schedule": beat_schedule(settings),
        # Beat failover (worker/leader.py): the base in-memory scheduler (the default one
        # writes a shelve file, Python's object serializer) behind a Redis leader lock and
        # per-slot claims, so any number of beats send each periodic task once per interval.
        "beat_scheduler": "worker.leader:LeaderScheduler",
        "timezone": "UTC",
        "enable_utc": True,
    }
