"""Distributed Qiskit primitives: ``SamplerV2`` and ``EstimatorV2`` over a job set.

::

    from jobset import CeleryExecutor
    from jobset.primitives import EstimatorV2, SamplerV2

    options = {"run_options": {"seed_simulator": 7}}
    estimator = EstimatorV2(executor=CeleryExecutor(), options=options)
    job = estimator.run([(ansatz, hamiltonian, parameter_values)])
    job.status(); job.result()[0].data.evs; job.cancel()

They take the options of ``qiskit_aer.primitives.SamplerV2`` / ``EstimatorV2`` and make the
same ``AerSimulator.run`` calls, with the same circuits, binds, shots and seeds; those
calls are split into sub-jobs (across PUBs, across the parameter-value sets of a PUB, and
across shots with ``max_shot_size``) and run as one :class:`~jobset.AerJobSet`, whose id is
the job's id.  Results are rebuilt with Aer's own postprocessing, so with a seed and no
shot splitting they equal Aer's bit for bit (sampler) or to rounding (estimator).  See
:mod:`jobset.primitives.layout` for the planning, the merge and where the estimator's
precision noise is drawn.  Not exported from :mod:`jobset` itself: import this module.
"""

from .estimator import EstimatorOptions, EstimatorV2
from .job import DistributedPrimitiveJob
from .sampler import SamplerOptions, SamplerV2

__all__ = [
    "DistributedPrimitiveJob",
    "EstimatorOptions",
    "EstimatorV2",
    "SamplerOptions",
    "SamplerV2",
]
