"""Where sub-jobs run: the Celery executor, and the adapter for ``concurrent.futures``.

Both hand back a :class:`Submission`, the one interface :class:`~jobset.jobset.AerJobSet`
talks to: states of every sub-job, their results, a wait with a deadline, and cancel.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import redis
from celery import Celery
from kombu.pools import ProducerPool
from qiskit.providers import JobStatus
from qiskit.result import Result
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from . import recovery, registry, tally
from .celeryconf import celery_config
from .cost import WorkerCapacity
from .errors import JobSetTimeoutError, SubJobsLostError, timeout_message
from .execute import portable_backend
from .plan import Plan, SubBatch
from .protocol import (
    DEFAULT_QUEUE,
    OWNER_QUEUES_KEY,
    OWNER_SEP,
    WORKER_KEY_PREFIX,
    Dispatch,
    Kind,
    cancel_key,
    glob_escape,
    sub_job_cancel_key,
    task_id,
)
from .publish import BulkPublisher, publish_chunk, queue_for
from .settings import Settings, redact_url
from .status import FINAL, aggregate_counts, aggregate_status, celery_to_job_status
from .store import SignedStore

logger = logging.getLogger(__name__)
T = TypeVar("T")

_POLL_START_S = 0.01
_POLL_MAX_S = 0.25
# Longest pause between status reads while subscribed: a safety net for a lost notice.
_NOTICE_WAIT_S = 1.0
# A wait that sees no sub-job finish for this long checks whether any were lost, then
# waits twice as long before the next check, up to the maximum.
_LOST_CHECK_START_S = 10.0
_LOST_CHECK_MAX_S = 300.0
# A tally that has not moved for this long is checked against Celery's own states.
_TALLY_FALLBACK_S = 5.0
# Results read per MGET.
_RESULT_CHUNK = 500


class SubJobState(NamedTuple):
    """One sub-job as last seen: its status and, when it failed, the worker's message and
    the name of the error it raised (``"SubJobTimeoutError"``, ...)."""

    status: JobStatus
    message: str = ""
    error_type: str = ""


class Submission(abc.ABC):
    """A set of sub-jobs handed to an executor."""

    task_ids: tuple[str, ...]

    @property
    @abc.abstractmethod
    def cancelled(self) -> bool:
        """True once the whole set was cancelled."""

    @abc.abstractmethod
    def states(self, indices: Sequence[int] | None = None) -> list[SubJobState]:
        """Sub-jobs' states in index order (all, or ``indices``), in one round trip."""

    def finished_at(self) -> float | None:
        """Unix time the last sub-job finished, where the executor records it."""
        return None

    @abc.abstractmethod
    def results(self, indices: Iterable[int]) -> dict[int, Result]:
        """The stored results of those sub-jobs that have one."""

    @abc.abstractmethod
    def cancel(self, indices: Sequence[int] | None = None) -> None:
        """Cancel the whole set (``None``) or the given sub-jobs."""

    def lost(self) -> list[int]:
        """Sub-jobs that will never run: neither queued, nor running, nor finished."""
        return []

    def finished_count(self) -> int | None:
        """How many sub-jobs are final, where that is cheaper than their states (else None)."""
        return None

    def newly_final(self, pending: Collection[int], cursor: Any) -> tuple[list[int], Any]:
        """Those of ``pending`` that are final now, and the ``cursor`` for the next call
        (None the first time); ``as_completed`` polls this.  The base reads every state."""
        indices = list(pending)
        states = self.states(indices)
        return [k for k, s in zip(indices, states, strict=True) if s.status in FINAL], cursor

    def aggregate(self) -> JobStatus:
        """The set's status (the rule of :func:`jobset.status.aggregate_status`)."""
        return aggregate_status((s.status for s in self.states()), cancelled=self.cancelled)

    def progress(self) -> dict[str, int]:
        """How many sub-jobs are in each state, by ``JobStatus`` name."""
        return dict(Counter(s.status.name for s in self.states()))

    @abc.abstractmethod
    def rerun(self, indices: Sequence[int], batches: Sequence[SubBatch], *, backend: Any) -> None:
        """Run sub-jobs ``indices`` again from the start (their old outcome is dropped)."""

    def _watch(self, states: Sequence[SubJobState]) -> None:  # noqa: B027 (a hook)
        """Called on every poll of a wait; may raise instead of waiting forever."""

    @contextlib.contextmanager
    def pauses(self) -> Iterator[Callable[[float | None], None]]:
        """What a wait does between two status reads: sleep, a little longer each time.

        Yields ``pause(remaining)``, which returns within ``remaining`` seconds (None: no
        bound); :meth:`AerJobSet.wait_for_final_state` and ``as_completed`` use it too.
        """
        delay = _POLL_START_S

        def pause(remaining: float | None) -> None:
            nonlocal delay
            time.sleep(max(0.0, delay if remaining is None else min(delay, remaining)))
            delay = min(delay * 1.5, _POLL_MAX_S)

        yield pause

    def wait(self, indices: Sequence[int], deadline: float | None) -> list[SubJobState]:
        """Block until the given sub-jobs are final; raise at ``deadline`` (monotonic)."""
        with self.pauses() as pause:
            while True:
                states = self.states()
                self._watch(states)
                if all(states[i].status in FINAL for i in indices):
                    return states
                if deadline is not None and time.monotonic() >= deadline:
                    pending = [i for i in indices if states[i].status not in FINAL]
                    raise JobSetTimeoutError(
                        f"timed out with {len(pending)} sub-job(s) not final (first: {pending[:5]})"
                    )
                pause(None if deadline is None else deadline - time.monotonic())


