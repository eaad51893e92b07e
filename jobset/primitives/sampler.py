"""``SamplerV2``: Aer's sampler, its runs split across the job set's workers."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qiskit.primitives import BaseSamplerV2, PrimitiveJob
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit_aer.primitives import SamplerV2 as AerSamplerV2

from .base import (
    DistributedPrimitive,
    check_init_arguments,
    checked_options,
    empty_job,
    option_fields,
)
from .job import DistributedPrimitiveJob
from .layout import clean_run_options, plan_sampler, resolve_seed


@dataclass
class SamplerOptions:
    """Options for :class:`SamplerV2`: those of ``qiskit_aer.primitives.SamplerV2``."""

    backend_options: dict[str, Any] = field(default_factory=dict)
    """Options passed to ``AerSimulator``."""

    run_options: dict[str, Any] = field(default_factory=dict)
    """Options passed to ``AerSimulator.run``."""


class SamplerV2(DistributedPrimitive, BaseSamplerV2):
    """``qiskit_aer.primitives.SamplerV2`` whose simulations run as a job set.

    Takes Aer's arguments (``default_shots``, ``seed``, ``options`` with
    ``backend_options`` and ``run_options``; :meth:`from_backend`) plus where and how to
    split: ``executor`` (a :class:`~jobset.CeleryExecutor`, a ``concurrent.futures``
    executor or a ``dask.distributed.Client``; without one this is Aer's own sampler,
    jobs and all), ``max_job_size`` (parameter-value sets per sub-job; ``None`` spreads the job
    over about two sub-jobs per worker slot), ``max_shot_size`` (shots per sub-job),
    ``tags`` (stored with the job's record), and on Celery ``owner``, ``priority``,
    ``admit`` and ``cache_ttl_s``, which mean what they mean for :func:`jobset.run`
    (a job goes through the same submit path, size-class routing included).

    With a seed and no shot splitting, ``run(pubs).result()`` equals Aer's
    ``SamplerV2(seed=...)`` result bit for bit, for any ``max_job_size`` and number of
    workers.  With ``max_shot_size`` the shot chunks get seeds derived from (seed, chunk),
    so the result depends only on the seed and ``max_shot_size``.  Without a seed (here,
    in ``run_options["seed_simulator"]`` or in the backend options) one is drawn at submit
    and recorded: ``job.seed`` reproduces the run.
    """

    def __init__(
        self,
        *,
        executor: Any = None,
        default_shots: int = 1024,
        seed: int | None = None,
        options: dict[str, Any] | None = None,
        max_job_size: int | None = None,
        max_shot_size: int | None = None,
        tags: Sequence[str] = (),
        owner: str | None = None,
        priority: str = "normal",
        admit: str | None = None,
        cache_ttl_s: int | None = None,
        **unknown: Any,
    ) -> None:
        self._default_shots = default_shots
        self._seed = seed
        check_init_arguments(self, unknown)
        self._options = checked_options(type(self).__name__, SamplerOptions, options)
        super().__init__(
            executor=executor,
            backend_options=self._options.backend_options,
            max_job_size=max_job_size,
            max_shot_size=max_shot_size,
            tags=tags,
            owner=owner,
            priority=priority,
            admit=admit,
            cache_ttl_s=cache_ttl_s,
        )

    @property
    def default_shots(self) -> int:
        """Shots of a PUB that gives none, when ``run`` gives none either."""
        return self._default_shots

    @property
    def seed(self) -> int | None:
        """The seed of the simulations; ``None`` draws one per job."""
        return self._seed

    @property
    def options(self) -> SamplerOptions:
        return self._options

    def run(
        self, pubs: Iterable[Any], *, shots: int | None = None
    ) -> DistributedPrimitiveJob | PrimitiveJob[Any]:
        """Validate ``pubs`` as Qiskit does, split them into sub-jobs and submit them.

        Everything is checked before anything is queued: Qiskit's own PUB coercion and
        validation (its ``ValueError`` / ``TypeError``), then shots, seeds and split sizes
        (:class:`~jobset.InvalidInputError`).  An empty list of PUBs gives Aer's empty
        result at once.  Without an executor this is Aer's ``SamplerV2.run``, and its job.
        """
        if self._executor is None:
            return self._aer_primitive(
                AerSamplerV2,
                default_shots=self._default_shots,
                seed=self._seed,
                options=option_fields(self._options),
            ).run(pubs, shots=shots)
        if shots is None:
            shots = self._default_shots
        coerced = [SamplerPub.coerce(pub, shots) for pub in pubs]
        for i, pub in enumerate(coerced):
            if len(pub.circuit.cregs) == 0:
                # The same warning as Aer's sampler: the PUB's result will be empty.
                warnings.warn(
                    f"The {i}-th pub's circuit has no output classical registers and so the "
                    "result will be empty. Did you mean to add measurement instructions?",
                    UserWarning,
                    stacklevel=2,
                )
        if not coerced:
            return empty_job()
        run_options = dict(self._options.run_options)
        # As Aer: the sampler's seed wins over run_options, which wins over the backend's.
        seed = self._seed
        run_seed = run_options.get("seed_simulator")
        if seed is None:
            seed = run_seed if run_seed is not None else self._backend.options.get("seed_simulator")
        base_seed, drawn = resolve_seed(seed)
        plan, record = plan_sampler(
            coerced,
            seed=base_seed,
            seed_drawn=drawn,
            run_options=clean_run_options(run_options),
            max_job_size=self._max_job_size,
            max_shot_size=self._max_shot_size,
            slots=self._slots(),
        )
        return self._submit(plan, record)
