"""A job set on real Celery workers gives exactly the Result of one AerSimulator.run."""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest
from qiskit import QuantumCircuit, transpile
from qiskit.providers import JobStatus
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit_aer import AerSimulator

from jobset import DistributedAerSimulator, run

from .workloads import (
    assert_same_counts_and_memory,
    kraus_noise_model,
    parametric_circuit,
    qv_circuits,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("max_job_size", [1, 3, 7, 12, None])
def test_circuit_split_run_gives_exactly_the_unsplit_counts_and_memory(executor, max_job_size):
    circuits = qv_circuits(12)
    sim = AerSimulator()
    want = sim.run(circuits, shots=200, seed_simulator=11, memory=True).result()
    job = run(
        sim,
        circuits,
        executor=executor,
        max_job_size=max_job_size,
        shots=200,
        seed_simulator=11,
        memory=True,
    )
    got = job.result(timeout=120)
    assert job.status() is JobStatus.DONE
    assert got.job_id == job.job_id()
    assert got.success
    assert_same_counts_and_memory(got, want)


def test_a_wrong_seed_offset_changes_the_memory(executor):
    """Negative control: the exactness above is not an accident of low entropy."""
    circuits = qv_circuits(4)
    sim = AerSimulator()
    want = sim.run(circuits, shots=200, seed_simulator=11, memory=True).result()
    shifted = run(
        sim,
        circuits[1:],
        executor=executor,
        max_job_size=1,
        shots=200,
        seed_simulator=11,
        memory=True,
    ).result(timeout=120)
    assert shifted.get_memory(0) != want.get_memory(1)


@pytest.mark.parametrize("max_job_size", [1, 2, 5])
def test_parameter_binds_split_across_sub_jobs_match_the_unsplit_run(executor, max_job_size):
    qc, theta, phi = parametric_circuit()
    other, theta2, phi2 = parametric_circuit("other")
    binds = [
        {theta: list(np.linspace(0, 3, 5)), phi: list(np.linspace(1, 2, 5))},
        {theta2: [0.3, 0.7], phi2: [0.1, 0.2]},
    ]
    sim = AerSimulator()
    want = sim.run(
        [qc, other], parameter_binds=binds, shots=300, seed_simulator=5, memory=True
    ).result()
    job = run(
        sim,
        [qc, other],
        executor=executor,
        max_job_size=max_job_size,
        parameter_binds=binds,
        shots=300,
        seed_simulator=5,
        memory=True,
    )
    assert len(job.plan.experiments) == 7
    assert_same_counts_and_memory(job.result(timeout=120), want)


@pytest.mark.parametrize("max_job_size", [1, 4])
def test_noise_model_with_kraus_errors_reaches_the_workers_exactly(executor, max_job_size):
    sim = AerSimulator(noise_model=kraus_noise_model())
    circuits = [transpile(c, sim) for c in qv_circuits(6, qubits=4)]
    want = sim.run(circuits, shots=300, seed_simulator=3, memory=True).result()
    job = run(
        sim,
        circuits,
        executor=executor,
        max_job_size=max_job_size,
        shots=300,
        seed_simulator=3,
        memory=True,
    )
    assert_same_counts_and_memory(job.result(timeout=120), want)


def test_from_backend_target_and_noise_reach_the_workers_exactly(executor):
    device = GenericBackendV2(num_qubits=5, seed=42)
    sim = AerSimulator.from_backend(device)
    circuits = [transpile(c, device, seed_transpiler=1) for c in qv_circuits(4, qubits=3)]
    want = sim.run(circuits, shots=300, seed_simulator=9, memory=True).result()
    job = run(
        sim, circuits, executor=executor, max_job_size=1, shots=300, seed_simulator=9, memory=True
    )
    got = job.result(timeout=120)
    assert_same_counts_and_memory(got, want)
    assert got.backend_name == want.backend_name


def test_save_instructions_control_flow_and_density_matrices_come_back_exactly(executor):
    sv = QuantumCircuit(3, name="saves")
    sv.h(0)
    sv.cx(0, 1)
    sv.ry(0.3, 2)
    sv.save_statevector()
    sv.save_expectation_value(
        __import__("qiskit.quantum_info", fromlist=["Pauli"]).Pauli("ZZI"), [0, 1, 2]
    )
    flow = QuantumCircuit(2, 2, name="flow")
    flow.h(0)
    flow.measure(0, 0)
    with flow.if_test((flow.clbits[0], 1)):
        flow.x(1)
    flow.measure(1, 1)
    dm = QuantumCircuit(2, name="dm")
    dm.h(0)
    dm.cx(0, 1)
    dm.save_density_matrix()

    for sim, circuits in (
        (AerSimulator(method="statevector"), [sv, flow]),
        (AerSimulator(method="density_matrix"), [dm]),
    ):
        want = sim.run(circuits, shots=100, seed_simulator=1).result()
        got = run(
            sim, circuits, executor=executor, max_job_size=1, shots=100, seed_simulator=1
        ).result(timeout=120)
        for i, circuit in enumerate(circuits):
            want_data, got_data = want.data(i), got.data(i)
            assert set(got_data) == set(want_data), circuit.name
            for key, value in want_data.items():
                if hasattr(value, "data"):
                    assert np.array_equal(got_data[key].data, value.data), key
                else:
                    assert got_data[key] == value, key


def test_shot_split_keeps_every_shot_and_is_the_same_for_any_job_size_and_worker_count(
    executor,
):
    circuits = qv_circuits(3)
    sim = AerSimulator()
    runs = [
        run(
            sim,
            circuits,
            executor=executor,
            max_job_size=size,
            max_shot_size=300,
            shots=1000,
            seed_simulator=21,
            memory=True,
        ).result(timeout=120)
        for size in (1, 3)
    ]
    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        local = run(
            sim,
            circuits,
            executor=pool,
            max_job_size=2,
            max_shot_size=300,
            shots=1000,
            seed_simulator=21,
            memory=True,
        ).result()
    for result in (*runs, local):
        for i in range(3):
            assert result.results[i].shots == 1000
            assert sum(result.get_counts(i).values()) == 1000
            assert len(result.get_memory(i)) == 1000
    assert_same_counts_and_memory(runs[1], runs[0])
    assert_same_counts_and_memory(local, runs[0])


def test_a_set_without_seed_records_the_drawn_seed_and_can_be_reproduced(executor):
    circuits = qv_circuits(2)
    sim = AerSimulator()
    first = run(sim, circuits, executor=executor, max_shot_size=100, shots=250, memory=True)
    assert first.plan.seed_drawn
    again = run(
        sim,
        circuits,
        executor=executor,
        max_shot_size=100,
        shots=250,
        memory=True,
        seed_simulator=first.plan.seed_simulator,
    )
    assert_same_counts_and_memory(again.result(timeout=120), first.result(timeout=120))


def test_distributed_simulator_is_a_drop_in_for_old_executor_code(executor):
    circuits = qv_circuits(4)
    backend = DistributedAerSimulator(executor=executor, max_job_size=1)
    job = backend.run(circuits, shots=200, seed_simulator=2, memory=True)
    want = AerSimulator().run(circuits, shots=200, seed_simulator=2, memory=True).result()
    assert type(job).__name__ == "AerJobSet"
    assert len(job.plan.sub_batches) == 4
    job.wait_for_final_state(timeout=120, wait=0.5)
    assert job.done() and job.in_final_state() and not job.running() and not job.cancelled()
    assert_same_counts_and_memory(job.result(), want)
    plain = DistributedAerSimulator().run(circuits[0], shots=10)
    assert type(plain).__name__ == "AerJob"
