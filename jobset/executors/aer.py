"""Run one sub-batch on an Aer simulator: the work a worker (or a local executor) does."""

from __future__ import annotations

import copy
from typing import Any

from qiskit import QuantumCircuit
from qiskit.result import Result

from ..plan import SubBatch

# Options that configure the distribution, not the simulation: they never reach a worker.
DISTRIBUTION_OPTIONS = ("executor", "max_job_size", "max_shot_size")


def portable_backend(backend: Any) -> Any:
    """A copy of ``backend`` without the executor and split options, fit to be pickled.

    An executor does not pickle, and a worker must not split again.  The caller's backend
    is left untouched.
    """
    clone = copy.copy(backend)
    options = copy.copy(backend.options)
    clone._options = options
    present = {name: None for name in DISTRIBUTION_OPTIONS if name in dict(options.items())}
    if present:
        options.update_options(**present)
    return clone


def run_sub_batch(backend: Any, batch: SubBatch, *, threads: int | None = None) -> Result:
    """Run ``batch`` on ``backend`` and return Aer's ``Result``.

    ``threads`` caps Aer's OpenMP threads for this run, so that concurrent runs on one
    machine never ask for more threads than it has cores.
    """
    kwargs = batch.run_kwargs()
    if threads is not None:
        requested = kwargs.get("max_parallel_threads") or backend.options.get(
            "max_parallel_threads", 0
        )
        kwargs["max_parallel_threads"] = min(requested, threads) if requested else threads
    circuits = list(batch.circuits)
    if batch.pad_clbits:
        # Last, so every real experiment keeps its seed; see jobset.plan on pad_clbits.
        circuits.append(QuantumCircuit(1, batch.pad_clbits, name="jobset-pad"))
        if "parameter_binds" in kwargs:
            kwargs["parameter_binds"].append({})
    result = backend.run(circuits, **kwargs).result()
    if batch.pad_clbits:
        result.results = result.results[:-1]
    return result


def local_runner(backend: Any) -> Any:
    """The ``fn`` of a job set on a ``concurrent.futures`` executor: sub-batch -> Result."""
    return _LocalRunner(portable_backend(backend))


class _LocalRunner:
    """Picklable callable, so a ``ProcessPoolExecutor`` can run sub-batches too."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def __call__(self, batch: SubBatch) -> Result:
        return run_sub_batch(self.backend, batch)
