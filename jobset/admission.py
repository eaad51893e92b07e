"""Admission control and routing at submit, from the live workers' advertised capacity.

Pure over its inputs (the capacities come from the workers' heartbeats, read by the
executor): :func:`admit` refuses a set that no live worker could hold, :func:`routes`
picks each sub-job's queue by size class and owner.

Routing keeps what exists working: a sub-job goes to the large queue only when some live
worker consumes it, so a cluster of plain ``celery -A workers.app worker`` processes (no
``-Q``: the default CPU queue) serves every set as before.  A GPU backend keeps the GPU
queue.  With an ``owner`` the sub-jobs go to that owner's queue of the chosen class,
which workers of that class pick up (``workers.lifecycle.OwnerQueues``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .cost import SIZE_LARGE, ExperimentCost, WorkerCapacity, largest_memory, size_class
from .errors import AdmissionError, InvalidInputError
from .limits import human_bytes
from .plan import Plan
from .protocol import DEFAULT_QUEUE, LARGE_QUEUE, base_queue, owner_queue

ADMIT_MODES = ("require", "wait")
_OWNER = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_admit_mode(admit: object) -> str | None:
    if admit is None or admit in ADMIT_MODES:
        return admit
    raise InvalidInputError(f"admit must be None, 'require' or 'wait', got {admit!r}")


def check_owner(owner: object) -> str | None:
    if owner is None:
        return None
    if not isinstance(owner, str) or not _OWNER.fullmatch(owner):
        raise InvalidInputError(f"owner must be 1 to 64 letters, digits, '_' or '-', got {owner!r}")
    return owner


def admit(
    costs: Sequence[ExperimentCost],
    workers: Sequence[WorkerCapacity],
    *,
    mode: str,
) -> None:
    """Refuse the set when its largest experiment needs more memory than any live worker.

    ``mode="require"`` also refuses when no worker is online; ``"wait"`` queues then (a
    worker may come).  Workers that advertise no memory figure do not count as too small.
    """
    need = max((c.memory_bytes or 0 for c in costs), default=0)
    which = max(range(len(costs)), key=lambda i: costs[i].memory_bytes or 0, default=0)
    if not workers:
        if mode == "require":
            raise AdmissionError(
                f"no worker is online to admit the set (circuit {which} needs "
                f"{human_bytes(need)}); start a worker, or pass admit='wait' to queue anyway",
                need_bytes=need,
                largest_bytes=None,
            )
        return
    if any(w.memory_bytes is None for w in workers):
        return
    largest = largest_memory(workers)
    assert largest is not None and largest.memory_bytes is not None
    if need > largest.memory_bytes:
        raise AdmissionError(
            f"circuit {which} needs {human_bytes(need)} ({need} bytes) of state memory, "
            f"more than any live worker offers: the largest, {largest.hostname}, has "
            f"{human_bytes(largest.memory_bytes)} ({largest.memory_bytes} bytes)",
            need_bytes=need,
            largest_bytes=largest.memory_bytes,
        )


def routes(
    plan: Plan,
    circuit_of_experiment: Sequence[int],
    costs: Sequence[ExperimentCost],
    workers: Sequence[WorkerCapacity],
    *,
    default_queue: str,
    large_memory_bytes: int,
    owner: str | None,
) -> dict[int, str]:
    """Each sub-job's queue: its size class (where served), then its owner's queue."""
    served = {base_queue(q) for w in workers for q in w.queues}
    large_served = LARGE_QUEUE in served
    out: dict[int, str] = {}
    for batch in plan.sub_batches:
        queue = default_queue
        if default_queue == DEFAULT_QUEUE and large_served:
            memory = max(
                (costs[circuit_of_experiment[e]].memory_bytes or 0 for e in batch.experiments),
                default=0,
            )
            if size_class(memory, large_memory_bytes=large_memory_bytes) == SIZE_LARGE:
                queue = LARGE_QUEUE
        out[batch.index] = owner_queue(queue, owner) if owner else queue
    return out
