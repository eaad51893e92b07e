"""The V2 primitives on the cluster: an energy scan with EstimatorV2, then SamplerV2.

``jobset.primitives.EstimatorV2`` and ``SamplerV2`` are ``qiskit_aer.primitives``' with an
``executor``: the same options and results, the simulations spread over the workers.  The
estimator scans 40 parameter points of a small ansatz (``max_job_size=10`` points per
sub-job); the sampler draws 4 000 shots at the best point.  With the same seed both equal
Aer's own primitives run on this machine: the energies to rounding, the bit strings bit for
bit, which the example checks.

    jobset-cluster start --detach --dir ~/jobset-cluster
    python docs/examples/sampler_estimator.py ~/jobset-cluster    # or JOBSET_* variables
"""

from __future__ import annotations

import sys

import numpy as np
from qiskit.circuit.library import efficient_su2
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer.primitives import EstimatorV2 as AerEstimator
from qiskit_aer.primitives import SamplerV2 as AerSampler

from jobset import CeleryExecutor
from jobset.primitives import EstimatorV2, SamplerV2

SEED = 7


def connect() -> CeleryExecutor:
    """The cluster whose folder is the first argument, else the one JOBSET_* names."""
    return CeleryExecutor.from_cluster(sys.argv[1]) if len(sys.argv) > 1 else CeleryExecutor()


def main() -> int:
    ansatz = efficient_su2(4, reps=1)  # 16 parameters
    hamiltonian = SparsePauliOp.from_list(
        [("ZZII", 1.0), ("IZZI", 1.0), ("IIZZ", 1.0), ("XIII", 0.5), ("IXII", 0.5)]
    )
    points = np.random.default_rng(1).uniform(-np.pi, np.pi, (40, ansatz.num_parameters))
    estimator_pub = (ansatz, hamiltonian, points)
    options = {"run_options": {"seed_simulator": SEED}}

    with connect() as executor:
        estimator = EstimatorV2(executor=executor, options=options, max_job_size=10)
        energy_job = estimator.run([estimator_pub])
        print(f"estimator job {energy_job.job_id()}: {energy_job.job_set.progress()}")
        energies = energy_job.result(timeout=300)[0].data.evs
        best = points[int(np.argmin(energies))]

        sampler_pub = (ansatz.measure_all(inplace=False), best, 4000)
        sampler = SamplerV2(executor=executor, seed=SEED)
        bits = sampler.run([sampler_pub]).result(timeout=300)[0].data.meas

    # Aer's own primitives, in this process, with the same seed.
    aer_energies = AerEstimator(options=options).run([estimator_pub]).result()[0].data.evs
    aer_bits = AerSampler(seed=SEED).run([sampler_pub]).result()[0].data.meas
    if not np.allclose(energies, aer_energies, rtol=0, atol=1e-12):
        print("the energies differ from Aer's EstimatorV2", file=sys.stderr)
        return 1
    if bits != aer_bits:
        print("the samples differ from Aer's SamplerV2", file=sys.stderr)
        return 1

    top = max(bits.get_counts().items(), key=lambda item: item[1])
    print(f"lowest energy {energies.min():+.4f}; at that point {top[0]} came {top[1]} times")
    print(
        f"summary: {len(points)} energies and {bits.num_shots} samples equal to "
        "qiskit_aer.primitives' EstimatorV2 and SamplerV2"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
