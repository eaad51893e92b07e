"""``run()`` and ``DistributedAerSimulator``: the ways a user starts a job set."""

from __future__ import annotations

import uuid
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator
from qiskit_aer.aererror import AerError

from .cost import (
    QUEUE_COST_WORK,
    TARGET_SUB_JOB_WORK,
    balance_weights,
    circuit_costs,
    job_size_for_work,
    resolved_method,
    scan,
)
from .errors import AdmissionWarning, InvalidInputError, PerformanceWarning, VersionSkewWarning
from .executors.admission import PlanCosts
from .executors.aer import local_runner
from .executors.base import Executor, SetRequest, SubmitOptions
from .executors.pools import as_executor
from .jobset import AerJobSet
from .observe import tracing
from .plan import Plan, make_plan
from .protocol import Kind
from .validate import check_submission, did_you_mean


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
    sizes, parameters left unbound, instructions the simulator does not support, unknown
    run options and values Aer's ``run`` refuses (method, precision, option types), the
    noise model, and (with ``JOBSET_MAX_MEMORY_MB``) the memory each circuit's state needs.  An
    unreachable broker raises :class:`~jobset.errors.BrokerUnavailableError` within the
    connect timeout.  A :class:`~jobset.errors.VersionSkewWarning` says that workers are
    online but none runs this producer's qiskit and qiskit-aer versions.

    Admission, routing and sharing (Celery only; see docs/admission.md): ``admit="wait"``
    refuses with :class:`~jobset.errors.AdmissionError` a set whose largest experiment
    needs more memory than any live worker offers, and queues it when no worker is
    online; ``admit="require"`` refuses then too; ``None`` (the default) queues the set
    but warns (:class:`~jobset.errors.AdmissionWarning`) when a circuit needs more memory
    than the largest live worker offers.
    ``owner`` sends the sub-jobs to that owner's queue, so workers take turns between
    owners.  ``priority`` (``"normal"``, ``"low"`` or ``"lowest"``): workers take a set's
    sub-jobs only while no set of a higher priority waits in the queues they consume,
    whatever the owners; ``"normal"`` is the highest, so a big sweep steps back with
    ``"low"``.  ``cache_ttl_s`` reuses the result of a sub-job with the same circuits,
    options, seed and shots that ran in the last ``cache_ttl_s`` seconds (give
    ``seed_simulator``: a drawn seed never repeats).  With ``max_job_size=None`` the split
    evens out the estimated work (:mod:`jobset.cost`) when experiments differ by more
    than a factor of two.
    """
    target = as_executor(executor)
    options = SubmitOptions.check(
        tags=tags,
        timeout_s=timeout_s,
        admit=admit,
        owner=owner,
        priority=priority,
        cache_ttl_s=cache_ttl_s,
    )
    target.check_options(options)
    target.check_reachable()
    with tracing.run_span("jobset.run", backend=getattr(backend, "name", None)):
        with tracing.span("jobset.plan"):
            plan, costs = _plan(backend, circuits, run_options, max_job_size, max_shot_size, target)
        return submit_plan(backend, plan, target, options=options, costs=costs)


def _plan(
    backend: Any,
    circuits: Any,
    run_options: dict[str, Any],
    max_job_size: int | None,
    max_shot_size: int | None,
    target: Executor,
) -> tuple[Plan, PlanCosts | None]:
    """The split of ``circuits``, and their estimated costs when they are circuits."""
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
        slots=target.slots(),
        circuit_weights=balance_weights(costs) if costs and max_job_size is None else None,
        circuit_work=[c.work for c in costs] if costs and max_job_size is None else None,
    )
    if costs is None:
        return plan, None
    if max_job_size is not None:
        warn_small_sub_jobs(plan, [c.work for c in costs])
    if len(plan.chunk_shots) > 1:
        warn_repeated_runs(plan, circuit_list, costs, options | run_options)
    return plan, PlanCosts(costs, [e.circuit for e in plan.experiments])


def warn_small_sub_jobs(plan: Plan, circuit_work: Sequence[float], stacklevel: int = 4) -> None:
    """Warn (:class:`~jobset.errors.PerformanceWarning`) when the caller's split leaves
    sub-jobs whose estimated work is below the queue's own cost per sub-job."""
    if not plan.experiments or not plan.sub_batches:
        return
    total = sum(float(circuit_work[e.circuit]) for e in plan.experiments)
    per_sub_job = total / len(plan.sub_batches)
    if per_sub_job >= QUEUE_COST_WORK:
        return
    per_experiment = total / len(plan.experiments)
    whole = per_experiment * len(plan.chunk_shots)  # one experiment, all its shots
    better = job_size_for_work(whole, len(plan.experiments))
    warnings.warn(
        f"{len(plan.sub_batches)} sub-jobs of about {per_sub_job / QUEUE_COST_WORK:.2f}x the "
        f"queue's own cost per sub-job each (estimated work {per_sub_job:.3g} against "
        f"{QUEUE_COST_WORK:.3g}, jobset.cost): the queue costs more than the simulation. "
        f"max_job_size={better}{' with no max_shot_size' if len(plan.chunk_shots) > 1 else ''}"
        f" would give sub-jobs of about {better * whole / QUEUE_COST_WORK:.1f}x it (the "
        f"target is {TARGET_SUB_JOB_WORK / QUEUE_COST_WORK:.0f}x), and max_job_size=None "
        "sizes them by cost",
        PerformanceWarning,
        stacklevel=stacklevel,
    )


