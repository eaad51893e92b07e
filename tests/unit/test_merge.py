"""Merging sub-results into one Result: order, failures, shot chunks, no mutation."""

from __future__ import annotations

import copy
import gc

import pytest
from qiskit import QuantumCircuit
from qiskit.result import Result
from qiskit.result.models import ExperimentResult, ExperimentResultData
from qiskit_aer import AerSimulator

from jobset.executors.aer import run_sub_batch
from jobset.merge import bulk_allocation, merge_results
from jobset.plan import make_plan

from .circuits import bell


def named_circuits(n: int) -> list[QuantumCircuit]:
    circuits = []
    for i in range(n):
        qc = QuantumCircuit(2, name=f"c{i}")
        qc.h(0)
        if i % 2:
            qc.x(1)
        qc.measure_all()
        circuits.append(qc)
    return circuits


def fake_result(experiments, *, success=True) -> Result:
    """A Result of hand-made experiments: (name, counts, memory or None, shots, seed)."""
    results = []
    for name, counts, memory, shots, seed in experiments:
        data = {"counts": counts}
        if memory is not None:
            data["memory"] = memory
        results.append(
            ExperimentResult(
                shots=shots,
                success=True,
                data=ExperimentResultData(**data),
                status="DONE",
                header={"name": name, "memory_slots": 2},
                seed_simulator=seed,
                time_taken=0.5,
                method="stabilizer",
            )
        )
    return Result(
        backend_name="aer_simulator",
        backend_version="0.18.2",
        job_id="sub",
        success=success,
        results=results,
        metadata={"parallel_experiments": 1},
    )


def run_all(simulator, plan):
    return {b.index: run_sub_batch(simulator, b) for b in plan.sub_batches}


# Order and identity


def test_experiments_come_out_in_input_order_whatever_order_results_arrive(simulator):
    circuits = named_circuits(5)
    plan = make_plan(circuits, shots=20, max_job_size=2, seed_simulator=3)
    results = run_all(simulator, plan)
    reversed_results = dict(reversed(list(results.items())))
    merged = merge_results(plan, reversed_results, job_id="set-42", time_taken=3.25)

    assert [r.header.get("name") for r in merged.results] == [c.name for c in circuits]
    assert [r.seed_simulator for r in merged.results] == [3 + 2113 * i for i in range(5)]
    assert merged.success
    assert merged.status == "COMPLETED"


def test_the_merged_result_carries_the_sets_id_wall_time_and_seed(simulator):
    plan = make_plan(named_circuits(3), shots=20, max_job_size=1, seed_simulator=11)
    merged = merge_results(plan, run_all(simulator, plan), job_id="set-42", time_taken=3.25)
    assert merged.job_id == "set-42"
    assert merged.time_taken == 3.25
    assert merged.backend_name == "aer_simulator"
    assert merged.seed_simulator == 11
    assert merged.seed_drawn is False
    assert merged.to_dict()["job_id"] == "set-42"


def test_the_merged_result_has_every_field_of_aers_own_result(simulator):
    circuits = named_circuits(3)
    plan = make_plan(circuits, shots=20, max_job_size=1, seed_simulator=11)
    merged = merge_results(plan, run_all(simulator, plan), job_id="set-42", time_taken=1.0)
    plain = AerSimulator().run(circuits, shots=20, seed_simulator=11).result()

    assert set(plain.to_dict()) <= set(merged.to_dict())
    assert merged.to_dict()["qobj_id"] == "set-42"
    for ours, aers in zip(merged.results, plain.results, strict=True):
        assert set(aers.to_dict()) <= set(ours.to_dict())


def test_collection_is_held_off_while_merging_and_restored_after():
    enabled = gc.isenabled()
    with bulk_allocation():
        assert not gc.isenabled()
    assert gc.isenabled() is enabled
    gc.disable()
    try:
        with bulk_allocation():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        if enabled:
            gc.enable()


