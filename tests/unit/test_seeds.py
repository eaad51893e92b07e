"""Seeds checked against real Aer: a split run reproduces the unsplit one exactly.

DESIGN says Aer gives experiment ``i`` the seed ``seed_simulator + 2113 * i``; these tests
measure it instead of trusting it, then check that every split the planner makes gives the
counts and memory of ``AerSimulator.run`` on the whole list.
"""

from __future__ import annotations

import dataclasses

import pytest
from qiskit import QuantumCircuit, transpile
from qiskit.circuit.library import quantum_volume
from qiskit.quantum_info import Kraus
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, QuantumError, depolarizing_error, thermal_relaxation_error

from jobset.executors.aer import portable_backend, run_sub_batch
from jobset.merge import merge_results
from jobset.plan import MAX_SEED, MIN_SEED, SEED_STRIDE, make_plan

SHOTS = 64
SEED = 1234
MEMORY = {"memory": True}


def assert_same_outcomes(merged, reference, n_experiments):
    assert len(merged.results) == n_experiments
    for i in range(n_experiments):
        assert merged.results[i].success
        assert merged.get_memory(i) == reference.get_memory(i), f"experiment {i}"
        assert merged.get_counts(i) == reference.get_counts(i), f"experiment {i}"


@pytest.fixture(scope="module")
def unsplit_qv(simulator, qv_circuits):
    return simulator.run(qv_circuits, shots=SHOTS, seed_simulator=SEED, memory=True).result()


@pytest.fixture(scope="module")
def noise_model() -> NoiseModel:
    thermal = QuantumError(Kraus(thermal_relaxation_error(50e3, 70e3, 50)))
    one_qubit = depolarizing_error(0.02, 1).compose(thermal)
    model = NoiseModel(basis_gates=["cx", "rz", "sx", "x"])
    model.add_all_qubit_quantum_error(one_qubit, ["sx", "x"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.05, 2), ["cx"])
    return model


@pytest.fixture(scope="module")
def noisy_qv_circuits() -> list[QuantumCircuit]:
    circuits = []
    for seed in range(4):
        qc = quantum_volume(4, seed=10 + seed)
        qc.measure_all()
        circuits.append(transpile(qc, basis_gates=["cx", "rz", "sx", "x"], seed_transpiler=0))
    return circuits


# What Aer does


def test_aer_gives_experiment_i_the_seed_plus_2113_times_i(simulator, qv_circuits, unsplit_qv):
    assert [r.seed_simulator for r in unsplit_qv.results] == [
        SEED + SEED_STRIDE * i for i in range(len(qv_circuits))
    ]
    # The reported seed is the one used: experiment i alone, with that seed, is the same.
    for i in (1, 4):
        alone = simulator.run(
            qv_circuits[i], shots=SHOTS, seed_simulator=SEED + SEED_STRIDE * i, memory=True
        ).result()
        assert alone.get_memory(0) == unsplit_qv.get_memory(i)


def test_different_qv_circuits_give_different_memories(qv_circuits, unsplit_qv):
    # Without this, the equalities below could hold by accident.
    memories = [tuple(unsplit_qv.get_memory(i)) for i in range(len(qv_circuits))]
    assert len(set(memories)) == len(memories)


# Circuit splits reproduce the unsplit run


