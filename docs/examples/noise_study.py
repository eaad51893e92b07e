"""A noise study: how a GHZ state's fidelity falls with depth, its shots split over workers.

Each circuit prepares a 5-qubit GHZ state, then repeats a CX ladder and its inverse
``depth`` times (ideally nothing changes; with noise every CX adds error).  A depolarizing
noise model on the statevector method runs one trajectory per shot, so the cost grows
with the shots and ``max_shot_size`` is worth it: each experiment's 4 000 shots become
chunks of 1 500, 1 500 and the remaining 1 000, and the counts are summed back.

Chunk ``c`` runs with a seed derived from (seed, ``c``), so the counts are not those of the
unsplit run but a sample of the same distribution, the same on any number of workers and
recorded in the plan.  The example checks both: the fidelities agree with one unsplit
``AerSimulator.run`` within sampling error, and one chunk, run again on this machine from
its recorded seed, gives exactly the worker's counts.

    jobset-cluster start --detach --dir ~/jobset-cluster
    python docs/examples/noise_study.py ~/jobset-cluster    # or JOBSET_* variables
"""

from __future__ import annotations

import math
import sys

from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error

from jobset import CeleryExecutor, run

QUBITS = 5
DEPTHS = (0, 3, 6)
SHOTS = 8_000
SEED = 2024


def connect() -> CeleryExecutor:
    """The cluster whose folder is the first argument, else the one JOBSET_* names."""
    return CeleryExecutor.from_cluster(sys.argv[1]) if len(sys.argv) > 1 else CeleryExecutor()


def ghz_with_depth(depth: int) -> QuantumCircuit:
    circuit = QuantumCircuit(QUBITS, name=f"ghz-depth-{depth}")
    circuit.h(0)
    for q in range(QUBITS - 1):
        circuit.cx(q, q + 1)
    for _ in range(depth):
        for q in range(QUBITS - 1):
            circuit.cx(q, q + 1)
        for q in reversed(range(QUBITS - 1)):
            circuit.cx(q, q + 1)
    circuit.measure_all()
    return circuit


def fidelity(counts: dict[str, int]) -> float:
    """The share of shots in the two GHZ outcomes, 00000 and 11111."""
    return (counts.get("0" * QUBITS, 0) + counts.get("1" * QUBITS, 0)) / sum(counts.values())


def main() -> int:
    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(depolarizing_error(0.002, 1), ["h"])
    noise.add_all_qubit_quantum_error(depolarizing_error(0.02, 2), ["cx"])
    backend = AerSimulator(method="statevector", noise_model=noise)
    circuits = [ghz_with_depth(d) for d in DEPTHS]

    with connect() as executor:
        job = run(
            backend,
            circuits,
            executor=executor,
            max_job_size=1,
            max_shot_size=3_000,
            shots=SHOTS,
            seed_simulator=SEED,
        )
        result = job.result(timeout=300)
        sub_jobs = len(job.plan.sub_batches)
        chunk = job.plan.sub_batches[-1]  # the last, smaller chunk of the deepest circuit
        worker_counts = job.worker_results(chunk.index).get_counts()

    unsplit = backend.run(circuits, shots=SHOTS, seed_simulator=SEED).result()
    print(f"{'depth':>5}  {'fidelity':>8}  {'unsplit':>8}")
    for i, depth in enumerate(DEPTHS):
        counts = result.get_counts(i)
        if sum(counts.values()) != SHOTS:
            print(f"depth {depth}: {sum(counts.values())} shots, not {SHOTS}", file=sys.stderr)
            return 1
        f_split, f_unsplit = fidelity(counts), fidelity(unsplit.get_counts(i))
        print(f"{depth:5}  {f_split:8.4f}  {f_unsplit:8.4f}")
        # Two independent samples of SHOTS each: five standard errors of their difference.
        tolerance = 5 * math.sqrt(2 * f_unsplit * (1 - f_unsplit) / SHOTS)
        if abs(f_split - f_unsplit) > tolerance:
            print(f"depth {depth}: fidelity {f_split} vs {f_unsplit}", file=sys.stderr)
            return 1

    # Any chunk reruns exactly from what the plan recorded.
    rerun = backend.run(list(chunk.circuits), **chunk.run_kwargs()).result().get_counts()
    if rerun != worker_counts:
        print(f"sub-job {chunk.index} did not rerun exactly", file=sys.stderr)
        return 1
    print(
        f"summary: {len(circuits)} noisy circuits x {SHOTS} shots in {sub_jobs} sub-jobs, "
        "fidelities within sampling error of AerSimulator.run's, "
        f"sub-job {chunk.index} ({chunk.shots} shots) reruns exactly"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
