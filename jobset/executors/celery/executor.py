"""The Celery executor: sub-jobs published to Redis, run by Celery workers anywhere.

The producer sends by task name (:mod:`.publish`) and never imports the worker
code; what it reads back is :class:`~.run.CeleryRun`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from celery import Celery
from kombu.connection import ConnectionPool, PooledConnection
from kombu.pools import ProducerPool

from ... import protocol
from ...cost import WorkerCapacity
from ...observe import tracing
from ...plan import Plan, SubBatch
from ...protocol import (
    OWNER_QUEUES_KEY,
    OWNER_SEP,
    WORKERS_INDEX_KEY,
    Dispatch,
    Kind,
    owner_queue,
    task_id,
    worker_key,
    worker_keys_pattern,
    worker_names,
)
from ...settings import Settings, redact_url
from .. import admission
from ..admission import PlanCosts
from ..aer import portable_backend
from ..base import Executor, SetRequest, StoredSet, SubmitOptions
from ..stored import make_record
from . import cleanup, health, registry
from .boundary import maps_errors
from .clients import Clients
from .cluster_env import DEFAULT_CLUSTER_DIR, cluster_settings
from .config import producer_config
from .connect import execute_replicated, redis_client, window_retry
from .publish import BulkPublisher, publish_chunk, queue_for
from .run import CeleryRun
from .store import SignedStore

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Tries a broker command (a control broadcast: revoke) gets where Celery asks kombu for
# none: kombu's own default retries until the broker is back, however long that takes.
_BROKER_RETRIES = 1
# Heartbeat records read per MGET.
HEARTBEAT_READ_BATCH = 500


class CeleryExecutor(Executor):
    """Runs sub-jobs on Celery workers through Redis.

    ``CeleryExecutor()`` builds its settings from the ``JOBSET_*`` variables, once;
    keyword arguments override them, or pass a :class:`Settings`.  The executor sends by
    task name and never imports the worker code.

    Its methods raise the errors of :mod:`jobset.errors` only (Redis's, kombu's and
    Celery's are mapped at this boundary: :mod:`.boundary`).  A Redis that is gone or
    does not answer fails a call within ``3 x JOBSET_CONNECT_TIMEOUT_S`` s
    (:func:`~.connect.call_bound_s`): each try gives up after the timeout and tries are
    retried for twice the timeout, which rides out a restart or a failover.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        broker_url: str | None = None,
        result_backend: str | None = None,
        secret_key: str | bytes | None = None,
    ) -> None:
        if settings is None:
            settings = Settings.from_env(
                broker_url=broker_url, result_backend=result_backend, secret_key=secret_key
            )
        self.settings = settings
        self.app = Celery("jobset-producer", set_as_current=False)
        self.app.config_from_object(producer_config(settings))
        _private_broker_pools(self.app)
        # Retries ride out a broker that restarts or fails over; a server that is gone or
        # frozen fails each call within 3 x the connect timeout (connect.call_bound_s).
        self.redis = redis_client(
            settings.backend_url,
            settings,
            retry=window_retry(settings),
            socket_timeout=settings.connect_timeout_s,
            health_check_interval=30,
        )
        # The queues live on the broker, which may be another server than the results.
        self.broker = (
            self.redis
            if settings.broker_url == settings.backend_url
            else redis_client(
                settings.broker_url,
                settings,
                retry=window_retry(settings),
                socket_timeout=settings.connect_timeout_s,
            )
        )
        self.store = SignedStore(self.redis, settings)
        self.clients = Clients(self.app, self.redis, self.broker, self.store, settings)
        self._eviction_checked = False

    def __repr__(self) -> str:
        return f"CeleryExecutor(broker_url={redact_url(self.settings.broker_url)!r})"

    @maps_errors
    def heartbeats(self) -> list[dict[str, Any]]:
        """The records live workers keep under ``jobset:worker:*``; unreadable ones skipped.

        The workers' index names them (one read, then one MGET per 500), so the cost
        follows the number of workers, not the keyspace; workers that keep no index (an
        older release) are found by a SCAN, as before."""
        # Redis keeps no empty sorted set: no member means no index.
        indexed = self.redis.zrange(WORKERS_INDEX_KEY, 0, -1)
        if indexed:
            keys = [worker_key(name) for name in worker_names(indexed)]
        else:
            keys = list(self.redis.scan_iter(match=worker_keys_pattern(), count=500))
        found = []
        for start in range(0, len(keys), HEARTBEAT_READ_BATCH):
            for raw in self.redis.mget(keys[start : start + HEARTBEAT_READ_BATCH]):
                try:
                    record = json.loads(raw) if raw else None
                except ValueError:
                    continue
                if isinstance(record, dict):
                    found.append(record)
        return found

    @maps_errors
    def slots(self) -> int:
        """Worker processes able to take a sub-job now, from the workers' heartbeats."""
        return sum(w.concurrency for w in self.workers())

    # ---- admission and routing: what the live workers advertise (see jobset.executors.admission)
    @maps_errors
    def workers(self) -> list[WorkerCapacity]:
        """The capacity every live worker advertises in its heartbeat.

        Anyone who can write to Redis can write a heartbeat: one with a field of the wrong
        type is skipped, so it cannot make every submit fail.
        """
        found = []
        for record in self.heartbeats():
            try:
                found.append(WorkerCapacity.from_record(record))
            except (ValueError, TypeError, OverflowError):
                logger.debug("skipped an unreadable worker heartbeat: %.200r", record)
        return found

    # ---- end of admission and routing

    def check_reachable(self) -> None:
        """Raise :class:`~jobset.errors.BrokerUnavailableError` within the connect timeout
        if the broker or the result backend does not answer; warn once (an
        :class:`~jobset.errors.EvictionPolicyWarning`) if Redis may evict keys."""
        health.check_reachable(self.settings)
        if not self._eviction_checked:
            self._eviction_checked = True
            health.warn_if_evicting(self.redis, self.settings.backend_url)

    # ---- the rest of the executor interface (jobset.executors.base.Executor): every option works
    def max_memory_mb(self) -> int | None:
        return self.settings.max_memory_mb

    @maps_errors
    def version_skew(self) -> str | None:
        """Why no live worker would run this producer's sub-jobs; None if one would."""
        return health.version_skew(self.heartbeats())

    @maps_errors
    def memory_shortfall(self, backend: Any, costs: PlanCosts) -> str | None:
        """Why no live worker could hold the set's largest circuit (as ``admit`` would
        refuse it); None when one could or no worker advertises memory."""
        short = admission.shortfall(costs.circuits, self.workers(), queue=queue_for(backend))
        return None if short is None else short.message()

    @maps_errors
    def submit(self, request: SetRequest) -> CeleryRun:
        """Store the set's record, payloads and ``request.records`` (signed), then publish
        one task per sub-batch to the queue admission and routing chose."""
        dispatch = self.dispatch(request.backend, request.plan, request.options, request.costs)
        return self.publish(request, dispatch)

    @maps_errors
    def dispatch(
        self, backend: Any, plan: Plan, options: SubmitOptions, costs: PlanCosts | None
    ) -> Dispatch:
        """Which queue each sub-job goes to, at what priority (:mod:`jobset.executors.admission`).

        With ``options.admit`` a set no live worker could hold raises
        :class:`~jobset.errors.AdmissionError`; with ``costs``, sub-jobs with a large state
        go to the large queue where a live worker consumes it; ``options.owner`` picks
        that owner's queue of the class.
        """
        queue = queue_for(backend)
        routes: dict[int, str] = {}
        if costs is not None:
            workers = self.workers()
            if options.admit is not None:
                admission.admit(costs.circuits, workers, mode=options.admit, queue=queue)
            routes = admission.routes(
                plan,
                costs.circuit_of_experiment,
                costs.circuits,
                workers,
                default_queue=queue,
                large_memory_bytes=self.settings.large_memory_mb * 1024 * 1024,
                owner=options.owner,
            )
        return Dispatch.from_routes(
            routes, queue=owner_queue(queue, options.owner), priority=options.priority
        )

    @maps_errors
    def publish(self, request: SetRequest, dispatch: Dispatch) -> CeleryRun:
        """Store, then publish, a planned set on the queues ``dispatch`` names.

        Each sub-batch is encoded and published in turn, so workers start on the first
        while the producer still encodes the rest.  Owner queues are recorded for workers
        to consume.  With ``cache_ttl_s`` each signed batch asks the worker to reuse (or
        store) its result under the digest of its inputs.
        """
        jobset_id, plan, options = request.jobset_id, request.plan, request.options
        ttl, store = self.settings.result_ttl_s, self.store
        ids = tuple(task_id(jobset_id, b.index) for b in plan.sub_batches)
        pipe = self.redis.pipeline(transaction=False)
        for kind, value in request.records:
            store.put(kind, jobset_id, value, pipe=pipe)
        store.put(Kind.BACKEND, jobset_id, portable_backend(request.backend), pipe=pipe)
        record = make_record(
            jobset_id,
            request.backend,
            plan,
            ids,
            options.tags,
            timeout_s=options.timeout_s,
            dispatch=dispatch,
            work=None if request.costs is None else request.costs.total_work(),
        )
        registry.write(store, pipe, record)
        if request.trace_parent is not None:  # workers and retrieved sets join this trace
            key = protocol.trace_key(jobset_id)
            pipe.set(key, tracing.carrier(request.trace_parent, time.time()), ex=ttl)
        owned = {q for q in dispatch.queues if OWNER_SEP in q}
        if owned:
            pipe.zadd(OWNER_QUEUES_KEY, dict.fromkeys(owned, time.time()))
            pipe.expire(OWNER_QUEUES_KEY, ttl)
        execute_replicated(pipe, self.settings)

        cache_ttl_s = options.cache_ttl_s or 0
        with self.app.producer_or_acquire() as producer:
            publisher = BulkPublisher(self.app, producer, timeout_s=options.timeout_s)
            for chunk in growing_chunks(plan.sub_batches):

                def payloads(pipe: Any, chunk: Sequence[SubBatch] = chunk) -> None:
                    for batch in chunk:
                        ref = (jobset_id, batch.index)
                        store.put(Kind.BATCH, ref, batch, pipe=pipe, cache_ttl_s=cache_ttl_s)

                # Payloads, messages and their task-sent events: one round trip per chunk; a
                # payload that outlives a failover can be published again by anyone.
                sub_jobs = [(b.index, len(b.experiments)) for b in chunk]
                with tracing.span("jobset.encode_publish", sub_jobs=len(chunk)):
                    publish_chunk(
                        publisher,
                        self.redis,
                        self.broker,
                        jobset_id,
                        sub_jobs,
                        dispatch=dispatch,
                        ttl_s=ttl,
                        writes=payloads,
                        execute=lambda pipe: execute_replicated(pipe, self.settings),
                    )
        return CeleryRun(
            self.clients, jobset_id, ids, timeout_s=options.timeout_s, dispatch=dispatch
        )

    @classmethod
    def from_cluster(
        cls, directory: str | os.PathLike[str] = DEFAULT_CLUSTER_DIR
    ) -> CeleryExecutor:
        """An executor for the local cluster that ``scripts/cluster`` runs in ``directory``.

        Reads the cluster's ``jobset.env`` (nothing from the environment), so a notebook
        cell connects in one line.  Raises :class:`~jobset.errors.ConfigurationError` when
        no cluster runs there.
        """
        return cls(cluster_settings(directory))

    # ---- stored sets
    @maps_errors
    def stored_set(self, job_id: str) -> StoredSet:
        record = registry.load(self.store, job_id)
        backend = self.store.get(Kind.BACKEND, job_id)
        run = CeleryRun(
            self.clients,
            job_id,
            record.task_ids,
            timeout_s=record.timeout_s,
            dispatch=record.dispatch,
        )
        return StoredSet(record, backend, run)

    @maps_errors
    def stored_ids(self) -> list[str]:
        return registry.list_ids(self.redis)

    @maps_errors
    def discard(self, job_id: str) -> int:
        """Remove every key of set ``job_id`` without verifying its record, and its queued
        messages; how many keys went.  For what ``AerJobSet.delete`` refuses: a record
        written by another deployment's key, or altered.  Nothing is cancelled first."""
        return cleanup.discard(
            self.redis, self.broker, job_id, meta_key_of=self.app.backend.get_key_for_task
        )

    @maps_errors
    def prune(self, *, dry_run: bool = False) -> list[cleanup.Removed]:
        """Drop the sets whose record fails verification with this key, and index entries
        that expired or are not set ids; returns what was (``dry_run``: would be) removed."""
        return cleanup.prune(
            self.store, self.broker, meta_key_of=self.app.backend.get_key_for_task, dry_run=dry_run
        )

    @maps_errors
    def find(self, kind: Kind, ref: Any) -> Any:
        return self.store.find(kind, ref)

    def close(self) -> None:
        """Release this producer's connections to Redis; see :meth:`shutdown`."""
        self.redis.close()
        if self.broker is not self.redis:
            self.broker.close()
        # Celery's own close() only forgets its broker pool: close what it holds (it is this
        # executor's own, see _private_broker_pools), and the result backend's connections.
        self.app.amqp.producer_pool.force_close_all()
        self.app.pool.force_close_all()
        client = getattr(self.app.backend, "client", None)
        if client is not None:
            client.connection_pool.disconnect()
        self.app.close()
        # Fresh pools open nothing until used: like the Redis clients above, an executor
        # used again after close() connects again.
        _private_broker_pools(self.app)

    def shutdown(self, wait: bool = True) -> None:
        """``concurrent.futures.Executor.shutdown``: release this producer's connections.

        It does not touch the workers, nor the sets already submitted: their sub-jobs run
        on, and their results stay in Redis for ``AerJobSet.retrieve`` from any executor
        with the same settings.  ``wait`` is accepted for ``concurrent.futures`` code and
        changes nothing (there is nothing local to wait for).  Safe to call more than once;
        unlike a pool, an executor used again afterwards opens new connections.
        """
        del wait
        self.close()

    def __enter__(self) -> CeleryExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _BoundedConnection(PooledConnection):
    """A pooled broker connection whose retries end where the caller sets no bound.

    Celery's control broadcasts (``revoke``) publish with kombu's ``retry=True`` and no
    policy, which retries until the broker is back: a cancel would hang on a broker that
    is gone.  Here such a publish is tried again :data:`_BROKER_RETRIES` time(s), each
    try bounded by the socket timeouts (:func:`~.config.producer_config`).
    """

    def ensure(
        self,
        obj: Any,
        fun: Any,
        errback: Any = None,
        max_retries: Any = None,
        interval_start: Any = 1,
        interval_step: Any = 1,
        interval_max: Any = 1,
        on_revive: Any = None,
        retry_errors: Any = None,
    ) -> Any:
        return super().ensure(
            obj,
            fun,
            errback,
            _BROKER_RETRIES if max_retries is None else max_retries,
            interval_start,
            interval_step,
            interval_max,
            on_revive,
            retry_errors,
        )


