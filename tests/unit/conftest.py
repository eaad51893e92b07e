"""Small circuits and helpers shared by the unit tests (no server, no Celery)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter
from qiskit.circuit.library import quantum_volume
from qiskit.result import Result
from qiskit_aer import AerSimulator

from jobset.executors.aer import run_sub_batch
from jobset.merge import merge_results
from jobset.plan import Plan


@pytest.fixture(scope="session")
def simulator() -> AerSimulator:
    return AerSimulator()


@pytest.fixture(scope="session")
def qv_circuits(simulator: AerSimulator) -> list[QuantumCircuit]:
    """Five 5-qubit quantum volume circuits: 32 outcomes, so memories differ between seeds."""
    circuits = []
    for seed in range(5):
        qc = quantum_volume(5, seed=seed)
        qc.measure_all()
        qc.name = f"qv{seed}"
        circuits.append(transpile(qc, simulator, optimization_level=0))
    return circuits


@pytest.fixture(scope="session")
def parametric_circuits() -> tuple[list[QuantumCircuit], list[Parameter]]:
    """Two 4-qubit circuits over the parameters (theta, phi)."""
    theta, phi = Parameter("theta"), Parameter("phi")
    circuits = []
    for k in range(2):
        qc = QuantumCircuit(4, name=f"param{k}")
        for q in range(4):
            qc.rx(theta * (q + 1 + k), q)
        for q in range(3):
            qc.cx(q, q + 1)
        for q in range(4):
            qc.ry(phi + q, q)
        qc.measure_all()
        circuits.append(qc)
    return circuits, [theta, phi]


@pytest.fixture
def run_plan() -> Callable[..., Result]:
    """Run every sub-batch of a plan in-process, as a worker would, and merge the results."""

    def run(backend: AerSimulator, plan: Plan) -> Result:
        results = {batch.index: run_sub_batch(backend, batch) for batch in plan.sub_batches}
        return merge_results(plan, results, job_id="set-1", time_taken=1.0)

    return run
