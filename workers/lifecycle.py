"""Worker start-up and liveness: Aer threads per task, warm-up, heartbeat in Redis.

The heartbeat also renews the lease of every message this worker holds.  kombu's Redis
transport keeps a delivered, unacknowledged message in ``unacked_index`` scored by its
delivery time, and any worker's periodic sweep puts back in the queue what is older than
the visibility timeout.  Renewing the score while the worker lives means a long sub-job is
never delivered twice just for being long, and the visibility timeout can be short: it
only measures how long a dead worker's sub-job waits before it runs elsewhere.  The
renewal runs in the worker's main process, which the prefork pool leaves free while the
children simulate.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import socket
import time
from typing import Any

import redis
from celery import bootsteps
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import celeryd_after_setup, worker_process_init
from celery.worker import state as worker_state

from jobset.executors.celery.connect import redis_client
from jobset.executors.machine import available_cores, machine_memory_bytes
from jobset.executors.versions import runtime_versions
from jobset.protocol import (
    DEFAULT_QUEUE,
    OWNER_QUEUES_KEY,
    OWNER_QUEUES_POLL_S,
    UNACKED_INDEX_KEY,
    WORKER_HEARTBEAT_S,
    WORKER_INDEX_KEEP_S,
    WORKER_TTL_S,
    WORKERS_INDEX_KEY,
    base_queue,
    is_owner_queue,
    worker_key,
)
from jobset.settings import ENV_VISIBILITY_TIMEOUT_S

from .control import KombuScripts

logger = logging.getLogger(__name__)


class _Runtime:
    """What a pool child needs to know about its worker; set in the parent before fork."""

    concurrency = 1
    aer_threads = 1
    versions = runtime_versions()


runtime = _Runtime()


# Whether Aer sees a GPU: 1 or 0 once the first pool child looked, -1 until then.  Shared
# memory made before the fork, because only a child may load Aer's devices (the prefork
# parent must not simulate) while the parent writes the heartbeat.
_gpu_seen = multiprocessing.RawValue("b", -1)


def gpu_seen() -> bool | None:
    flag = int(_gpu_seen.value)
    return None if flag < 0 else flag > 0


def aer_threads_for(concurrency: int, configured: int | None) -> int:
    """OpenMP threads per task so that concurrency x threads never exceeds the cores."""
    if configured is not None:
        return configured
    return max(1, available_cores() // max(1, concurrency))


@celeryd_after_setup.connect
def _record_concurrency(sender: str, instance: Any, conf: Any, **kwargs: Any) -> None:
    runtime.concurrency = int(instance.concurrency or 1)
    runtime.aer_threads = aer_threads_for(runtime.concurrency, conf.jobset_settings.aer_threads)
    os.environ["OMP_NUM_THREADS"] = str(runtime.aer_threads)
    logger.info(
        "jobset worker %s: concurrency %d, %d Aer thread(s) per task, %d core(s)",
        sender,
        runtime.concurrency,
        runtime.aer_threads,
        available_cores(),
    )


@worker_process_init.connect
def _warm_up(**kwargs: Any) -> None:
    """Load Aer and run one tiny circuit in the child, so the first sub-job pays no start-up."""
    from qiskit import QuantumCircuit
    from qiskit_aer import AerSimulator

    circuit = QuantumCircuit(1, 1)
    circuit.h(0)
    circuit.measure(0, 0)
    AerSimulator().run(circuit, shots=1, max_parallel_threads=1).result()
    if _gpu_seen.value < 0:  # the first child looks for the whole worker
        try:
            _gpu_seen.value = 1 if "GPU" in AerSimulator().available_devices() else 0
        except Exception:  # the heartbeat then says "gpu": null; the worker still serves
            logger.warning("could not list Aer's devices", exc_info=True)


class Heartbeat(bootsteps.StartStopStep):
    """Advertise this worker's capacity in Redis; the key expires when the worker dies.

    It starts after kombu's scripts are loaded, so a worker that is seen is one that a
    client without SCRIPT LOAD (Flower's user) can ask for its state.
    """

    requires = {"celery.worker.components:Timer", KombuScripts}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None
        self.lease_tref: Any = None
        self.broker: redis.Redis | None = None

    def start(self, worker: Any) -> None:
        self._beat(worker)
        self.tref = worker.timer.call_repeatedly(WORKER_HEARTBEAT_S, self._beat, (worker,))
        settings = worker.app.conf.jobset_settings
        self.broker = redis_client(
            settings.broker_url, settings, socket_timeout=settings.connect_timeout_s
        )
        self.lease_tref = worker.timer.call_repeatedly(
            lease_renewal_s(settings.visibility_timeout_s), self._renew_leases
        )
        caveat = renewal_caveat(worker.pool_cls, settings.visibility_timeout_s)
        if caveat is not None:
            logger.warning(caveat)

    def stop(self, worker: Any) -> None:
        for tref in (self.tref, self.lease_tref):
            if tref is not None:
                tref.cancel()
        if self.broker is not None:
            self.broker.close()
        try:
            pipe = worker.app.backend.client.pipeline(transaction=False)
            pipe.delete(worker_key(worker.hostname))
            pipe.zrem(WORKERS_INDEX_KEY, worker.hostname)
            pipe.execute()
        except Exception:  # the broker may already be gone at shutdown
            logger.debug("could not remove heartbeat key", exc_info=True)

    def _beat(self, worker: Any) -> None:
        queues = [q.name for q in worker.app.amqp.queues.consume_from.values()] or [DEFAULT_QUEUE]
        record = {
            "hostname": worker.hostname,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": runtime.concurrency,
            "aer_threads": runtime.aer_threads,
            "cores": available_cores(),
            "queues": queues,
            "versions": runtime.versions,
            "memory_bytes": worker_memory_bytes(worker.app.conf.jobset_settings.worker_memory_mb),
            "gpu": gpu_seen(),
            # Sub-jobs running now: `jobset scale` drains only workers idle for a while.
            "active": len(worker_state.active_requests),
        }
        now = time.time()
        try:
            pipe = worker.app.backend.client.pipeline(transaction=False)
            pipe.set(worker_key(worker.hostname), json.dumps(record), ex=WORKER_TTL_S)
            pipe.zadd(WORKERS_INDEX_KEY, {worker.hostname: now})
            pipe.zremrangebyscore(WORKERS_INDEX_KEY, "-inf", now - WORKER_INDEX_KEEP_S)
            pipe.expire(WORKERS_INDEX_KEY, WORKER_INDEX_KEEP_S)
            pipe.execute()
        except Exception:
            logger.warning("heartbeat to Redis failed; will retry", exc_info=True)

    def _renew_leases(self) -> None:
        # Reserved, running, and waiting for a retry's countdown: all unacknowledged.
        held = {
            *worker_state.reserved_requests,
            *worker_state.active_requests,
            *worker_state.scheduled_requests,
        }
        tags = {r.message.delivery_tag for r in held if r.message is not None}
        if not tags or self.broker is None:
            return
        now = time.time()
        try:
            # XX: only renew; a tag acknowledged meanwhile must not come back.
            self.broker.zadd(UNACKED_INDEX_KEY, dict.fromkeys(tags, now), xx=True)
        except redis.RedisError:
            logger.warning("renewing the lease of %d sub-job(s) failed", len(tags), exc_info=True)


def worker_memory_bytes(configured_mb: int | None) -> int | None:
    """The memory a worker offers one sub-job: configured, else the machine's (or cgroup's)."""
    if configured_mb is not None:
        return configured_mb * 1024 * 1024
    return machine_memory_bytes()


class OwnerQueues(bootsteps.StartStopStep):
    """Consume every owner queue of the size-class queues this worker serves.

    Producers record per-owner queues in ``jobset:owner-queues``; every
    ``OWNER_QUEUES_POLL_S`` this step adds a consumer for the new ones (what
    ``celery control add_consumer`` does).  kombu's Redis transport then rotates over the
    queues after each message, so owners with queued sub-jobs take turns.
    """

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.tref: Any = None
        self.bases: set[str] = set()

    def start(self, consumer: Any) -> None:
        self.bases = {base_queue(q) for q in consumer.app.amqp.queues.consume_from} or {
            DEFAULT_QUEUE
        }
        self._poll(consumer)
        self.tref = consumer.timer.call_repeatedly(OWNER_QUEUES_POLL_S, self._poll, (consumer,))

    def stop(self, consumer: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def _poll(self, consumer: Any) -> None:
        try:
            names = consumer.app.backend.client.zrange(OWNER_QUEUES_KEY, 0, -1)
        except Exception:
            logger.debug("could not read the owner queues", exc_info=True)
            return
        task_consumer = consumer.task_consumer
        if task_consumer is None:
            return
        for raw in names:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            # Anyone who can write to Redis can add names: consume only real owner queues.
            if is_owner_queue(name, self.bases) and not task_consumer.consuming_from(name):
                logger.info("consuming owner queue %s", name)
                consumer.add_task_queue(name)


def renewal_caveat(pool_cls: Any, visibility_timeout_s: int) -> str | None:
    """Why leases may not be renewed with this pool, or None for the prefork pool.

    Other pools simulate in the worker's own process, where Aer holds the GIL until it
    returns, so the timer that renews leases waits too.
    """
    if isinstance(pool_cls, type) and issubclass(pool_cls, PreforkPool):
        return None
    name = getattr(pool_cls, "__module__", str(pool_cls)).rsplit(".", 1)[-1]
    return (
        f"the {name} pool simulates in the worker's process, which stops lease renewal "
        f"while Aer runs: a sub-job longer than the visibility timeout "
        f"({ENV_VISIBILITY_TIMEOUT_S}={visibility_timeout_s} s) is delivered again; use "
        f"the prefork pool (the default) or a timeout above the longest sub-job"
    )


def lease_renewal_s(visibility_timeout_s: float) -> float:
    """How often a worker renews its leases: three times per visibility timeout, or more."""
    return max(0.5, min(WORKER_HEARTBEAT_S, visibility_timeout_s / 3))
