"""Where sub-jobs run: the Celery executor, and the adapter for ``concurrent.futures``.

Both hand back a :class:`Submission`, the one interface :class:`~jobset.jobset.AerJobSet`
talks to: states of every sub-job, their results, a wait with a deadline, and cancel.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import redis
from celery import Celery
from qiskit.providers import JobStatus
from qiskit.result import Result
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from . import codec, registry
from .celeryconf import celery_config
from .errors import JobSetTimeoutError
from .execute import available_cores, portable_backend
from .plan import Plan, SubBatch
from .protocol import (
    DEFAULT_QUEUE,
    GPU_QUEUE,
    RUN_SUB_JOB_TASK,
    WORKER_KEY_PREFIX,
    SubJobRef,
    backend_key,
    batch_key,
    cancel_key,
    result_key,
    sub_job_cancel_key,
    task_id,
)
from .settings import Settings, redact_url
from .status import FINAL, celery_to_job_status

logger = logging.getLogger(__name__)

_POLL_START_S = 0.01
_POLL_MAX_S = 0.25


class SubJobState(NamedTuple):
    """One sub-job as last seen: its status and, when it failed, the worker's message."""

    status: JobStatus
    message: str = ""


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

    def wait(self, indices: Sequence[int], deadline: float | None) -> list[SubJobState]:
        """Block until the given sub-jobs are final; raise at ``deadline`` (monotonic)."""
        delay = _POLL_START_S
        while True:
            states = self.states()
            if all(states[i].status in FINAL for i in indices):
                return states
            if deadline is not None and time.monotonic() >= deadline:
                pending = [i for i in indices if states[i].status not in FINAL]
                raise JobSetTimeoutError(
                    f"timed out with {len(pending)} sub-job(s) not final (first: {pending[:5]})"
                )
            remaining = None if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.0, min(delay, remaining if remaining is not None else delay)))
            delay = min(delay * 1.5, _POLL_MAX_S)


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
        # Retries ride out a broker that restarts; each wait still ends at its deadline.
        self.redis = redis.Redis.from_url(
            settings.backend_url,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            health_check_interval=30,
        )

    def __repr__(self) -> str:
        return f"CeleryExecutor(broker_url={redact_url(self.settings.broker_url)!r})"

    def slots(self) -> int:
        """Worker processes able to take a sub-job now, from the workers' heartbeats."""
        total = 0
        for key in self.redis.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=500):
            raw = self.redis.get(key)
            if raw:
                try:
                    total += int(json.loads(raw).get("concurrency", 1))
                except (ValueError, TypeError):
                    continue
        return total

    def publish(
        self, jobset_id: str, backend: Any, plan: Plan, *, tags: Sequence[str] = ()
    ) -> CeleryRun:
        """Store the set's record and payloads (signed), then publish one task per sub-batch."""
        key, ttl = self.settings.secret_key, self.settings.result_ttl_s
        batches = plan.sub_batches
        ids = tuple(task_id(jobset_id, b.index) for b in batches)
        pipe = self.redis.pipeline(transaction=False)
        bkey = backend_key(jobset_id)
        pipe.set(bkey, codec.dumps(portable_backend(backend), key=key, context=bkey), ex=ttl)
        for batch in batches:
            k = batch_key(jobset_id, batch.index)
            pipe.set(k, codec.dumps(batch, key=key, context=k), ex=ttl)
        registry.write(
            pipe, registry.make_record(jobset_id, backend, plan, ids, tags), key=key, ttl_s=ttl
        )
        pipe.execute()

        queue = GPU_QUEUE if backend.options.get("device", "CPU") == "GPU" else DEFAULT_QUEUE
        with self.app.producer_or_acquire() as producer:
            for batch, tid in zip(batches, ids, strict=True):
                ref = SubJobRef(jobset_id, batch.index, len(batch.experiments))
                self.app.send_task(
                    RUN_SUB_JOB_TASK,
                    kwargs=ref.to_kwargs(),
                    task_id=tid,
                    queue=queue,
                    producer=producer,
                )
        return CeleryRun(self, jobset_id, ids)

    def close(self) -> None:
        self.redis.close()
        self.app.close()

    def __enter__(self) -> CeleryExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _failure_message(meta: dict[str, Any]) -> str:
    result = meta.get("result")
    if isinstance(result, dict) and "exc_type" in result:
        message = result.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = " ".join(str(m) for m in message)
        return f"{result['exc_type']}: {message}"
    return str(result) if result else meta.get("status", "")


