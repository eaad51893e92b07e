"""The executor adapter over ``concurrent.futures``, and the one place that tells executors apart.

qiskit-aer 0.14 took a thread pool or a ``dask.distributed.Client`` as its ``executor``
(its docstrings, its parallel howto and its tests pass the client itself).  A client is
not a ``concurrent.futures.Executor``, but ``client.get_executor()`` is one; so
:func:`as_executor` turns either into a :class:`FuturesExecutor`, and takes a
:class:`~jobset.executors.celery.executor.CeleryExecutor` (or any other
:class:`~jobset.executors.base.Executor`) as it is.  Dask is never imported here: a client is
recognised by its shape (a ``get_executor()`` method, defined in the ``distributed``
package).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from qiskit.providers import JobStatus
from qiskit.result import Result

from ..deadline import Deadline
from ..errors import InvalidInputError
from ..plan import SubBatch
from .base import Executor, SetRequest, SubJobState, Submission, SubmitOptions, not_final_error
from .machine import available_cores

_default_pool: cf.ThreadPoolExecutor | None = None
_default_pool_lock = threading.Lock()


def default_executor() -> cf.ThreadPoolExecutor:
    """The one-thread pool of a job set constructed without an executor.

    qiskit-aer 0.14's ``AerJobSet(backend, job_id, fn, experiments)`` ran on such a pool
    (its ``DEFAULT_EXECUTOR``); here it is made on first use and shared the same way.
    """
    global _default_pool
    with _default_pool_lock:
        if _default_pool is None:
            _default_pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobset")
        return _default_pool


def is_dask_client(executor: Any) -> bool:
    """Whether ``executor`` is a ``dask.distributed.Client`` (by duck typing)."""
    module = type(executor).__module__ or ""
    return module.split(".")[0] == "distributed" and callable(
        getattr(executor, "get_executor", None)
    )


def futures_executor(executor: Any) -> cf.Executor | None:
    """``executor`` as a ``concurrent.futures.Executor``; None when it cannot be one.

    A Dask client gives its ``get_executor(pure=False)``: Dask's default ``pure=True``
    would hand back the first outcome when the same sub-batch is submitted again (a retry).
    """
    if isinstance(executor, cf.Executor):
        return executor
    if is_dask_client(executor):
        pool: cf.Executor = executor.get_executor(pure=False)
        return pool
    return None


def as_executor(executor: Any) -> Executor:
    """``executor`` as the interface a job set talks to; :class:`InvalidInputError` if none."""
    if isinstance(executor, Executor):
        return executor
    pool = futures_executor(executor)
    if pool is None:
        raise _refused(executor)
    return FuturesExecutor(pool, given=executor)


def _refused(executor: Any) -> InvalidInputError:
    return InvalidInputError(
        "executor must be a CeleryExecutor, a concurrent.futures.Executor or a "
        f"dask.distributed.Client, got {type(executor).__name__}"
    )


def local_slots(executor: Any) -> int:
    """Sub-jobs a local executor runs at once: a pool's workers, a Dask cluster's threads.

    Falls back to this machine's cores when the executor does not say.
    """
    if is_dask_client(executor):
        try:
            threads = sum(int(n) for n in executor.nthreads().values())
        except Exception:  # a client that lost its scheduler: any positive guess will do
            threads = 0
        return threads or available_cores()
    return int(getattr(executor, "_max_workers", 0) or available_cores())


class FuturesExecutor(Executor):
    """Runs each sub-batch as ``fn(sub_batch)`` on a ``concurrent.futures`` executor.

    What a pool cannot do is refused before anything is planned: a per-sub-job
    ``timeout_s`` (a pool cannot stop a function that is running) and the options that
    act on Celery's queues and workers.
    """

    def __init__(self, pool: cf.Executor, *, given: Any = None) -> None:
        self.pool = pool
        # What the caller passed (a pool, or the Dask client behind ``pool``): asked for
        # its size only when a plan needs it (a client asks its scheduler).
        self._given = pool if given is None else given

    def __repr__(self) -> str:
        return f"FuturesExecutor({self.pool!r})"

    @property
    def given(self) -> Any:
        return self._given

    def check_options(self, options: SubmitOptions) -> None:
        options.refuse_queue_options()
        if options.timeout_s is not None:
            raise InvalidInputError(
                "timeout_s needs a CeleryExecutor: a concurrent.futures pool cannot stop "
                "a function that is running"
            )

    def slots(self) -> int:
        return local_slots(self._given)

    def submit(self, request: SetRequest) -> FuturesRun:
        if request.fn is None:
            raise InvalidInputError("a concurrent.futures executor needs fn")
        self.check_options(request.options)
        return FuturesRun(self.pool, request.fn, request.plan.sub_batches)


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

    def wait(self, indices: Sequence[int], deadline: Deadline) -> list[SubJobState]:
        _, not_done = cf.wait([self.futures[i] for i in indices], timeout=deadline.remaining())
        if not_done:
            raise not_final_error([i for i in indices if not self.futures[i].done()])
        return self.states()

    def cancel(self, indices: Sequence[int] | None = None) -> None:
        if indices is None:
            self._cancelled = True
        for i in range(len(self.futures)) if indices is None else indices:
            self.futures[i].cancel()

    def rerun(self, indices: Sequence[int], batches: Sequence[SubBatch], *, backend: Any) -> None:
        for i in indices:
            self.futures[i] = self._pool.submit(self._fn, batches[i])