def test_what_a_merge_made_is_left_to_the_full_collections_not_walked_by_the_young_ones():
    enabled = gc.isenabled()
    gc.enable()
    try:
        with bulk_allocation():
            made = [[i] for i in range(20_000)]
        assert gc.get_count()[0] < 100  # no young collection is due for them
        oldest = {id(obj) for obj in gc.get_objects(generation=2)}
        assert all(id(obj) in oldest for obj in made[::1000])
        gc.freeze()  # a process that keeps objects frozen keeps them so
        try:
            frozen = gc.get_freeze_count()
            with bulk_allocation():
                again = [[i] for i in range(100)]
            # Neither unfrozen (0) nor grown by what the merge made; frozen objects that other
            # code frees meanwhile leave the count, so it may drop a little.
            assert 0 < gc.get_freeze_count() <= frozen
            assert len(again) == 100
        finally:
            gc.unfreeze()
    finally:
        if not enabled:
            gc.disable()


@pytest.mark.parametrize(("max_job_size", "max_shot_size"), [(2, None), (1, 7), (3, 9)])
def test_merging_leaves_every_sub_result_untouched(simulator, max_job_size, max_shot_size):
    plan = make_plan(
        named_circuits(3),
        shots=20,
        max_job_size=max_job_size,
        max_shot_size=max_shot_size,
        seed_simulator=5,
        run_options={"memory": True},
    )
    results = run_all(simulator, plan)
    before = {k: copy.deepcopy(r.to_dict()) for k, r in results.items()}
    before_ids = {k: r.job_id for k, r in results.items()}

    merged = merge_results(plan, results, job_id="set", time_taken=1.0)

    assert {k: r.to_dict() for k, r in results.items()} == before
    assert {k: r.job_id for k, r in results.items()} == before_ids
    assert merged.job_id == "set"


# Shot chunks


def test_shot_chunks_sum_counts_and_concatenate_memory_in_chunk_order():
    plan = make_plan(bell("b"), shots=5, max_shot_size=3, seed_simulator=1)
    assert plan.chunk_shots == (3, 2)
    chunk0 = fake_result([("b", {"0x0": 2, "0x3": 1}, ["0x0", "0x3", "0x0"], 3, 100)])
    chunk1 = fake_result([("b", {"0x3": 2}, ["0x3", "0x3"], 2, 200)])
    # Arrival order must not matter: chunk 1 first.
    merged = merge_results(plan, {1: chunk1, 0: chunk0}, job_id="s", time_taken=0.1)

    experiment = merged.results[0]
    assert experiment.success
    assert experiment.shots == 5
    assert merged.get_counts(0) == {"00": 2, "11": 3}
    assert merged.get_memory(0) == ["00", "11", "00", "11", "11"]
    assert experiment.chunk_seeds == [100, 200]
    assert experiment.seed_simulator == 100
    assert experiment.time_taken == 1.0
    assert experiment.method == "stabilizer"
    assert experiment.header["name"] == "b"


def test_a_chunk_without_memory_drops_memory_but_keeps_counts():
    plan = make_plan(bell("b"), shots=4, max_shot_size=2, seed_simulator=1)
    chunk0 = fake_result([("b", {"0x0": 2}, ["0x0", "0x0"], 2, 1)])
    chunk1 = fake_result([("b", {"0x3": 2}, None, 2, 2)])
    merged = merge_results(plan, {0: chunk0, 1: chunk1}, job_id="s", time_taken=0.1)
    assert merged.get_counts(0) == {"00": 2, "11": 2}
    assert not hasattr(merged.results[0].data, "memory")


# Missing and failed sub-jobs


def test_a_missing_sub_job_fails_only_its_experiments(simulator):
    circuits = named_circuits(5)
    plan = make_plan(circuits, shots=20, max_job_size=2, seed_simulator=3)
    results = run_all(simulator, plan)
    del results[1]  # experiments 2 and 3

    merged = merge_results(plan, results, job_id="set", time_taken=1.0)

    assert [r.success for r in merged.results] == [True, True, False, False, True]
    assert not merged.success
    assert merged.status == "PARTIAL COMPLETED"
    for i in (2, 3):
        failed = merged.results[i]
        assert "sub-job 1" in failed.status
        assert "no result" in failed.status
        assert failed.header["name"] == circuits[i].name
        assert failed.shots == 20
    for i in (0, 1, 4):
        assert merged.get_counts(i) == results[plan.experiment_sub_jobs()[i][0][0]].get_counts(
            plan.experiment_sub_jobs()[i][0][1]
        )