# --------------------------------------------------------------------------- Celery


class CeleryExecutor:
    """Runs sub-jobs on Celery workers through Redis.

    ``CeleryExecutor()`` builds its settings from the ``JOBSET_*`` variables, once;
    keyword arguments override them, or pass a :class:`Settings`.  The executor sends by
    task name and never imports the worker code.
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
        self.app.config_from_object(celery_config(settings))
        _private_broker_pools(self.app)
        # Retries ride out a broker that restarts; each wait still ends at its deadline.
        self.redis = redis.Redis.from_url(
            settings.backend_url,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            health_check_interval=30,
            socket_connect_timeout=settings.connect_timeout_s,
        )
        # The queues live on the broker, which may be another server than the results.
        self.broker = (
            self.redis
            if settings.broker_url == settings.backend_url
            else redis.Redis.from_url(
                settings.broker_url,
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                socket_connect_timeout=settings.connect_timeout_s,
            )
        )
        self.store = SignedStore(self.redis, settings)
        self._eviction_checked = False

    def __repr__(self) -> str:
        return f"CeleryExecutor(broker_url={redact_url(self.settings.broker_url)!r})"

    def heartbeats(self) -> list[dict[str, Any]]:
        """The records live workers keep under ``jobset:worker:*``; unreadable ones skipped."""
        found = []
        for key in self.redis.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=500):
            raw = self.redis.get(key)
            try:
                record = json.loads(raw) if raw else None
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append(record)
        return found

    def slots(self) -> int:
        """Worker processes able to take a sub-job now, from the workers' heartbeats."""
        return sum(w.concurrency for w in self.workers())

    # ---- admission and routing: what the live workers advertise (see jobset.admission)
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
        recovery.check_reachable(self.settings)
        if not self._eviction_checked:
            self._eviction_checked = True
            recovery.warn_if_evicting(self.redis, self.settings.backend_url)

    def version_skew(self) -> str | None:
        """Why no live worker would run this producer's sub-jobs; None if one would."""
        return recovery.version_skew(self.heartbeats())

    def publish(
        self,
        jobset_id: str,
        backend: Any,
        plan: Plan,
        *,
        tags: Sequence[str] = (),
        timeout_s: float | None = None,
        dispatch: Dispatch | None = None,
        cache_ttl_s: int | None = None,
    ) -> CeleryRun:
        """Store the set's record and payloads (signed), then publish one task per sub-batch.

        Each sub-batch is encoded and published in turn, so workers start on the first
        while the producer still encodes the rest.  ``dispatch`` says which queue each
        sub-job goes to, at what priority (default: the backend's class queue); owner
        queues are recorded for workers to consume.  With ``cache_ttl_s`` each signed batch
        asks the worker to reuse (or store) its result under the digest of its inputs.
        """
        ttl, store = self.settings.result_ttl_s, self.store
        ids = tuple(task_id(jobset_id, b.index) for b in plan.sub_batches)
        if dispatch is None:
            dispatch = Dispatch(queue_for(backend))
        pipe = self.redis.pipeline(transaction=False)
        store.put(Kind.BACKEND, jobset_id, portable_backend(backend), pipe=pipe)
        registry.write(
            store,
            pipe,
            registry.make_record(
                jobset_id, backend, plan, ids, tags, timeout_s=timeout_s, dispatch=dispatch
            ),
        )
        owned = {q for q in dispatch.queues if OWNER_SEP in q}
        if owned:
            pipe.zadd(OWNER_QUEUES_KEY, dict.fromkeys(owned, time.time()))
            pipe.expire(OWNER_QUEUES_KEY, ttl)
        pipe.execute()

        with self.app.producer_or_acquire() as producer:
            publisher = BulkPublisher(self.app, producer, timeout_s=timeout_s)
            for chunk in growing_chunks(plan.sub_batches):

                def payloads(pipe: Any, chunk: Sequence[SubBatch] = chunk) -> None:
                    for batch in chunk:
                        ref = (jobset_id, batch.index)
                        store.put(Kind.BATCH, ref, batch, pipe=pipe, cache_ttl_s=cache_ttl_s or 0)

                # Payloads, messages and their task-sent events: one round trip per chunk.
                sub_jobs = [(b.index, len(b.experiments)) for b in chunk]
                publish_chunk(
                    publisher,
                    self.redis,
                    self.broker,
                    jobset_id,
                    sub_jobs,
                    dispatch=dispatch,
                    ttl_s=ttl,
                    writes=payloads,
                )
        return CeleryRun(self, jobset_id, ids, timeout_s=timeout_s, dispatch=dispatch)

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


