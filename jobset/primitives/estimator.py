"""``EstimatorV2``: Aer's estimator, its runs split across the job set's workers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qiskit.primitives import BaseEstimatorV2, PrimitiveJob
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit_aer.primitives import EstimatorV2 as AerEstimatorV2

from .base import (
    DistributedPrimitive,
    check_init_arguments,
    checked_options,
    empty_job,
    option_fields,
)
from .job import DistributedPrimitiveJob
from .layout import clean_run_options, plan_estimator, positive_or_none, resolve_seed

DEFAULT_SHOTS = 1024  # AerSimulator's own default


@dataclass
class EstimatorOptions:
    """Options for :class:`EstimatorV2`: those of ``qiskit_aer.primitives.EstimatorV2``."""

    default_precision: float = 0.0
    """The precision of a PUB that gives none, when ``run`` gives none either."""

    backend_options: dict[str, Any] = field(default_factory=dict)
    """Options passed to ``AerSimulator``."""

    run_options: dict[str, Any] = field(default_factory=dict)
    """Options passed to ``AerSimulator.run`` (``seed_simulator``, ``shots``, ...)."""


class EstimatorV2(DistributedPrimitive, BaseEstimatorV2):
    """``qiskit_aer.primitives.EstimatorV2`` whose simulations run as a job set.

    Takes Aer's ``options`` (``default_precision``, ``backend_options``, ``run_options``;
    the seed is ``run_options["seed_simulator"]``, as in Aer; :meth:`from_backend`) plus
    ``executor``, ``max_job_size`` (parameter-value sets per sub-job), ``max_shot_size``,
    ``tags``, ``owner``, ``priority``, ``admit`` and ``cache_ttl_s``, as
    :class:`~jobset.primitives.SamplerV2` (without
    an executor it is Aer's own estimator).

    Aer runs each PUB as one simulation of its circuit with a ``save_expectation_value``
    per Pauli, and so does this: a PUB's parameter-value sets are spread over sub-jobs,
    and every sub-job holds part of one PUB.  With a seed and no shot splitting, ``evs``
    equal Aer's to floating-point rounding, ``precision`` noise included.

    Where the noise is added: in the producer, after the merge, from one generator per PUB
    seeded with ``run_options["seed_simulator"]`` as Aer seeds it, over the PUB's whole
    ``evs`` array; so a split run draws exactly Aer's noise, and ``stds`` are the target
    precision, as in Aer.  Without a seed in ``run_options`` Aer's noise is unseeded; here
    it is seeded with the job's seed (the backend's, or one drawn and recorded).

    ``max_shot_size`` splits each PUB's shots (``run_options["shots"]``, else the
    backend's, 1024 by default) into chunks with seeds derived from (seed, chunk); each
    chunk's saved expectation value is the mean over its shots, so the merged value is the
    shot-weighted mean of the chunks, the mean over all shots.  That only matters when the
    value is estimated from shots (a noise model on the statevector method); ideal
    simulations compute it exactly whatever the shots.
    """

    def __init__(
        self,
        *,
        executor: Any = None,
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
        check_init_arguments(self, unknown)
        self._options = checked_options(type(self).__name__, EstimatorOptions, options)
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
    def options(self) -> EstimatorOptions:
        return self._options

    def run(
        self, pubs: Iterable[Any], *, precision: float | None = None
    ) -> DistributedPrimitiveJob | PrimitiveJob[Any]:
        """Validate ``pubs`` as Qiskit does, split them into sub-jobs and submit them.

        Everything is checked before anything is queued: Qiskit's own PUB coercion and
        validation (observables on the wrong number of qubits, shape mismatches, negative
        precision: its ``ValueError`` / ``TypeError``), then shots, seeds and split sizes
        (:class:`~jobset.InvalidInputError`).  An empty list of PUBs gives Aer's empty
        result at once.  Without an executor this is Aer's ``EstimatorV2.run``, and its job.
        """
        if self._executor is None:
            return self._aer_primitive(AerEstimatorV2, options=option_fields(self._options)).run(
                pubs, precision=precision
            )
        if precision is None:
            precision = self._options.default_precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        for i, pub in enumerate(coerced):
            if pub.precision < 0.0:  # Aer's own check, should coercion ever let one through
                raise ValueError(f"The {i}-th pub has precision less than 0 ({pub.precision}).")
        if not coerced:
            return empty_job()
        run_options = dict(self._options.run_options)
        backend_options = self._backend.options
        shots = run_options["shots"] if "shots" in run_options else backend_options.get("shots")
        run_seed = run_options.get("seed_simulator")
        seed = run_seed if run_seed is not None else backend_options.get("seed_simulator")
        base_seed, drawn = resolve_seed(seed)
        plan, record = plan_estimator(
            coerced,
            shots=positive_or_none("shots", DEFAULT_SHOTS if shots is None else shots) or 0,
            seed=base_seed,
            seed_drawn=drawn,
            run_options=clean_run_options(run_options),
            max_job_size=self._max_job_size,
            max_shot_size=self._max_shot_size,
            slots=self._slots(),
        )
        return self._submit(plan, record)