class _BoundedPool(ConnectionPool):
    """kombu's connection pool, of :class:`_BoundedConnection`."""

    def new(self) -> _BoundedConnection:
        return _BoundedConnection(self, **dict(self.connection._info(resolve=False)))


def _private_broker_pools(app: Celery) -> None:
    """Give ``app`` broker connection and producer pools of its own.

    Celery takes them from kombu's process-wide registry, shared by every app with the
    same broker URL: closing them in :meth:`CeleryExecutor.close` would cut the
    connections of every other executor of the process.  Their connections bound the
    retries kombu would otherwise make for ever (:class:`_BoundedConnection`).
    """
    pool = _BoundedPool(app.connection_for_write(), limit=app.conf.broker_pool_limit)
    app._pool = pool
    app.amqp._producer_pool = ProducerPool(pool, limit=pool.limit)


def growing_chunks(items: Sequence[T], *, first: int = 1, most: int = 256) -> Iterator[Sequence[T]]:
    """``items`` in consecutive chunks of 1, 2, 4, ... up to ``most``.

    Publishing a chunk costs two round trips (payloads, then messages) whatever its size:
    the first sub-jobs reach the workers at once, and a set of thousands is published in
    a few dozen round trips.
    """
    start, size = 0, first
    while start < len(items):
        yield items[start : start + size]
        start, size = start + size, min(size * 2, most)