@pytest.mark.parametrize("max_job_size", [1, 2, 3, 5])
def test_a_circuit_split_run_equals_the_unsplit_run(
    simulator, qv_circuits, unsplit_qv, run_plan, max_job_size
):
    plan = make_plan(
        qv_circuits,
        shots=SHOTS,
        seed_simulator=SEED,
        max_job_size=max_job_size,
        run_options=MEMORY,
    )
    assert len(plan.sub_batches) == -(-len(qv_circuits) // max_job_size)
    merged = run_plan(simulator, plan)
    assert_same_outcomes(merged, unsplit_qv, len(qv_circuits))
    assert [r.seed_simulator for r in merged.results] == [
        r.seed_simulator for r in unsplit_qv.results
    ]
    assert [r.header.get("name") for r in merged.results] == [c.name for c in qv_circuits]


def test_a_portable_backend_copy_runs_the_same_as_the_original(
    simulator, qv_circuits, unsplit_qv, run_plan
):
    backend = AerSimulator(max_job_size=1, max_shot_size=None)
    plan = make_plan(
        qv_circuits, shots=SHOTS, seed_simulator=SEED, max_job_size=2, run_options=MEMORY
    )
    merged = run_plan(portable_backend(backend), plan)
    assert_same_outcomes(merged, unsplit_qv, len(qv_circuits))
    assert backend.options.max_job_size == 1


@pytest.mark.parametrize("max_job_size", [1, 2, 3, 4, 7])
def test_a_split_of_parameter_binds_equals_the_unsplit_run(
    simulator, parametric_circuits, run_plan, max_job_size
):
    circuits, (theta, phi) = parametric_circuits
    # Three binds for the first circuit, four for the second: seven experiments.
    binds = [
        {theta: [0.1, 0.7, 1.3], phi: [0.2, 0.4, 0.6]},
        {theta: [0.3, 0.9, 1.5, 2.1], phi: [1.0, 1.1, 1.2, 1.3]},
    ]
    reference = simulator.run(
        circuits, shots=SHOTS, seed_simulator=SEED, parameter_binds=binds, memory=True
    ).result()
    assert len(reference.results) == 7
    assert [r.seed_simulator for r in reference.results] == [
        SEED + SEED_STRIDE * i for i in range(7)
    ]

    plan = make_plan(
        circuits,
        shots=SHOTS,
        seed_simulator=SEED,
        max_job_size=max_job_size,
        parameter_binds=binds,
        run_options=MEMORY,
    )
    merged = run_plan(simulator, plan)
    assert_same_outcomes(merged, reference, 7)


def test_a_single_parametric_circuit_split_by_binds_equals_the_unsplit_run(
    simulator, parametric_circuits, run_plan
):
    circuits, (theta, phi) = parametric_circuits
    binds = [{theta: [0.1 * k for k in range(5)], phi: [0.3 * k for k in range(5)]}]
    reference = simulator.run(
        circuits[0], shots=SHOTS, seed_simulator=SEED, parameter_binds=binds, memory=True
    ).result()
    plan = make_plan(
        circuits[0],
        shots=SHOTS,
        seed_simulator=SEED,
        max_job_size=2,
        parameter_binds=binds,
        run_options=MEMORY,
    )
    assert len(plan.sub_batches) == 3
    assert_same_outcomes(run_plan(simulator, plan), reference, 5)


@pytest.mark.parametrize("max_job_size", [1, 3, 4])
def test_a_split_noisy_run_equals_the_unsplit_run(
    noise_model, noisy_qv_circuits, run_plan, max_job_size
):
    backend = AerSimulator(noise_model=noise_model)
    reference = backend.run(
        noisy_qv_circuits, shots=SHOTS, seed_simulator=SEED, memory=True
    ).result()
    assert [r.seed_simulator for r in reference.results] == [
        SEED + SEED_STRIDE * i for i in range(len(noisy_qv_circuits))
    ]
    plan = make_plan(
        noisy_qv_circuits,
        shots=SHOTS,
        seed_simulator=SEED,
        max_job_size=max_job_size,
        run_options=MEMORY,
    )
    merged = run_plan(portable_backend(backend), plan)
    assert_same_outcomes(merged, reference, len(noisy_qv_circuits))


def test_a_noise_model_given_as_a_run_option_splits_the_same_way(
    simulator, noise_model, noisy_qv_circuits, run_plan
):
    reference = simulator.run(
        noisy_qv_circuits, shots=SHOTS, seed_simulator=SEED, memory=True, noise_model=noise_model
    ).result()
    plan = make_plan(
        noisy_qv_circuits,
        shots=SHOTS,
        seed_simulator=SEED,
        max_job_size=1,
        run_options={"memory": True, "noise_model": noise_model},
    )
    assert_same_outcomes(run_plan(simulator, plan), reference, len(noisy_qv_circuits))


# Negative controls: a wrong offset is detected


def _run_batches(simulator, plan, batches):
    results = {b.index: run_sub_batch(simulator, b) for b in batches}
    return merge_results(plan, results, job_id="control", time_taken=0.0)


def test_a_sub_batch_seed_off_by_one_gives_different_memory(simulator, qv_circuits, unsplit_qv):
    plan = make_plan(
        qv_circuits, shots=SHOTS, seed_simulator=SEED, max_job_size=2, run_options=MEMORY
    )
    wrong = [dataclasses.replace(b, seed_simulator=b.seed_simulator + 1) for b in plan.sub_batches]
    merged = _run_batches(simulator, plan, wrong)
    for i in range(len(qv_circuits)):
        assert merged.get_memory(i) != unsplit_qv.get_memory(i), f"experiment {i}"


def test_a_seed_stride_of_2112_gives_different_memory(simulator, qv_circuits, unsplit_qv):
    plan = make_plan(
        qv_circuits, shots=SHOTS, seed_simulator=SEED, max_job_size=2, run_options=MEMORY
    )
    wrong = [
        dataclasses.replace(b, seed_simulator=SEED + (SEED_STRIDE - 1) * b.experiments[0])
        for b in plan.sub_batches
    ]
    merged = _run_batches(simulator, plan, wrong)
    # Block 0 starts at experiment 0, where both strides agree; every later one differs.
    assert merged.get_memory(0) == unsplit_qv.get_memory(0)
    for i in range(2, len(qv_circuits)):
        assert merged.get_memory(i) != unsplit_qv.get_memory(i), f"experiment {i}"


# Shot splits


SPLIT_SHOTS = 100


def shot_split_plan(circuits, *, max_job_size, max_shot_size=30, seed=SEED):
    return make_plan(
        circuits,
        shots=SPLIT_SHOTS,
        seed_simulator=seed,
        max_job_size=max_job_size,
        max_shot_size=max_shot_size,
        run_options=MEMORY,
    )


def test_a_shot_split_run_adds_up_to_the_requested_shots(simulator, qv_circuits):
    circuits = qv_circuits[:3]
    plan = shot_split_plan(circuits, max_job_size=2)
    assert plan.chunk_shots == (30, 30, 30, 10)
    results = {b.index: run_sub_batch(simulator, b) for b in plan.sub_batches}
    merged = merge_results(plan, results, job_id="shots", time_taken=2.0)

    assert merged.success
    for i, pairs in enumerate(plan.experiment_sub_jobs()):
        experiment = merged.results[i]
        assert experiment.shots == SPLIT_SHOTS
        assert sum(merged.get_counts(i).values()) == SPLIT_SHOTS
        memory = merged.get_memory(i)
        assert len(memory) == SPLIT_SHOTS
        chunk_memories = [results[k].get_memory(pos) for k, pos in pairs]
        assert [len(m) for m in chunk_memories] == [30, 30, 30, 10]
        assert memory == [shot for chunk in chunk_memories for shot in chunk]
        # Chunks never share a seed, so equal-sized chunks do not repeat each other.
        assert len({tuple(m) for m in chunk_memories[:3]}) == 3
        assert experiment.chunk_seeds == [
            results[k].results[pos].seed_simulator for k, pos in pairs
        ]
        assert experiment.header.get("name") == circuits[i].name


def test_a_shot_split_run_is_the_same_for_every_max_job_size(simulator, qv_circuits, run_plan):
    circuits = qv_circuits[:3]
    runs = [run_plan(simulator, shot_split_plan(circuits, max_job_size=size)) for size in (1, 2, 3)]
    for other in runs[1:]:
        for i in range(len(circuits)):
            assert other.get_memory(i) == runs[0].get_memory(i)
            assert other.get_counts(i) == runs[0].get_counts(i)


def test_a_shot_split_run_repeats_exactly_with_the_same_seed(simulator, qv_circuits, run_plan):
    first = run_plan(simulator, shot_split_plan(qv_circuits[:2], max_job_size=1))
    second = run_plan(simulator, shot_split_plan(qv_circuits[:2], max_job_size=1))
    other_seed = run_plan(
        simulator, shot_split_plan(qv_circuits[:2], max_job_size=1, seed=SEED + 1)
    )
    for i in range(2):
        assert first.get_memory(i) == second.get_memory(i)
        assert first.get_memory(i) != other_seed.get_memory(i)


def test_a_drawn_seed_reproduces_the_run_when_passed_back(simulator, qv_circuits, run_plan):
    drawn = make_plan(
        qv_circuits[:2], shots=SPLIT_SHOTS, max_job_size=1, max_shot_size=40, run_options=MEMORY
    )
    assert drawn.seed_drawn
    again = shot_split_plan(
        qv_circuits[:2], max_job_size=2, max_shot_size=40, seed=drawn.seed_simulator
    )
    first, second = run_plan(simulator, drawn), run_plan(simulator, again)
    assert first.seed_simulator == drawn.seed_simulator
    assert first.seed_drawn is True
    for i in range(2):
        assert first.get_memory(i) == second.get_memory(i)


@pytest.mark.parametrize("max_shot_size", [SPLIT_SHOTS, SPLIT_SHOTS + 1, None])
def test_a_single_shot_chunk_equals_the_unsplit_run(
    simulator, qv_circuits, run_plan, max_shot_size
):
    circuits = qv_circuits[:3]
    reference = simulator.run(
        circuits, shots=SPLIT_SHOTS, seed_simulator=SEED, memory=True
    ).result()
    plan = shot_split_plan(circuits, max_job_size=2, max_shot_size=max_shot_size)
    assert plan.chunk_shots == (SPLIT_SHOTS,)
    assert_same_outcomes(run_plan(simulator, plan), reference, len(circuits))


@pytest.mark.parametrize(
    "seed",
    [0, MAX_SEED - SEED_STRIDE * 3, MAX_SEED, -4, MIN_SEED],
    ids=["zero", "largest-without-wrapping", "largest", "negative", "smallest"],
)
def test_every_seed_aer_takes_also_splits_exactly(simulator, qv_circuits, run_plan, seed):
    circuits = qv_circuits[:3]
    reference = simulator.run(circuits, shots=SHOTS, seed_simulator=seed, memory=True).result()
    # Aer reads the seed as unsigned 64-bit and its offsets wrap there.
    assert [r.seed_simulator for r in reference.results] == [
        (seed + SEED_STRIDE * i) % 2**64 for i in range(3)
    ]
    plan = make_plan(circuits, shots=SHOTS, seed_simulator=seed, max_job_size=1, run_options=MEMORY)
    assert_same_outcomes(run_plan(simulator, plan), reference, 3)


@pytest.mark.parametrize("max_job_size", [1, 2, 3])
def test_a_set_mixing_circuits_with_and_without_classical_bits_splits_exactly(
    simulator, qv_circuits, run_plan, max_job_size
):
    unmeasured = qv_circuits[1].remove_final_measurements(inplace=False)
    unmeasured.name = "no-clbits"
    assert unmeasured.num_clbits == 0
    circuits = [qv_circuits[0], unmeasured, qv_circuits[2]]
    reference = simulator.run(circuits, shots=SHOTS, seed_simulator=SEED, memory=True).result()
    plan = make_plan(
        circuits, shots=SHOTS, seed_simulator=SEED, max_job_size=max_job_size, run_options=MEMORY
    )
    merged = run_plan(simulator, plan)
    assert [r.header.get("name") for r in merged.results] == [c.name for c in circuits]
    assert [r.success for r in merged.results] == [True, True, True]
    assert [r.data.to_dict() for r in merged.results] == [
        r.data.to_dict() for r in reference.results
    ]