def _private_broker_pools(app: Celery) -> None:
    """Give ``app`` broker connection and producer pools of its own.

    Celery takes them from kombu's process-wide registry, shared by every app with the
    same broker URL: closing them in :meth:`CeleryExecutor.close` would cut the
    connections of every other executor of the process.
    """
    pool = app.connection_for_write().Pool(limit=app.conf.broker_pool_limit)
    app._pool = pool
    app.amqp._producer_pool = ProducerPool(pool, limit=pool.limit)


def _failure(meta: dict[str, Any], index: int, jobset_id: str, timeout_s: Any) -> tuple[str, str]:
    """The error type and the message of a failed sub-job, from its Celery record."""
    result = meta.get("result")
    if isinstance(result, dict) and "exc_type" in result:
        message = result.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = " ".join(str(m) for m in message)
        error_type = str(result["exc_type"])
        if error_type == "TimeLimitExceeded":
            # The worker words it as SubJobTimeoutError too, but Celery's own store of the
            # hard limit can land after that one: word it the same here.
            soft_s = timeout_s if timeout_s is not None else message
            error_type, message = "SubJobTimeoutError", timeout_message(index, jobset_id, soft_s)
        return error_type, f"{error_type}: {message}"
    return "", str(result) if result else str(meta.get("status", ""))


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


