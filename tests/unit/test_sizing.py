"""Sets sized by cost: the automatic split pays the queue for every sub-job it makes, and an
explicit split that does not is warned about, with the size that would."""

from __future__ import annotations

import warnings

import pytest
from qiskit import QuantumCircuit
from qiskit.circuit.library import quantum_volume
from qiskit_aer import AerSimulator

from jobset import PerformanceWarning
from jobset.cost import (
    QUEUE_COST_WORK,
    SPREAD_SUB_JOB_WORK,
    TARGET_SUB_JOB_WORK,
    circuit_costs,
    job_size_for_work,
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
