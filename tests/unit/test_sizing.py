"""Sets sized by cost: the automatic split pays the queue for every sub-job it makes, and an
explicit split that does not is warned about, with the size that would."""

from __future__ import annotations

import warnings

import pytest
from qiskit import QuantumCircuit, transpile
from qiskit.circuit.library import quantum_volume
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error

from jobset import PerformanceWarning
from jobset.cost import (
    QUEUE_COST_WORK,
    SHOT_WORK,
    SPREAD_SUB_JOB_WORK,
    TARGET_SUB_JOB_WORK,
    circuit_costs,
    job_size_for_work,
    resolved_method,
    scan,
    sub_jobs_for_work,
)
from jobset.plan import make_plan
from jobset.simulator import _plan


class Slots:
    """An executor stand-in that only answers how many worker slots it has."""

    def __init__(self, slots: int) -> None:
        self._slots = slots

    def slots(self) -> int:
        return self._slots


def bells(n: int) -> list[QuantumCircuit]:
    base = QuantumCircuit(2, name="bell")
    base.h(0)
    base.cx(0, 1)
    base.measure_all()
    return [base.copy(name=f"bell{i}") for i in range(n)]


def test_the_target_is_far_above_the_queues_own_cost():
    assert TARGET_SUB_JOB_WORK >= 50 * QUEUE_COST_WORK
    assert SPREAD_SUB_JOB_WORK >= 10 * QUEUE_COST_WORK


@pytest.mark.parametrize("slots", [1, 2, 8, 64])
@pytest.mark.parametrize("total", [0.0, 1e5, 3e7, 1e9, 1e11])
def test_the_automatic_split_never_makes_a_sub_job_below_the_spread_work(slots, total):
    count = sub_jobs_for_work(total, slots)
    assert count >= 1
    if count > 1:
        assert total / count >= SPREAD_SUB_JOB_WORK
    if count > slots:
        assert total / count >= TARGET_SUB_JOB_WORK


def test_work_that_fills_every_slot_at_the_target_is_not_cut_finer():
    assert sub_jobs_for_work(10 * TARGET_SUB_JOB_WORK, 4) == 10


def test_work_below_the_target_spreads_over_idle_slots_while_each_pays_the_queue():
    assert sub_jobs_for_work(4 * SPREAD_SUB_JOB_WORK, 8) == 4
    assert sub_jobs_for_work(0.5 * SPREAD_SUB_JOB_WORK, 8) == 1


def test_thousands_of_tiny_circuits_become_a_few_sub_jobs_not_one_per_slot_pair():
    circuits = bells(2000)
    work = [c.work for c in circuit_costs(circuits, shots=1, options={})]
    plan = make_plan(circuits, shots=1, seed_simulator=1, slots=64, circuit_work=work)
    assert len(plan.sub_batches) < 64 * 2
    assert sum(work) / len(plan.sub_batches) >= SPREAD_SUB_JOB_WORK


def test_sub_jobs_that_pay_the_queue_many_times_over_keep_the_count_rule():
    circuits = bells(16)
    work = [4 * TARGET_SUB_JOB_WORK] * 16
    by_count = make_plan(circuits, shots=1000, seed_simulator=1, slots=4)
    by_work = make_plan(circuits, shots=1000, seed_simulator=1, slots=4, circuit_work=work)
    assert len(by_work.sub_batches) == len(by_count.sub_batches) == 8


def test_an_explicit_split_of_tiny_circuits_warns_with_the_size_that_fixes_it():
    with pytest.warns(PerformanceWarning, match=r"max_job_size=(\d+)") as caught:
        _plan(AerSimulator(), bells(200), {"shots": 1}, 1, None, Slots(2))
    message = str(caught[0].message)
    assert "200 sub-jobs" in message
    work = circuit_costs(bells(1), shots=1, options={})[0].work
    assert f"max_job_size={job_size_for_work(work, 200)}" in message


def test_an_explicit_split_of_heavy_sub_jobs_is_quiet():
    circuits = [quantum_volume(20, seed=s).measure_all(inplace=False) for s in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        _plan(AerSimulator(), circuits, {"shots": 100}, 1, None, Slots(2))


def test_the_warning_is_part_of_the_exported_tree():
    assert issubclass(PerformanceWarning, UserWarning)
    assert PerformanceWarning.__module__ == "jobset.errors"


# Shot splits


def noisy_qv(qubits: int) -> tuple[QuantumCircuit, NoiseModel]:
    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(depolarizing_error(0.001, 1), ["rz", "sx", "x"])
    noise.add_all_qubit_quantum_error(depolarizing_error(0.01, 2), ["cx"])
    circuit = transpile(
        quantum_volume(qubits, seed=1).measure_all(inplace=False),
        basis_gates=["cx", "rz", "sx", "x"],
        seed_transpiler=1,
    )
    return circuit, noise


@pytest.mark.parametrize("shots", [15, 16, 17, 40])
def test_the_resolved_method_is_the_one_aer_picks(shots):
    circuit, noise = noisy_qv(4)
    picked = AerSimulator(noise_model=noise).run(circuit, shots=shots).result()
    expected = picked.results[0].metadata["method"]
    assert resolved_method(scan(circuit), "automatic", shots=shots, noisy=True) == expected
    ideal = AerSimulator().run(circuit, shots=shots).result().results[0].metadata["method"]
    assert resolved_method(scan(circuit), "automatic", shots=shots, noisy=False) == ideal
    clifford = bells(1)[0]
    stabilizer = AerSimulator(noise_model=noise).run(clifford, shots=shots).result()
    assert (
        resolved_method(scan(clifford), "automatic", shots=shots, noisy=True)
        == stabilizer.results[0].metadata["method"]
    )


def test_a_density_matrix_run_costs_the_same_for_more_shots_and_trajectories_do_not():
    circuit, noise = noisy_qv(6)
    options = {"noise_model": noise}
    dm = [circuit_costs([circuit], shots=s, options=options)[0].work for s in (1000, 4000)]
    assert dm[1] - dm[0] == pytest.approx(3000 * SHOT_WORK)  # only the sampling grows
    trajectories = {"noise_model": noise, "method": "statevector"}
    sv = [circuit_costs([circuit], shots=s, options=trajectories)[0].work for s in (1000, 4000)]
    assert sv[1] > 3.5 * sv[0]


def test_splitting_the_shots_of_a_density_matrix_run_warns_with_the_figures():
    circuit, noise = noisy_qv(6)
    backend = AerSimulator(noise_model=noise)
    with pytest.warns(PerformanceWarning, match="density_matrix") as caught:
        _plan(backend, [circuit], {"shots": 20000}, None, 5000, Slots(2))
    assert "4 chunks" in str(caught[0].message)
    assert "max_shot_size=None" in str(caught[0].message)


def test_splitting_the_shots_of_noisy_trajectories_is_quiet():
    circuit, noise = noisy_qv(6)
    backend = AerSimulator(noise_model=noise, method="statevector")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        plan, _ = _plan(backend, [circuit], {"shots": 4000}, None, 1000, Slots(2))
    assert len(plan.sub_batches) == 4