class CeleryRun(Submission):
    """A set published to Celery; every read is one pipelined round trip."""

    def __init__(
        self,
        executor: CeleryExecutor,
        jobset_id: str,
        task_ids: Sequence[str],
        *,
        timeout_s: float | None = None,
        dispatch: Dispatch | None = None,
    ):
        self.executor = executor
        self.jobset_id = jobset_id
        self.task_ids = tuple(task_ids)
        self.meta_keys = [executor.app.backend.get_key_for_task(t) for t in self.task_ids]
        self.timeout_s = timeout_s
        self.dispatch = dispatch
        self._cancelled = False
        self._progress: tuple[int, float, float] | None = None  # finals, since, check after
        self._tally_seen: tuple[dict[JobStatus, int], float] | None = None

    @property
    def cancelled(self) -> bool:
        if not self._cancelled:
            self._cancelled = bool(self.executor.redis.exists(cancel_key(self.jobset_id)))
        return self._cancelled

    def _metas(self, indices: Sequence[int] | None) -> list[dict[str, Any]]:
        keys = self.meta_keys if indices is None else [self.meta_keys[i] for i in indices]
        pipe = self.executor.redis.pipeline(transaction=False)
        pipe.exists(cancel_key(self.jobset_id))
        pipe.mget(keys)
        set_cancelled, raw = pipe.execute()
        self._cancelled = self._cancelled or bool(set_cancelled)
        return [json.loads(r) if r else {"status": "PENDING"} for r in raw]

    def tallied(self) -> dict[JobStatus, int]:
        """The workers' tally of this set's sub-jobs (:mod:`jobset.tally`): O(1) to read."""
        pipe = self.executor.redis.pipeline(transaction=False)
        pipe.exists(cancel_key(self.jobset_id))
        pipe.hgetall(tally.counts_key(self.jobset_id))
        set_cancelled, raw = pipe.execute()
        self._cancelled = self._cancelled or bool(set_cancelled)
        return tally.counts(raw)

    def newly_final(self, pending: Collection[int], cursor: Any) -> tuple[list[int], Any]:
        """From the workers' log of ended sub-jobs (:mod:`jobset.tally`), read on from where
        the last call stopped, and checked against Celery's records: each poll reads at
        most a chunk of the log and of states, however big the set.  Where the log cannot
        tell (a cancelled set's queued sub-jobs end by its mark; a tally that stalled may
        have missed one), a window of pending sub-jobs is read too, the next one each time.
        """
        position, window, sweeping = cursor if cursor is not None else (0, 0, False)
        total = len(self.task_ids)
        logged, position = tally.read_ended(
            self.executor.redis, self.jobset_id, position, total=total
        )
        candidates = dict.fromkeys(k for k in logged if k in pending)
        counted = self.tallied()
        swept: list[int] = []
        # A window that found some is followed by the next one at once (a set whose log
        # missed many, say one submitted before there was a log, is read a chunk a poll).
        if sweeping or self._cancelled or self._tally_stalled(counted):
            window = window if window < len(pending) else 0
            swept = list(itertools.islice(pending, window, window + _RESULT_CHUNK))
            candidates.update(dict.fromkeys(swept))
        indices = list(candidates)
        states = self.states(indices) if indices else []
        final = [k for k, s in zip(indices, states, strict=True) if s.status in FINAL]
        ended = set(final).intersection(swept)
        # The caller drops the ended ones from ``pending``: the next window starts after
        # the swept sub-jobs that stay.
        return final, (position, window + len(swept) - len(ended), bool(ended))

    def finished_count(self) -> int | None:
        counted = self.tallied()
        # A cancelled set's queued sub-jobs turn final by the mark, not the tally; a tally
        # that stalled may have missed one: read the states then.
        if self._cancelled or self._tally_stalled(counted):
            return None
        return sum(n for status, n in counted.items() if status in FINAL)

    def aggregate(self) -> JobStatus:
        """From the tally; from Celery's states when the tally has not moved for a while.

        A worker that died between Celery's record and the tally's would otherwise leave
        a final sub-job counted as running for good.
        """
        counted = self.tallied()
        status = aggregate_counts(counted, len(self.task_ids), cancelled=self._cancelled)
        if status in FINAL or not self._tally_stalled(counted):
            return status
        return aggregate_status((s.status for s in self.states()), cancelled=self._cancelled)

    def progress(self) -> dict[str, int]:
        counted = self.tallied()
        if self._tally_stalled(counted):
            return super().progress()
        return tally.progress(counted, len(self.task_ids), cancelled=self._cancelled)

    def _tally_stalled(self, counted: dict[JobStatus, int]) -> bool:
        """True when the tally has not changed for ``_TALLY_FALLBACK_S`` (then once again
        that long later, and so on)."""
        now = time.monotonic()
        if self._tally_seen is None or self._tally_seen[0] != counted:
            self._tally_seen = (counted, now)
            return False
        if now - self._tally_seen[1] < _TALLY_FALLBACK_S:
            return False
        self._tally_seen = (counted, now)
        return True

    def wait(self, indices: Sequence[int], deadline: float | None) -> list[SubJobState]:
        """Like :meth:`Submission.wait`, but a wait for the whole set polls the tally and
        reads every sub-job's state only when the tally says the set is final (or has not
        moved for a while), so a long wait on a big set costs O(1) a poll."""
        if len(indices) != len(self.task_ids):
            return super().wait(indices, deadline)
        with self.pauses() as pause:
            while True:
                counted = self.tallied()
                final = aggregate_counts(counted, len(self.task_ids), cancelled=self._cancelled)
                states = None
                if final in FINAL or self._tally_stalled(counted):
                    states = self.states()
                    self._watch(states)
                    if all(s.status in FINAL for s in states):
                        return states
                if deadline is not None and time.monotonic() >= deadline:
                    states = self.states() if states is None else states
                    pending = [i for i, s in enumerate(states) if s.status not in FINAL]
                    if not pending:
                        return states
                    raise JobSetTimeoutError(
                        f"timed out with {len(pending)} sub-job(s) not final (first: {pending[:5]})"
                    )
                pause(None if deadline is None else deadline - time.monotonic())

    def states(self, indices: Sequence[int] | None = None) -> list[SubJobState]:
        """States of every sub-job, or of ``indices`` only: one round trip either way."""
        states = []
        which = range(len(self.task_ids)) if indices is None else indices
        for index, meta in zip(which, self._metas(indices), strict=True):
            status = celery_to_job_status(meta.get("status"), cancelled=self._cancelled)
            message = error_type = ""
            if status is JobStatus.ERROR:
                error_type, message = _failure(meta, index, self.jobset_id, self.timeout_s)
            elif status is JobStatus.CANCELLED:
                message = "cancelled"
            states.append(SubJobState(status, message, error_type))
        return states

    @contextlib.contextmanager
    def pauses(self) -> Iterator[Callable[[float | None], None]]:
        """Pause until the result backend announces a change of this set, or a second.

        Celery's Redis backend publishes every task record on a channel named after its
        key; subscribing to this set's channels wakes a wait the moment a sub-job ends,
        instead of a poll interval later.  Without the subscription (the broker went away)
        it falls back to sleeping, inside the same deadline.
        """
        prefix = self.executor.app.backend.task_keyprefix
        prefix = prefix.decode() if isinstance(prefix, bytes) else str(prefix)
        pubsub = self.executor.redis.pubsub(ignore_subscribe_messages=True)
        with super().pauses() as sleep:
            subscribed = True
            try:
                pubsub.psubscribe(f"{prefix}{glob_escape(self.jobset_id)}-*")
                pubsub.subscribe(tally.counts_key(self.jobset_id))  # workers tally after
            except (redis.ConnectionError, redis.TimeoutError):
                subscribed = False

            def pause(remaining: float | None) -> None:
                nonlocal subscribed
                if subscribed:
                    timeout = _NOTICE_WAIT_S if remaining is None else remaining
                    try:
                        notice = pubsub.get_message(timeout=max(0.0, min(_NOTICE_WAIT_S, timeout)))
                        while notice is not None:  # coalesce a burst into one status read
                            notice = pubsub.get_message(timeout=0.0)
                        return
                    except (redis.ConnectionError, redis.TimeoutError):
                        subscribed = False
                sleep(remaining)

            try:
                yield pause
            finally:
                pubsub.close()

    def lost(self) -> list[int]:
        """Sub-jobs neither queued nor held by a worker nor final: Redis lost them."""
        return recovery.find_lost(self)

    def rerun(self, indices: Sequence[int], batches: Sequence[SubBatch], *, backend: Any) -> None:
        recovery.republish(
            self.executor,
            self.jobset_id,
            indices,
            batches,
            backend=backend,
            timeout_s=self.timeout_s,
            dispatch=self.dispatch,
        )
        self._progress = None

    def _watch(self, states: Sequence[SubJobState]) -> None:
        """Raise :class:`SubJobsLostError` when a stalled set turns out to have lost sub-jobs.

        A lost sub-job reads QUEUED forever, so a wait without a deadline would never
        end.  Only a set where nothing finished for a while is checked (the check scans
        the queues), and each check that finds nothing doubles the pause to the next.
        """
        now = time.monotonic()
        finals = sum(s.status in FINAL for s in states)
        if finals == len(states):
            return
        if self._progress is None or self._progress[0] != finals:
            self._progress = (finals, now, _LOST_CHECK_START_S)
            return
        _, since, pause = self._progress
        if now - since < pause:
            return
        self._progress = (finals, now, min(2 * pause, _LOST_CHECK_MAX_S))
        lost = self.lost()
        if lost:
            raise SubJobsLostError(self.jobset_id, lost)

    def finished_at(self) -> float | None:
        """Unix time at which the last sub-job finished, from the workers' records."""
        done = [m.get("date_done") for m in self._metas(None)]
        if not done or any(d is None for d in done):
            return None
        return max(datetime.fromisoformat(str(d)).timestamp() for d in done)

    def results(self, indices: Iterable[int]) -> dict[int, Result]:
        """The stored results, read and decoded a chunk at a time: Redis's reply buffer and
        this process never hold every signed blob of a big set at once."""
        wanted = list(indices)
        out: dict[int, Result] = {}
        for start in range(0, len(wanted), _RESULT_CHUNK):
            chunk = wanted[start : start + _RESULT_CHUNK]
            found = self.executor.store.get_many(
                Kind.RESULT, [(self.jobset_id, i) for i in chunk], expect=Result
            )
            out.update((i, r) for i, r in zip(chunk, found, strict=True) if r is not None)
        return out

    def cancel(self, indices: Sequence[int] | None = None) -> None:
        """Record the cancel in Redis (durable), drop the queued messages, stop the running.

        The durable mark is what every worker checks before it runs a sub-job, so the
        cancel holds even for a message a worker already holds or a revoke that no worker
        heard.  The queued messages are removed from the queue lists, so other sets do not
        wait behind them; only the running sub-jobs are revoked (a revoke of every id
        would make each worker look up every one of them).
        """
        redis_client, ttl = self.executor.redis, self.executor.settings.result_ttl_s
        if indices is None:
            redis_client.set(cancel_key(self.jobset_id), "1", ex=ttl)
            self._cancelled = True
            targets = list(range(len(self.task_ids)))
            needles = [self.jobset_id]
        else:
            targets = list(indices)
            pipe = redis_client.pipeline(transaction=False)
            for i in targets:
                pipe.set(sub_job_cancel_key(self.jobset_id, i), "1", ex=ttl)
            pipe.execute()
            # Each task id as it stands, quoted, in its message's headers.
            needles = [f'"{self.task_ids[i]}"' for i in targets]
        self._purge(needles)
        states = self.states()
        running = [self.task_ids[i] for i in targets if states[i].status is JobStatus.RUNNING]
        try:
            # SIGKILL: Aer runs in C++ and would finish its circuit before a SIGTERM landed.
            if running:
                self.executor.app.control.revoke(running, terminate=True, signal="SIGKILL")
        except Exception:  # the broker may be away; the durable mark still holds
            logger.warning("revoke broadcast for %s failed", self.jobset_id, exc_info=True)
        if indices is not None:
            # A queued sub-job cancelled alone reads CANCELLED at once, like the set's.
            queued = [i for i in targets if states[i].status is JobStatus.QUEUED]
            for i in queued:
                self.executor.app.backend.mark_as_revoked(self.task_ids[i], "cancelled")
            pipe = redis_client.pipeline(transaction=False)
            for i in queued:
                tally.move(pipe, self.jobset_id, i, tally.CANCELLED, ttl_s=ttl)
            pipe.execute()

    def _purge(self, needles: Sequence[str]) -> None:
        queues = (self.dispatch or Dispatch(DEFAULT_QUEUE)).queues
        try:
            recovery.purge_queued(self.executor.broker, queues, needles)
        except redis.RedisError:  # workers still skip them by the durable mark
            logger.warning("could not drop the queued messages of %s", self.jobset_id)