def test_a_failed_sub_job_carries_its_reason_into_its_experiments(simulator):
    plan = make_plan(named_circuits(3), shots=20, max_job_size=1, seed_simulator=3)
    results = run_all(simulator, plan)
    del results[2]
    merged = merge_results(
        plan,
        results,
        job_id="set",
        time_taken=1.0,
        failures={2: "worker lost: killed by signal 9"},
    )
    assert merged.results[2].status == "sub-job 2: worker lost: killed by signal 9"
    assert merged.results[0].success and merged.results[1].success


def test_a_sub_result_with_the_wrong_number_of_experiments_does_not_count(simulator):
    plan = make_plan(named_circuits(4), shots=20, max_job_size=2, seed_simulator=3)
    results = run_all(simulator, plan)
    results[1] = fake_result([("c2", {"0x0": 20}, None, 20, 0)])
    merged = merge_results(plan, results, job_id="set", time_taken=1.0)
    assert [r.success for r in merged.results] == [True, True, False, False]
    assert "returned 1 experiments, expected 2" in merged.results[2].status


def test_one_missing_shot_chunk_fails_the_whole_experiment(simulator):
    plan = make_plan(named_circuits(2), shots=20, max_job_size=1, max_shot_size=8, seed_simulator=3)
    results = run_all(simulator, plan)
    missing = plan.experiment_sub_jobs()[1][2][0]
    del results[missing]
    merged = merge_results(plan, results, job_id="set", time_taken=1.0)
    assert merged.results[0].success
    assert merged.results[0].shots == 20
    assert not merged.results[1].success
    assert f"sub-job {missing}" in merged.results[1].status


def test_no_results_at_all_still_merges_into_a_failed_result():
    plan = make_plan(named_circuits(2), shots=20, max_job_size=1, seed_simulator=3)
    merged = merge_results(plan, {}, job_id="set", time_taken=0.0)
    assert not merged.success
    assert [r.success for r in merged.results] == [False, False]
    assert merged.backend_name == "aer_simulator"
    assert merged.job_id == "set"


def too_big_circuit() -> QuantumCircuit:
    """A circuit that Aer's statevector method refuses for memory: success=False for it alone."""
    qc = QuantumCircuit(40, name="too-big")
    qc.h(range(40))
    for q in range(1, 40):
        qc.cx(0, q)
    qc.measure_all()
    return qc


def test_an_experiment_that_aer_failed_stays_failed():
    circuits = [bell("ok0"), too_big_circuit(), bell("ok2")]
    plan = make_plan(circuits, shots=10, max_job_size=2, seed_simulator=3)
    results = run_all(AerSimulator(method="statevector"), plan)
    assert not results[0].results[1].success

    merged = merge_results(plan, results, job_id="set", time_taken=1.0)

    assert [r.success for r in merged.results] == [True, False, True]
    assert "memory" in merged.results[1].status.lower()
    assert not merged.success
    assert merged.status == "PARTIAL COMPLETED"


def test_a_shot_chunk_that_aer_failed_fails_the_combined_experiment():
    plan = make_plan(bell("b"), shots=4, max_shot_size=2, seed_simulator=1)
    ok = fake_result([("b", {"0x0": 2}, None, 2, 1)])
    failed_dict = fake_result([("b", {"0x0": 2}, None, 2, 2)]).to_dict()
    failed_dict["results"][0]["success"] = False
    failed_dict["results"][0]["status"] = "ERROR: out of memory"
    failed_dict["success"] = False
    failed = Result.from_dict(failed_dict)

    merged = merge_results(plan, {0: ok, 1: failed}, job_id="s", time_taken=0.1)

    assert not merged.results[0].success
    assert merged.results[0].status == "ERROR: out of memory"
    assert not merged.success
