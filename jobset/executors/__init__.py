"""Executors: where a job set's sub-jobs run.

- :mod:`~jobset.executors.base`: the one interface (:class:`Executor`, :class:`Submission`,
  :class:`SubmitOptions`, :class:`SetRequest`); pure, no I/O;
- :mod:`~jobset.executors.pools`: the adapter over a ``concurrent.futures`` pool or a Dask
  client, and :func:`~jobset.executors.pools.as_executor`, the one place that tells kinds apart;
- :mod:`~jobset.executors.celery`: the distributed backend (Redis and Celery workers);
- what every executor shares: :mod:`~jobset.executors.aer` (one sub-batch on Aer),
  :mod:`~jobset.executors.admission` (admission and routing from the workers' capacity),
  :mod:`~jobset.executors.machine` (cores and memory) and
  :mod:`~jobset.executors.versions` (which versions a producer and a worker must share).
"""

from .base import Executor, SetRequest, Submission, SubmitOptions

__all__ = ["Executor", "SetRequest", "Submission", "SubmitOptions"]