# --------------------------------------------------------------------------- local


class FuturesRun(Submission):
    """A set on a ``concurrent.futures`` executor, as in qiskit-aer 0.14.

    Only sub-jobs still queued can be cancelled: a thread or process pool cannot stop
    a function that is running.
    """

    def __init__(
        self, executor: cf.Executor, fn: Callable[[SubBatch], Result], batches: Sequence[SubBatch]
    ) -> None:
        self.futures = [executor.submit(fn, b) for b in batches]
        # A uuid per sub-job, as qiskit-aer 0.14 gave: unique across sets, like Celery's ids.
        self.task_ids = tuple(str(uuid.uuid4()) for _ in batches)
        self._cancelled = False
        self._pool = executor
        self._fn = fn

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def states(self, indices: Sequence[int] | None = None) -> list[SubJobState]:
        chosen = self.futures if indices is None else [self.futures[i] for i in indices]
        return [self._state(f) for f in chosen]

    @staticmethod
    def _state(future: cf.Future[Result]) -> SubJobState:
        if future.cancelled():
            return SubJobState(JobStatus.CANCELLED, "cancelled")
        if not future.done():
            return SubJobState(JobStatus.RUNNING if future.running() else JobStatus.QUEUED)
        error = future.exception()
        if error is not None:
            name = type(error).__name__
            return SubJobState(JobStatus.ERROR, f"{name}: {error}", name)
        result = future.result()
        if not result.success:
            failed = [str(e.status) for e in result.results if not e.success]
            message = "; ".join(failed) or str(result.status)
            return SubJobState(JobStatus.ERROR, message, "SimulationFailedError")
        return SubJobState(JobStatus.DONE)

    def results(self, indices: Iterable[int]) -> dict[int, Result]:
        out = {}
        for i in indices:
            f = self.futures[i]
            if f.done() and not f.cancelled() and f.exception() is None:
                out[i] = f.result()
        return out

    def wait(self, indices: Sequence[int], deadline: float | None) -> list[SubJobState]:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        _, not_done = cf.wait([self.futures[i] for i in indices], timeout=timeout)
        if not_done:
            raise JobSetTimeoutError(f"timed out with {len(not_done)} sub-job(s) not final")
        return self.states()

    def cancel(self, indices: Sequence[int] | None = None) -> None:
        if indices is None:
            self._cancelled = True
        for i in range(len(self.futures)) if indices is None else indices:
            self.futures[i].cancel()

    def rerun(self, indices: Sequence[int], batches: Sequence[SubBatch], *, backend: Any) -> None:
        for i in indices:
            self.futures[i] = self._pool.submit(self._fn, batches[i])
