"""``run()`` and ``DistributedAerSimulator``: the ways a user starts a job set."""

from __future__ import annotations

import concurrent.futures as cf
import uuid
from collections.abc import Sequence
from typing import Any

from qiskit_aer import AerSimulator

from .errors import InvalidInputError
from .execute import local_runner
from .executors import CeleryExecutor, local_slots
from .jobset import AerJobSet
from .plan import make_plan


def run(
    backend: Any,
    circuits: Any,
    *,
    executor: Any,
    max_job_size: int | None = None,
    max_shot_size: int | None = None,
    tags: Sequence[str] = (),
    **run_options: Any,
) -> AerJobSet:
    """Split ``circuits`` into sub-jobs, submit them on ``executor`` and return the set.

    ``backend`` is an ``AerSimulator`` (its options, noise model and target travel to the
    workers).  ``executor`` is a :class:`CeleryExecutor` or a ``concurrent.futures``
    executor.  ``max_job_size`` counts experiments per sub-job (``None``: the rule of
    :func:`jobset.plan.auto_job_size`); ``max_shot_size`` splits each experiment's shots.
    ``run_options`` are those of ``AerSimulator.run`` (``shots``, ``seed_simulator``,
    ``memory``, ``parameter_binds``, ...).  ``tags`` are stored with the set's record
    (see ``AerJobSet.list_sets``).  Everything is validated before anything is queued.
    """
    if isinstance(executor, CeleryExecutor):
        slots = executor.slots()
    elif isinstance(executor, cf.Executor):
        slots = local_slots(executor)
    else:
        raise InvalidInputError(
            "executor must be a CeleryExecutor or a concurrent.futures.Executor, "
            f"got {type(executor).__name__}"
        )
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
    plan = make_plan(
        circuits,
        shots=shots,
        max_job_size=max_job_size,
        max_shot_size=max_shot_size,
        seed_simulator=seed,
        parameter_binds=run_options.pop("parameter_binds", None),
        run_options=run_options,
        slots=slots,
    )
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