# A shot split whose chunks together cost more than this many times the unsplit run warns.
SPLIT_WASTE_RATIO = 1.5


def warn_repeated_runs(
    plan: Plan,
    circuits: Sequence[QuantumCircuit],
    costs: Sequence[Any],
    options: dict[str, Any],
    stacklevel: int = 4,
) -> None:
    """Warn (:class:`~jobset.errors.PerformanceWarning`) when the caller's shot split makes
    every chunk repeat a simulation whose cost does not grow with shots (a density matrix,
    which Aer picks for small noisy circuits, or a noiseless state sampled once)."""
    whole = sum(c.work for c in costs)
    split = 0.0
    for shots, count in Counter(plan.chunk_shots).items():
        split += count * sum(c.work for c in circuit_costs(circuits, shots=shots, options=options))
    if whole <= 0 or split <= SPLIT_WASTE_RATIO * whole:
        return
    scans = [scan(c) for c in circuits]
    noise = options.get("noise_model")
    noisy = noise is not None and not getattr(noise, "is_ideal", lambda: False)()
    methods = sorted(
        {
            resolved_method(seen, str(options.get("method") or "automatic"), shots=s, noisy=noisy)
            for seen in scans
            for s in set(plan.chunk_shots)
        }
    )
    warnings.warn(
        f"max_shot_size splits {plan.shots} shots into {len(plan.chunk_shots)} chunks, but Aer "
        f"runs these circuits with method {', '.join(methods)}, whose cost does not grow with "
        f"shots: each chunk repeats the whole simulation, {split / whole:.1f}x the estimated "
        "work of one run (jobset.cost). max_shot_size=None runs each circuit once; for noisy "
        "trajectories whose cost grows with shots, set method='statevector'",
        PerformanceWarning,
        stacklevel=stacklevel,
    )


def submit_plan(
    backend: Any,
    plan: Plan,
    target: Executor,
    *,
    options: SubmitOptions,
    costs: PlanCosts | None = None,
    records: Sequence[tuple[Kind, Any]] = (),
    stacklevel: int = 3,
) -> AerJobSet:
    """Check a planned set as every submission is checked, then submit it as one job set.

    Shared by :func:`run` and the primitives, so every option works for both.
    Instructions the simulator does not support, unknown run options, the noise model,
    and (with ``JOBSET_MAX_MEMORY_MB``) the memory each state needs raise
    :class:`~jobset.errors.InvalidInputError`; a :class:`~jobset.errors.VersionSkewWarning`
    says that workers are online but none runs this producer's versions.  ``records``
    are stored (signed) before the first sub-job is published.
    """
    circuits = list({id(c): c for b in plan.sub_batches for c in b.circuits}.values())
    run_options = plan.sub_batches[0].run_options if plan.sub_batches else {}
    check_submission(backend, circuits, run_options, max_memory_mb=target.max_memory_mb())
    skew = target.version_skew()
    if skew is not None:
        warnings.warn(skew, VersionSkewWarning, stacklevel=stacklevel)
    short = target.memory_shortfall(backend, costs) if costs and options.admit is None else None
    if short is not None:
        warnings.warn(
            f"{short}; it may fail there (\"Insufficient memory\"): pass admit='wait' (or "
            "'require') to refuse such a set before it is queued",
            AdmissionWarning,
            stacklevel=stacklevel,
        )
    job = AerJobSet(
        backend,
        str(uuid.uuid4()),
        local_runner(backend),
        plan.sub_batches,
        target,
        plan=plan,
        options=options,
    )
    # One trace per set: run() opened its root span; a primitive's submit opens it here.
    with tracing.run_span("jobset.run", backend=getattr(backend, "name", None)):
        tracing.annotate(
            jobset_id=job.job_id(),
            sub_jobs=len(plan.sub_batches),
            experiments=len(plan.experiments),
        )
        request = SetRequest(
            job.job_id(),
            backend,
            plan,
            job.fn,
            options,
            costs,
            tuple(records),
            trace_parent=tracing.current_traceparent(),
        )
        with tracing.span("jobset.submit", jobset_id=job.job_id()):
            job.start(request)
    return job


class DistributedAerSimulator(AerSimulator):
    """An ``AerSimulator`` whose ``run`` returns an :class:`AerJobSet` when ``executor`` is set.

    Code written for qiskit-aer <= 0.14 works by swapping the import::

        backend = DistributedAerSimulator(executor=CeleryExecutor(), max_job_size=1)
        job = backend.run(circuits, shots=1000)      # an AerJobSet

    Without an executor it is a plain ``AerSimulator``.
    """

    def set_option(self, key: str, value: Any) -> None:
        """Aer's ``set_option``; an unknown name raises Aer's ``AerError`` with the closest
        option's name, as :func:`run` answers an unknown run option."""
        try:
            super().set_option(key, value)
        except AerError as e:
            if e.message != f"Invalid option {key}":
                raise
            valid = dict(self.options.items())
            raise AerError(
                f"Invalid option {key!r} for {type(self).__name__}{did_you_mean(key, valid)}"
            ) from None

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
