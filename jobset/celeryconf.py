"""The Celery configuration both sides must agree on, built from :class:`Settings`."""

from __future__ import annotations

from typing import Any

from .protocol import DEFAULT_QUEUE
from .settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """Serializers, queues and reliability settings shared by producers and workers.

    JSON only: no pickle content type is accepted from the queue; payloads travel as
    signed envelopes in Redis (:mod:`jobset.codec`).  Acks late with reject-on-worker-lost
    and prefetch 1 so a killed worker's sub-job is delivered again; the visibility timeout
    must exceed the longest sub-job.
    """
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.backend_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_default_queue": DEFAULT_QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_track_started": True,
        "worker_prefetch_multiplier": 1,
        "result_expires": settings.result_ttl_s,
        "result_extended": False,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        "broker_connection_retry_on_startup": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
    }
