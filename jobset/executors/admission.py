"""Admission control and routing at submit, from the live workers' advertised capacity.

Pure over its inputs (the capacities come from the workers' heartbeats, read by the
executor): :func:`admit` refuses a set that no live worker could hold, :func:`routes`
picks each sub-job's queue by size class and owner.

Routing keeps what exists working: a sub-job goes to the large queue only when some live
worker consumes it, so a cluster of plain ``celery -A workers.app worker`` processes (no
``-Q``: the default CPU queue) serves every set as before.  A GPU backend keeps the GPU
queue.  With an ``owner`` the sub-jobs go to that owner's queue of the chosen class,
which workers of that class pick up (``workers.lifecycle.OwnerQueues``).

Priorities use kombu's Redis lists per priority step: a worker's BRPOP names every
queue's step-0 list before any step-3 list, so a lower step is taken first across all the
queues it consumes, and owners still take turns within a step.  The default priority
publishes as before (no priority property: the plain queue list, step 0), so it is the
highest; ``"low"`` and ``"lowest"`` let a big sweep step back behind everything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qiskit.circuit import QuantumCircuit

from ..cost import (
    SIZE_LARGE,
    ExperimentCost,
    WorkerCapacity,
    circuit_costs,
    human_bytes,
    largest_memory,
    size_class,
)
from ..errors import AdmissionError, InvalidInputError
from ..plan import Plan
from ..protocol import (
    DEFAULT_QUEUE,
    GPU_QUEUE,
    LARGE_QUEUE,
    PRIORITIES,
    base_queue,
    check_owner_name,
    owner_queue,
)

ADMIT_MODES = ("require", "wait")


@dataclass(frozen=True)
class PlanCosts:
    """Each circuit's estimated cost, and which circuit each experiment of a plan runs."""

    circuits: Sequence[ExperimentCost]
    circuit_of_experiment: Sequence[int]

    @classmethod
    def of(cls, plan: Plan, options: Mapping[str, Any]) -> PlanCosts:
        """Estimated from the plan's own sub-batches, each distinct circuit once."""
        index: dict[int, int] = {}
        circuits: list[QuantumCircuit] = []
        of_experiment = [0] * len(plan.experiments)
        for batch in plan.sub_batches:
            first = 0
            for circuit, count in zip(batch.circuits, batch.experiment_counts(), strict=True):
                k = index.setdefault(id(circuit), len(circuits))
                if k == len(circuits):
                    circuits.append(circuit)
                for e in batch.experiments[first : first + count]:
                    of_experiment[e] = k
                first += count
        costs = circuit_costs(circuits, shots=plan.shots, options=options)
        return cls(costs, of_experiment)

    def total_work(self) -> float:
        """The set's estimated work (:mod:`jobset.cost`'s units), every experiment counted."""
        return sum(self.circuits[k].work for k in self.circuit_of_experiment)


def check_admit_mode(admit: object) -> str | None:
    if admit is None or admit in ADMIT_MODES:
        return admit
    raise InvalidInputError(f"admit must be None, 'require' or 'wait', got {admit!r}")


def check_owner(owner: object) -> str | None:
    return None if owner is None else check_owner_name(owner)


def check_priority(priority: object) -> str:
    if isinstance(priority, str) and priority in PRIORITIES:
        return priority
    raise InvalidInputError(
        f"priority must be one of {', '.join(map(repr, PRIORITIES))}, got {priority!r}"
    )


def serves(worker: WorkerCapacity, queue: str) -> bool:
    """Whether ``worker`` takes sub-jobs meant for class queue ``queue``.

    A CPU set may run on a worker of either CPU class (small sub-jobs go to the large
    class only where no small worker is, and a large worker serves both when started
    so); a GPU set needs a GPU worker.  A worker that advertises no queues is counted
    as serving every class.
    """
    served = {base_queue(q) for q in worker.queues}
    if not served:
        return True
    if queue == GPU_QUEUE:
        return GPU_QUEUE in served
    return bool(served & {DEFAULT_QUEUE, LARGE_QUEUE})


def admit(
    costs: Sequence[ExperimentCost],
    workers: Sequence[WorkerCapacity],
    *,
    mode: str,
    queue: str = DEFAULT_QUEUE,
) -> None:
    """Refuse the set when its largest experiment needs more memory than any live worker.

    Only workers that serve the set's class (``queue``: CPU or GPU) count.
    ``mode="require"`` also refuses when no such worker is online; ``"wait"`` queues then
    (a worker may come).  Workers that advertise no memory figure do not count as too
    small.
    """
    workers = [w for w in workers if serves(w, queue)]
    need = max((c.memory_bytes or 0 for c in costs), default=0)
    which = max(range(len(costs)), key=lambda i: costs[i].memory_bytes or 0, default=0)
    if not workers:
        if mode == "require":
            raise AdmissionError(
                f"no worker is online for {queue} to admit the set (circuit {which} needs "
                f"{human_bytes(need)}); start a worker, or pass admit='wait' to queue anyway",
                need_bytes=need,
                largest_bytes=None,
            )
        return
    short = shortfall(costs, workers, queue=queue)
    if short is not None:
        raise AdmissionError(
            short.message(), need_bytes=short.need_bytes, largest_bytes=short.largest_bytes
        )


@dataclass(frozen=True)
class Shortfall:
    """An experiment that needs more state memory than the largest live worker offers."""

    circuit: int
    need_bytes: int
    largest_bytes: int
    hostname: str
    queue: str

    def message(self) -> str:
        need, largest = self.need_bytes, self.largest_bytes
        return (
            f"circuit {self.circuit} needs {human_bytes(need)} ({need} bytes) of state memory, "
            f"more than any live worker offers: the largest for {self.queue}, {self.hostname}, "
            f"has {human_bytes(largest)} ({largest} bytes)"
        )


def shortfall(
    costs: Sequence[ExperimentCost], workers: Sequence[WorkerCapacity], *, queue: str
) -> Shortfall | None:
    """The largest experiment, when it needs more memory than every live worker of the
    set's class offers (None when it fits, or when a worker advertises no figure)."""
    workers = [w for w in workers if serves(w, queue)]
    if not workers or any(w.memory_bytes is None for w in workers):
        return None
    need = max((c.memory_bytes or 0 for c in costs), default=0)
    which = max(range(len(costs)), key=lambda i: costs[i].memory_bytes or 0, default=0)
    largest = largest_memory(workers)
    assert largest is not None and largest.memory_bytes is not None
    if need <= largest.memory_bytes:
        return None
    return Shortfall(which, need, largest.memory_bytes, largest.hostname, queue)


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
        out[batch.index] = owner_queue(queue, owner)
    return out
