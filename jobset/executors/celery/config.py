"""The Celery configuration both sides must agree on, built from :class:`Settings`."""

from __future__ import annotations

from typing import Any

from ... import urls
from ...protocol import DEFAULT_QUEUE
from ...settings import TASK_EVENTS_OFF, Settings
from .connect import celery_sentinel_options, celery_ssl_options, retry_window_s


def celery_config(settings: Settings) -> dict[str, Any]:
    """Serializers, queues and reliability settings shared by producers and workers.

    JSON only: no pickle content type is accepted from the queue; payloads travel as
    signed envelopes in Redis (:mod:`jobset.codec`).  Acks late with reject-on-worker-lost
    and prefetch 1 so a killed worker's sub-job is delivered again.  Live workers renew
    the lease of what they hold (``workers.lifecycle``), so the visibility timeout only
    bounds how long a dead worker's sub-job waits; kombu's sweep for such sub-jobs runs
    every :func:`restore_interval_s` (its default, 10 s x a throttle of 10, would add
    100 s).  Connecting and publishing give up after bounded tries, so an unreachable
    broker is an error within seconds, not a hang.  Sentinel URLs get the master name,
    the sentinels' password and TLS (:mod:`.connect`) on both sides.
    """
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        "unacked_restore_interval": restore_interval_s(settings.visibility_timeout_s),
        "unacked_restore_throttle": 1,
        # The sweep's lock; a worker killed while holding it would stall sweeps this long.
        "unacked_mutex_expire": 60,
        "socket_connect_timeout": settings.connect_timeout_s,
        **celery_sentinel_options(settings.broker_url, settings),
    }
    backend_transport = {
        "retry_policy": {"timeout": 5.0},
        **celery_sentinel_options(settings.backend_url, settings),
    }
    tls = {
        name: options
        for name, options in (
            ("broker_use_ssl", celery_ssl_options(settings.broker_url)),
            ("redis_backend_use_ssl", celery_ssl_options(settings.backend_url)),
        )
        if options is not None
    }
    return {
        "broker_url": urls.celery_url(settings.broker_url),
        "result_backend": urls.celery_url(settings.backend_url),
        **tls,
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
        "result_backend_transport_options": backend_transport,
        # A worker's record of a finished sub-job rides out a Redis that restarts or fails
        # over (about 30 s of growing pauses): without it the sub-job would end in ERROR
        # with the connection error, though its result is stored.
        "result_backend_always_retry": True,
        # Celery's default waits 120 s on a server that stopped answering (a partition).
        "redis_socket_timeout": max(10, 2 * settings.connect_timeout_s),
        "redis_socket_connect_timeout": settings.connect_timeout_s,
        "result_backend_max_retries": 12,
        "result_backend_base_sleep_between_retries_ms": 100,
        "result_backend_max_sleep_between_retries_ms": 4000,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.connect_timeout_s,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        # Task events for Flower, sent as JOBSET_TASK_EVENTS says (workers.events).
        "worker_send_task_events": settings.task_events != TASK_EVENTS_OFF,
        "task_send_sent_event": True,
    }


def restore_interval_s(visibility_timeout_s: int) -> int:
    """Seconds between sweeps for expired leases: a quarter of the timeout, 1 to 10 s."""
    return max(1, min(10, visibility_timeout_s // 4))


def producer_config(settings: Settings) -> dict[str, Any]:
    """:func:`celery_config` with a producer's bounds: no call of the producer's Celery app
    waits on a Redis that is gone or frozen for longer than a call of its own clients
    (:func:`~.connect.call_bound_s`).

    Each try gives up after ``connect_timeout_s`` (a reply too, not only a connect: kombu
    and Celery would otherwise wait on a silent server for ever and for 120 s), the result
    backend retries for the same window as the producer's Redis clients, and a producer
    does not keep retrying a store (``result_backend_always_retry`` is for workers, whose
    stores must outlive a failover).
    """
    config = celery_config(settings)
    timeout_s = settings.connect_timeout_s
    config["broker_transport_options"] = {
        **config["broker_transport_options"],
        "socket_timeout": timeout_s,
    }
    config["result_backend_transport_options"] = {
        **config["result_backend_transport_options"],
        "retry_policy": {"timeout": retry_window_s(settings)},
    }
    config["redis_socket_timeout"] = timeout_s
    config["result_backend_always_retry"] = False
    return config
