"""``run()`` and ``DistributedAerSimulator``: the ways a user starts a job set."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from . import admission
from .cost import balance_weights, circuit_costs
from .errors import InvalidInputError, VersionSkewWarning
from .executors import CeleryExecutor
from .jobset import AerJobSet
from .plan import make_plan
from .pools import check_executor, local_slots
from .protocol import Dispatch, owner_queue
from .publish import queue_for
from .simulate import local_runner
from .validate import check_submission


def preflight(
    backend: Any,
    circuits: Sequence[QuantumCircuit],
    run_options: Mapping[str, Any],
    *,
    executor: Any,
    stacklevel: int = 3,
) -> None:
    """The checks every submission passes before anything is queued.

    Instructions the simulator does not support, unknown run options, the noise model,
    and (with ``JOBSET_MAX_MEMORY_MB``) the memory each state needs raise
    :class:`~jobset.errors.InvalidInputError`; a :class:`~jobset.errors.VersionSkewWarning`
    says that workers are online but none runs this producer's versions.
    """
    celery = isinstance(executor, CeleryExecutor)
    check_submission(
        backend,
        circuits,
        run_options,
        max_memory_mb=executor.settings.max_memory_mb if celery else None,
    )
    if celery:
        skew = executor.version_skew()
        if skew is not None:
            warnings.warn(skew, VersionSkewWarning, stacklevel=stacklevel)


def run(
    backend: Any,
    circuits: Any,
    *,
    executor: Any,
    max_job_size: int | None = None,
    max_shot_size: int | None = None,
    tags: Sequence[str] = (),
    timeout_s: float | None = None,
    admit: str | None = None,
    owner: str | None = None,
    priority: str = "normal",
    cache_ttl_s: int | None = None,
    **run_options: Any,
) -> AerJobSet:
    """Split ``circuits`` into sub-jobs, submit them on ``executor`` and return the set.

    ``backend`` is an ``AerSimulator`` (its options, noise model and target travel to the
    workers).  ``executor`` is a :class:`CeleryExecutor`, a ``concurrent.futures``
    executor or a ``dask.distributed.Client`` (as in qiskit-aer 0.14).  ``max_job_size``
    counts experiments per sub-job (``None``: the rule of
    :func:`jobset.plan.auto_job_size`); ``max_shot_size`` splits each experiment's shots.
    ``run_options`` are those of ``AerSimulator.run`` (``shots``, ``seed_simulator``,
    ``memory``, ``parameter_binds``, ...).  ``tags`` are stored with the set's record
    (see ``AerJobSet.list_sets``).  ``timeout_s`` (Celery only) limits each sub-job's run:
    past it the sub-job ends in ERROR with a :class:`~jobset.errors.SubJobTimeoutError`
    message and its worker serves on.

    Everything is validated before anything is queued: the circuits, shots and split
    sizes, instructions the simulator does not support, unknown run options, the noise
    model, and (with ``JOBSET_MAX_MEMORY_MB``) the memory each circuit's state needs.  An
    unreachable broker raises :class:`~jobset.errors.BrokerUnavailableError` within the
    connect timeout.  A :class:`~jobset.errors.VersionSkewWarning` says that workers are
    online but none runs this producer's qiskit and qiskit-aer versions.

    Admission, routing and sharing (Celery only; see the README, "Admission, routing and
    fair share"): ``admit="wait"`` refuses with :class:`~jobset.errors.AdmissionError` a
    set whose largest experiment needs more memory than any live worker offers, and
    queues it when no worker is online; ``admit="require"`` refuses then too; ``None``
    (the default) checks nothing.  ``owner`` sends the sub-jobs to that owner's queue, so
    workers take turns between owners.  ``priority`` (``"normal"``, ``"low"`` or
    ``"lowest"``): workers take a set's sub-jobs only while no set of a higher priority
    waits in the queues they consume, whatever the owners; ``"normal"`` is the highest, so
    a big sweep steps back with ``"low"``.  ``cache_ttl_s`` reuses the result of a sub-job
    with the same circuits, options, seed and shots that ran in the last ``cache_ttl_s``
    seconds (give ``seed_simulator``: a drawn seed never repeats).  With
    ``max_job_size=None`` the split evens out the estimated work (:mod:`jobset.cost`)
    when experiments differ by more than a factor of two.
    """
    admit_mode = admission.check_admit_mode(admit)
    owner = admission.check_owner(owner)
    priority = admission.check_priority(priority)
    if cache_ttl_s is not None and (
        isinstance(cache_ttl_s, bool) or not isinstance(cache_ttl_s, int) or cache_ttl_s < 1
    ):
        raise InvalidInputError(f"cache_ttl_s must be a positive integer, got {cache_ttl_s!r}")
    admission.require_celery(
        isinstance(executor, CeleryExecutor),
        admit=admit_mode is not None,
        owner=owner is not None,
        priority=priority != "normal",
        cache_ttl_s=cache_ttl_s is not None,
    )
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0
    ):
        raise InvalidInputError(
            f"timeout_s must be a positive number of seconds, got {timeout_s!r}"
        )
    check_executor(executor)
    if isinstance(executor, CeleryExecutor):
        executor.check_reachable()
        slots = executor.slots()
    else:
        slots = local_slots(executor)
    if not hasattr(backend, "options") or not hasattr(backend, "run"):
        raise InvalidInputError(f"backend must be an AerSimulator, got {type(backend).__name__}")
    options = dict(backend.options.items())
    shots = run_options.pop("shots") if "shots" in run_options else options.get("shots") or 1024
    seed = (
        run_options.pop("seed_simulator")
        if "seed_simulator" in run_options
        else options.get("seed_simulator")
    )
    for name in ("executor", "max_job_size", "max_shot_size"):
        run_options.pop(name, None)
    if not isinstance(circuits, (QuantumCircuit, str, bytes)) and isinstance(circuits, Iterable):
        circuits = list(circuits)  # read once: the plan and the checks below both need it
    circuit_list = [circuits] if isinstance(circuits, QuantumCircuit) else circuits
    costs = None
    if isinstance(circuit_list, list) and all(isinstance(c, QuantumCircuit) for c in circuit_list):
        costs = circuit_costs(
            circuit_list,
            shots=shots if isinstance(shots, int) else 1,
            options=options | run_options,
        )
    plan = make_plan(
        circuits,
        shots=shots,
        max_job_size=max_job_size,
        max_shot_size=max_shot_size,
        seed_simulator=seed,
        parameter_binds=run_options.pop("parameter_binds", None),
        run_options=run_options,
        slots=slots,
        circuit_weights=balance_weights(costs) if costs and max_job_size is None else None,
    )
    preflight(
        backend,
        [circuits] if isinstance(circuits, QuantumCircuit) else circuits,
        run_options,
        executor=executor,
    )
    dispatch = None
    if isinstance(executor, CeleryExecutor):
        queue = queue_for(backend)
        routes = {}
        if costs is not None:
            workers = executor.workers()
            if admit_mode is not None:
                admission.admit(costs, workers, mode=admit_mode, queue=queue)
            routes = admission.routes(
                plan,
                [e.circuit for e in plan.experiments],
                costs,
                workers,
                default_queue=queue,
                large_memory_bytes=executor.settings.large_memory_mb * 1024 * 1024,
                owner=owner,
            )
        dispatch = Dispatch.from_routes(routes, queue=owner_queue(queue, owner), priority=priority)
    if isinstance(tags, str):
        tags = (tags,)
    job = AerJobSet(
        backend,
        str(uuid.uuid4()),
        local_runner(backend),
        plan.sub_batches,
        executor,
        plan=plan,
        tags=tags,
        timeout_s=timeout_s,
        dispatch=dispatch,
        cache_ttl_s=cache_ttl_s,
    )
    job.submit()
    return job


class DistributedAerSimulator(AerSimulator):
    """An ``AerSimulator`` whose ``run`` returns an :class:`AerJobSet` when ``executor`` is set.

    Code written for qiskit-aer <= 0.14 works by swapping the import::

        backend = DistributedAerSimulator(executor=CeleryExecutor(), max_job_size=1)
        job = backend.run(circuits, shots=1000)      # an AerJobSet

    Without an executor it is a plain ``AerSimulator``.
    """

    def run(self, circuits: Any, parameter_binds: Any = None, **run_options: Any) -> Any:
        executor = run_options.pop("executor", None) or self.options.get("executor")
        max_job_size = run_options.pop("max_job_size", None) or self.options.get("max_job_size")
        max_shot_size = run_options.pop("max_shot_size", None) or self.options.get("max_shot_size")
        if executor is None:
            return super().run(circuits, parameter_binds=parameter_binds, **run_options)
        if parameter_binds is not None:
            run_options["parameter_binds"] = parameter_binds
        return run(
            self,
            circuits,
            executor=executor,
            max_job_size=max_job_size,
            max_shot_size=max_shot_size,
            **run_options,
        )
