"""Executors on this machine: any ``concurrent.futures.Executor``, and a Dask client as one.

qiskit-aer 0.14 took a thread pool or a ``dask.distributed.Client`` as its ``executor``
(its docstrings, its parallel howto and its tests pass the client itself).  A client is
not a ``concurrent.futures.Executor``, but ``client.get_executor()`` is one; this module is
the one place that knows it, so a job set only ever submits to a ``concurrent.futures``
executor, or publishes to Celery.  Dask is never imported here: a client is recognised by
its shape (a ``get_executor()`` method, defined in the ``distributed`` package).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any

from .errors import InvalidInputError
from .executors import CeleryExecutor
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


def check_executor(executor: Any) -> Any:
    """``executor`` if a job set can run on it; :class:`InvalidInputError` otherwise."""
    if isinstance(executor, CeleryExecutor) or futures_executor(executor) is not None:
        return executor
    raise _refused(executor)


def local_executor(executor: Any) -> cf.Executor:
    """The ``concurrent.futures`` executor to submit to; :class:`InvalidInputError` if none."""
    pool = futures_executor(executor)
    if pool is None:
        raise _refused(executor)
    return pool


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