class CeleryRun(Submission):
    """A set published to Celery; every read is one pipelined round trip."""

    def __init__(self, executor: CeleryExecutor, jobset_id: str, task_ids: Sequence[str]):
        self.executor = executor
        self.jobset_id = jobset_id
        self.task_ids = tuple(task_ids)
        self.meta_keys = [executor.app.backend.get_key_for_task(t) for t in self.task_ids]
        self._cancelled = False

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

    def states(self, indices: Sequence[int] | None = None) -> list[SubJobState]:
        """States of every sub-job, or of ``indices`` only: one round trip either way."""
        states = []
        for meta in self._metas(indices):
            status = celery_to_job_status(meta.get("status"), cancelled=self._cancelled)
            message = ""
            if status is JobStatus.ERROR:
                message = _failure_message(meta)
            elif status is JobStatus.CANCELLED:
                message = "cancelled"
            states.append(SubJobState(status, message))
        return states

    def finished_at(self) -> float | None:
        """Unix time at which the last sub-job finished, from the workers' records."""
        done = [m.get("date_done") for m in self._metas(None)]
        if not done or any(d is None for d in done):
            return None
        return max(datetime.fromisoformat(str(d)).timestamp() for d in done)

    def results(self, indices: Iterable[int]) -> dict[int, Result]:
        wanted = list(indices)
        keys = [result_key(self.jobset_id, i) for i in wanted]
        blobs: list[Any] = self.executor.redis.mget(keys) if keys else []
        secret = self.executor.settings.secret_key
        return {
            i: codec.loads(blob, key=secret, context=k)
            for i, k, blob in zip(wanted, keys, blobs, strict=True)
            if blob is not None
        }

    def cancel(self, indices: Sequence[int] | None = None) -> None:
        """Record the cancel in Redis (durable), then revoke and terminate the tasks.

        The revoke is a broadcast that only workers online now receive; the mark is what
        every worker checks before it runs a sub-job, so the cancel holds either way.
        """
        ttl = self.executor.settings.result_ttl_s
        if indices is None:
            self.executor.redis.set(cancel_key(self.jobset_id), "1", ex=ttl)
            self._cancelled = True
            targets = list(range(len(self.task_ids)))
        else:
            targets = list(indices)
            pipe = self.executor.redis.pipeline(transaction=False)
            for i in targets:
                pipe.set(sub_job_cancel_key(self.jobset_id, i), "1", ex=ttl)
            pipe.execute()
        states = self.states()
        live = [self.task_ids[i] for i in targets if states[i].status not in FINAL]
        try:
            # SIGKILL: Aer runs in C++ and would finish its circuit before a SIGTERM landed.
            # terminate only affects the running ones; the queued ones are just revoked.
            self.executor.app.control.revoke(live, terminate=True, signal="SIGKILL")
        except Exception:  # the broker may be away; the durable mark still holds
            logger.warning("revoke broadcast for %s failed", self.jobset_id, exc_info=True)
        if indices is not None:
            # A queued sub-job cancelled alone reads CANCELLED at once, like the set's.
            for i in targets:
                if states[i].status is JobStatus.QUEUED:
                    self.executor.app.backend.mark_as_revoked(self.task_ids[i], "cancelled")


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
        self.task_ids = tuple(str(i) for i in range(len(batches)))
        self._cancelled = False

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
            return SubJobState(JobStatus.ERROR, f"{type(error).__name__}: {error}")
        result = future.result()
        if not result.success:
            failed = [str(e.status) for e in result.results if not e.success]
            return SubJobState(JobStatus.ERROR, "; ".join(failed) or str(result.status))
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


def local_slots(executor: cf.Executor) -> int:
    """Workers of a ``concurrent.futures`` executor (its ``_max_workers``), else the cores."""
    return int(getattr(executor, "_max_workers", 0) or available_cores())
