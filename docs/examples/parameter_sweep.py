"""A parameter sweep: one ansatz at 64 points of a grid, spread over the cluster's workers.

Code written for qiskit-aer <= 0.14 swaps ``AerSimulator`` for ``DistributedAerSimulator``
and passes an executor; ``parameter_binds`` makes one experiment per point, and
``max_job_size`` puts 8 of them in each sub-job.  With a seed, the merged counts are
exactly those of one ``AerSimulator.run`` on this machine, which the example checks.

Start a local cluster, then run the example against its folder::

    jobset-cluster start --detach --dir ~/jobset-cluster
    python docs/examples/parameter_sweep.py ~/jobset-cluster

Without a folder it connects where the ``JOBSET_*`` variables say (README, Configuration).
"""

from __future__ import annotations

import sys

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, DistributedAerSimulator

SHOTS = 2000
SEED = 11


def connect() -> CeleryExecutor:
    """The cluster whose folder is the first argument, else the one JOBSET_* names."""
    return CeleryExecutor.from_cluster(sys.argv[1]) if len(sys.argv) > 1 else CeleryExecutor()


def ansatz(qubits: int = 6) -> tuple[QuantumCircuit, Parameter, Parameter]:
    """Two layers of rotations joined by a CX ladder, measured; two angles in all."""
    theta, phi = Parameter("theta"), Parameter("phi")
    circuit = QuantumCircuit(qubits, name="ansatz")
    for angle in (theta, phi):
        for q in range(qubits):
            circuit.ry(angle, q)
            circuit.rz(angle / 2, q)
        for q in range(qubits - 1):
            circuit.cx(q, q + 1)
    circuit.measure_all()
    return circuit, theta, phi


def parity(counts: dict[str, int]) -> float:
    """<Z...Z> from the counts: +1 for an even number of ones, -1 for odd."""
    even = sum(n for bits, n in counts.items() if bits.count("1") % 2 == 0)
    return (2 * even - SHOTS) / SHOTS


def main() -> int:
    circuit, theta, phi = ansatz()
    grid = np.linspace(0.0, np.pi, 8)
    thetas, phis = np.meshgrid(grid, grid, indexing="ij")
    binds = [{theta: thetas.ravel().tolist(), phi: phis.ravel().tolist()}]  # 64 points

    with connect() as executor:
        backend = DistributedAerSimulator(executor=executor, max_job_size=8)
        job = backend.run([circuit], parameter_binds=binds, shots=SHOTS, seed_simulator=SEED)
        print(f"job set {job.job_id()}: {len(job.plan.sub_batches)} sub-jobs")
        result = job.result(timeout=300)

    # The same sweep on this machine alone, in one run.
    local = AerSimulator().run([circuit], parameter_binds=binds, shots=SHOTS, seed_simulator=SEED)
    expected = local.result()
    points = thetas.size
    if [result.get_counts(i) for i in range(points)] != expected.get_counts():
        print("the counts differ from AerSimulator.run's", file=sys.stderr)
        return 1

    values = np.array([parity(result.get_counts(i)) for i in range(points)])
    low = int(np.argmin(values))
    where = f"theta={thetas.flat[low]:.3f}, phi={phis.flat[low]:.3f}"
    print(f"lowest <Z...Z> = {values[low]:+.3f} at {where}")
    print(
        f"summary: {points} experiments in {len(job.plan.sub_batches)} sub-jobs, "
        "counts equal to AerSimulator.run's"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
