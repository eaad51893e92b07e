"""Pure planning: experiments, splits, refusals and seeds, without running anything."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp

from jobset.errors import InvalidInputError
from jobset.plan import (
    MAX_SEED,
    MIN_SEED,
    SEED_STRIDE,
    SUB_JOBS_PER_SLOT,
    auto_job_size,
    chunk_seed,
    has_save_instructions,
    make_plan,
    shot_chunks,
)

from .circuits import bell


def circuits(n: int) -> list[QuantumCircuit]:
    return [bell(f"c{i}") for i in range(n)]


def effective_seeds(plan) -> dict[tuple[int, int], int]:
    """(experiment, chunk) -> the seed Aer gives it inside its sub-batch."""
    return {
        (exp, batch.chunk): batch.seed_simulator + SEED_STRIDE * pos
        for batch in plan.sub_batches
        for pos, exp in enumerate(batch.experiments)
    }


# Experiments


def test_a_circuit_without_binds_is_one_experiment():
    plan = make_plan(circuits(3), shots=10, max_job_size=10, seed_simulator=1)
    assert [(e.index, e.circuit, e.bind, e.name) for e in plan.experiments] == [
        (0, 0, None, "c0"),
        (1, 1, None, "c1"),
        (2, 2, None, "c2"),
    ]


def test_a_single_circuit_is_accepted_as_a_one_element_set():
    plan = make_plan(bell("solo"), shots=10, seed_simulator=1)
    assert len(plan.experiments) == 1
    assert plan.sub_batches[0].circuits[0].name == "solo"


def test_a_circuit_with_k_binds_is_k_experiments():
    theta = Parameter("theta")
    qc = QuantumCircuit(1, name="p")
    qc.rx(theta, 0)
    qc.measure_all()
    plan = make_plan(
        [qc, bell("b")],
        shots=10,
        seed_simulator=1,
        max_job_size=100,
        parameter_binds=[{theta: [0.1, 0.2, 0.3]}, {}],
    )
    assert [(e.circuit, e.bind) for e in plan.experiments] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert [e.index for e in plan.experiments] == [0, 1, 2, 3]


def test_a_single_bind_dict_is_accepted_for_a_single_circuit():
    theta = Parameter("theta")
    qc = QuantumCircuit(1)
    qc.rx(theta, 0)
    plan = make_plan(qc, shots=1, seed_simulator=1, parameter_binds={theta: [1, 2]})
    assert len(plan.experiments) == 2


def test_bind_slices_follow_the_experiments_of_each_sub_batch():
    theta, phi = Parameter("theta"), Parameter("phi")
    a = QuantumCircuit(1, name="a")
    a.rx(theta, 0)
    b = QuantumCircuit(1, name="b")
    b.ry(phi, 0)
    binds = [{theta: [0, 1, 2]}, {phi: [10, 11]}]
    plan = make_plan([a, b], shots=1, seed_simulator=1, max_job_size=2, parameter_binds=binds)
    payloads = [
        ([c.name for c in batch.circuits], list(batch.parameter_binds or ()))
        for batch in plan.sub_batches
    ]
    assert payloads == [
        (["a"], [{theta: [0, 1]}]),
        (["a", "b"], [{theta: [2]}, {phi: [10]}]),
        (["b"], [{phi: [11]}]),
    ]


def test_planning_does_not_mutate_the_callers_binds():
    theta = Parameter("theta")
    qc = QuantumCircuit(1)
    qc.rx(theta, 0)
    binds = [{theta: [0.1, 0.2, 0.3]}]
    make_plan([qc], shots=1, seed_simulator=1, max_job_size=1, parameter_binds=binds)
    assert binds == [{theta: [0.1, 0.2, 0.3]}]


# Splitting by experiments


@pytest.mark.parametrize(
    ("n", "size"), [(n, size) for n in (1, 2, 5, 7) for size in range(1, n + 2)]
)
def test_max_job_size_splits_every_experiment_once_in_order(n, size):
    plan = make_plan(circuits(n), shots=10, max_job_size=size, seed_simulator=3)

    assert [b.index for b in plan.sub_batches] == list(range(len(plan.sub_batches)))
    assert len(plan.sub_batches) == math.ceil(n / size)
    flat = [e for b in plan.sub_batches for e in b.experiments]
    assert flat == list(range(n))
    for batch in plan.sub_batches:
        assert 1 <= len(batch.experiments) <= size
        assert [c.name for c in batch.circuits] == [f"c{e}" for e in batch.experiments]
        assert batch.chunk == 0
        assert batch.shots == 10
        assert batch.parameter_binds is None


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("max_shot_size", [3, 4, 10])
def test_each_shot_chunk_holds_every_experiment_exactly_once(size, max_shot_size):
    n = 4
    plan = make_plan(
        circuits(n), shots=10, max_job_size=size, max_shot_size=max_shot_size, seed_simulator=3
    )
    chunks = shot_chunks(10, max_shot_size)
    assert plan.chunk_shots == chunks
    assert [b.index for b in plan.sub_batches] == list(range(len(plan.sub_batches)))
    assert len(plan.sub_batches) == math.ceil(n / size) * len(chunks)
    for c, chunk_n in enumerate(chunks):
        in_chunk = [b for b in plan.sub_batches if b.chunk == c]
        assert [e for b in in_chunk for e in b.experiments] == list(range(n))
        assert {b.shots for b in in_chunk} == {chunk_n}


@pytest.mark.parametrize(
    ("shots", "max_shot_size", "expected"),
    [
        (1000, 300, (300, 300, 300, 100)),
        (1000, 250, (250, 250, 250, 250)),
        (1000, 999, (999, 1)),
        (1000, 1000, (1000,)),
        (1000, 5000, (1000,)),
        (1000, None, (1000,)),
        (7, 1, (1,) * 7),
    ],
)
def test_shot_split_keeps_the_remainder_as_a_last_smaller_chunk(shots, max_shot_size, expected):
    assert shot_chunks(shots, max_shot_size) == expected
    plan = make_plan(
        circuits(1), shots=shots, max_shot_size=max_shot_size, max_job_size=1, seed_simulator=1
    )
    assert plan.chunk_shots == expected
    assert tuple(b.shots for b in plan.sub_batches) == expected
    assert plan.shots == shots


def test_experiment_sub_jobs_lists_each_experiments_sub_jobs_in_chunk_order():
    plan = make_plan(circuits(3), shots=10, max_job_size=2, max_shot_size=4, seed_simulator=1)
    # Blocks [0, 1] and [2], each cut into chunks of 4, 4, 2 shots.
    assert [(b.experiments, b.chunk) for b in plan.sub_batches] == [
        ((0, 1), 0),
        ((0, 1), 1),
        ((0, 1), 2),
        ((2,), 0),
        ((2,), 1),
        ((2,), 2),
    ]
    assert plan.experiment_sub_jobs() == [
        [(0, 0), (1, 0), (2, 0)],
        [(0, 1), (1, 1), (2, 1)],
        [(3, 0), (4, 0), (5, 0)],
    ]


def test_experiment_sub_jobs_without_shot_split_is_one_pair_per_experiment():
    plan = make_plan(circuits(5), shots=10, max_job_size=2, seed_simulator=1)
    assert plan.experiment_sub_jobs() == [[(0, 0)], [(0, 1)], [(1, 0)], [(1, 1)], [(2, 0)]]


def test_run_kwargs_carry_shots_seed_binds_and_run_options():
    theta = Parameter("theta")
    qc = QuantumCircuit(1)
    qc.rx(theta, 0)
    plan = make_plan(
        qc,
        shots=10,
        seed_simulator=5,
        parameter_binds=[{theta: [1.0]}],
        run_options={"memory": True, "shots": 999},
    )
    kwargs = plan.sub_batches[0].run_kwargs()
    assert kwargs == {
        "memory": True,
        "shots": 10,
        "seed_simulator": 5,
        "parameter_binds": [{theta: [1.0]}],
    }


# The automatic job size


@pytest.mark.parametrize(
    ("n", "slots", "n_chunks", "expected"),
    [
        (100, 4, 1, 13),  # 8 sub-jobs of at most 13
        (100, 1, 1, 50),  # never "no split" on one slot: two sub-jobs
        (3, 4, 1, 1),  # fewer experiments than the target: one each
        (1, 8, 1, 1),
        (100, 4, 4, 50),  # 2 blocks x 4 chunks = 8 sub-jobs
        (100, 4, 16, 100),  # enough chunks already: one block
        (10, 0, 1, 5),  # a non-positive slot count counts as one slot
    ],
)
def test_auto_job_size_follows_its_documented_rule(n, slots, n_chunks, expected):
    assert auto_job_size(n, slots, n_chunks) == expected


@pytest.mark.parametrize("n", [1, 2, 7, 16, 100, 1001])
@pytest.mark.parametrize("slots", [1, 2, 3, 8, 64])
@pytest.mark.parametrize("n_chunks", [1, 3, 200])
def test_auto_job_size_is_the_smallest_size_within_the_sub_job_target(n, slots, n_chunks):
    target_blocks = max(1, math.ceil(SUB_JOBS_PER_SLOT * slots / n_chunks))
    size = auto_job_size(n, slots, n_chunks)
    assert size >= 1
    assert math.ceil(n / size) <= target_blocks
    if size > 1:
        assert math.ceil(n / (size - 1)) > target_blocks


def test_make_plan_uses_the_automatic_job_size_when_none_is_given():
    plan = make_plan(circuits(10), shots=10, seed_simulator=1, slots=2)
    assert len(plan.sub_batches) == 4
    assert [len(b.experiments) for b in plan.sub_batches] == [3, 3, 3, 1]


# Refusals, before anything is planned


@pytest.mark.parametrize(
    "bad",
    [None, "circuit", b"circuit", 3, [bell(), "x"], [bell(), None], (c for c in ["x"]), {1: 2}],
    ids=["none", "str", "bytes", "int", "list-with-str", "list-with-none", "generator", "dict"],
)
def test_objects_that_are_not_circuits_are_refused(bad):
    with pytest.raises(InvalidInputError, match="circuit"):
        make_plan(bad, shots=10)


def test_an_empty_circuit_list_is_refused():
    with pytest.raises(InvalidInputError, match="empty"):
        make_plan([], shots=10)


@pytest.mark.parametrize(
    "shots", [0, -1, True, False, 1.5, 10.0, "10", None], ids=lambda s: repr(s)
)
def test_shots_that_are_not_a_positive_integer_are_refused(shots):
    with pytest.raises(InvalidInputError, match="shots"):
        make_plan(circuits(1), shots=shots)


def test_numpy_integers_are_accepted_as_shots_and_sizes():
    plan = make_plan(
        circuits(3),
        shots=np.int64(10),
        max_job_size=np.int32(2),
        max_shot_size=np.int64(4),
        seed_simulator=np.uint32(9),
    )
    assert plan.shots == 10
    assert plan.chunk_shots == (4, 4, 2)
    assert plan.seed_simulator == 9
    assert all(type(b.shots) is int for b in plan.sub_batches)


@pytest.mark.parametrize("option", ["max_job_size", "max_shot_size"])
@pytest.mark.parametrize("value", [0, -1, -100, True, 2.0, "3"], ids=lambda v: repr(v))
def test_split_sizes_that_are_not_a_positive_integer_are_refused(option, value):
    with pytest.raises(InvalidInputError, match=option):
        make_plan(circuits(2), shots=10, **{option: value})


@pytest.mark.parametrize(
    "binds",
    [
        [{}],  # one entry for two circuits
        [{}, {}, {}],
        "not binds",
        [{}, 5],
    ],
    ids=["too-few", "too-many", "str", "not-a-dict"],
)
def test_parameter_binds_that_do_not_match_the_circuits_are_refused(binds):
    with pytest.raises(InvalidInputError, match="parameter_binds"):
        make_plan(circuits(2), shots=10, parameter_binds=binds)


def test_bind_value_lists_of_different_lengths_are_refused():
    theta, phi = Parameter("theta"), Parameter("phi")
    qc = QuantumCircuit(1)
    qc.rx(theta, 0)
    qc.ry(phi, 0)
    with pytest.raises(InvalidInputError, match="different lengths"):
        make_plan(qc, shots=10, parameter_binds=[{theta: [1, 2], phi: [1]}])


def test_a_bind_to_a_single_value_instead_of_a_list_is_refused():
    theta = Parameter("theta")
    qc = QuantumCircuit(1)
    qc.rx(theta, 0)
    with pytest.raises(InvalidInputError, match="list of values"):
        make_plan(qc, shots=10, parameter_binds=[{theta: 0.5}])


def test_an_empty_bind_value_list_is_refused():
    theta = Parameter("theta")
    qc = QuantumCircuit(1)
    qc.rx(theta, 0)
    with pytest.raises(InvalidInputError, match="no values"):
        make_plan(qc, shots=10, parameter_binds=[{theta: []}])


def save_statevector_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(2, name="sv")
    qc.h(0)
    qc.cx(0, 1)
    qc.save_statevector()
    return qc


def save_in_control_flow_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(1, 1, name="sv-if")
    qc.h(0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)):
        qc.save_statevector()
    return qc


def save_in_nested_control_flow_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(1, 1, name="sv-nested")
    qc.h(0)
    qc.measure(0, 0)
    with qc.for_loop(range(2)), qc.if_test((qc.clbits[0], 1)):
        qc.save_expectation_value(SparsePauliOp("Z"), [0])
    return qc


@pytest.mark.parametrize(
    "make_circuit",
    [save_statevector_circuit, save_in_control_flow_circuit, save_in_nested_control_flow_circuit],
)
def test_shot_splitting_a_circuit_with_save_instructions_is_refused(make_circuit):
    qc = make_circuit()
    assert has_save_instructions(qc)
    with pytest.raises(InvalidInputError, match="save instructions"):
        make_plan([bell(), qc], shots=10, max_shot_size=3, seed_simulator=1)


def test_save_instructions_are_fine_when_shots_fit_in_one_chunk():
    plan = make_plan(save_statevector_circuit(), shots=10, max_shot_size=10, seed_simulator=1)
    assert plan.chunk_shots == (10,)


def test_a_circuit_with_control_flow_but_no_save_instruction_can_be_shot_split():
    qc = QuantumCircuit(1, 1)
    qc.h(0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)):
        qc.x(0)
    assert not has_save_instructions(qc)
    assert make_plan(qc, shots=10, max_shot_size=3, seed_simulator=1).chunk_shots == (3, 3, 3, 1)


@pytest.mark.parametrize(
    "seed", [1.5, "7", True, MAX_SEED + 1, MIN_SEED - 1], ids=lambda s: repr(s)
)
def test_seeds_that_aer_does_not_take_are_refused(seed):
    with pytest.raises(InvalidInputError, match="seed_simulator"):
        make_plan(circuits(1), shots=10, seed_simulator=seed)


def test_experiment_offsets_wrap_around_64_bits_as_aers_do():
    plan = make_plan(circuits(3), shots=10, seed_simulator=MAX_SEED - SEED_STRIDE, max_job_size=1)
    assert [b.seed_simulator for b in plan.sub_batches] == [
        MAX_SEED - SEED_STRIDE,
        MAX_SEED,
        MIN_SEED + SEED_STRIDE - 1,
    ]
    plan = make_plan(circuits(2), shots=10, seed_simulator=-4, max_job_size=1)
    assert [b.seed_simulator for b in plan.sub_batches] == [-4, SEED_STRIDE - 4]


# Seeds


def test_a_seed_is_drawn_and_recorded_when_none_is_given():
    plan = make_plan(circuits(4), shots=10, max_job_size=1)
    assert plan.seed_drawn is True
    assert 0 <= plan.seed_simulator < 2**31
    assert [b.seed_simulator for b in plan.sub_batches] == [
        plan.seed_simulator + SEED_STRIDE * i for i in range(4)
    ]


def test_a_given_seed_is_recorded_as_not_drawn():
    plan = make_plan(circuits(1), shots=10, seed_simulator=0)
    assert plan.seed_drawn is False
    assert plan.seed_simulator == 0


def test_a_drawn_seed_reproduces_the_plan_when_passed_back():
    drawn = make_plan(circuits(3), shots=10, max_job_size=2, max_shot_size=4)
    again = make_plan(
        circuits(3), shots=10, max_job_size=2, max_shot_size=4, seed_simulator=drawn.seed_simulator
    )
    assert [b.seed_simulator for b in again.sub_batches] == [
        b.seed_simulator for b in drawn.sub_batches
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 6])
def test_circuit_split_sub_batches_start_at_the_seed_of_their_first_experiment(size):
    plan = make_plan(circuits(6), shots=10, max_job_size=size, seed_simulator=42)
    for batch in plan.sub_batches:
        assert batch.seed_simulator == 42 + SEED_STRIDE * batch.experiments[0]
    assert effective_seeds(plan) == {(e, 0): 42 + SEED_STRIDE * e for e in range(6)}


def test_a_single_shot_chunk_keeps_the_unsplit_seed():
    assert chunk_seed(123, 0, 1) == 123
    plan = make_plan(circuits(2), shots=10, max_shot_size=10, max_job_size=1, seed_simulator=123)
    assert [b.seed_simulator for b in plan.sub_batches] == [123, 123 + SEED_STRIDE]


def test_different_shot_chunks_get_different_seeds():
    plan = make_plan(circuits(3), shots=100, max_shot_size=10, max_job_size=3, seed_simulator=7)
    seeds = effective_seeds(plan)
    assert len(seeds) == 30
    assert len(set(seeds.values())) == 30
    assert 7 not in {chunk_seed(7, c, 10) for c in range(10)}


def test_chunk_seeds_fit_aers_signed_64_bit_seed():
    for seed in (0, 1, 2**31 - 1, MAX_SEED - SEED_STRIDE * 1000):
        for c in range(20):
            assert 0 <= chunk_seed(seed, c, 20) + SEED_STRIDE * 1000 <= MAX_SEED


def test_chunk_seeds_depend_on_the_base_seed():
    assert [chunk_seed(1, c, 4) for c in range(4)] != [chunk_seed(2, c, 4) for c in range(4)]


@pytest.mark.parametrize("max_shot_size", [None, 7, 25])
def test_derived_seeds_are_the_same_for_every_max_job_size(max_shot_size):
    per_size = [
        effective_seeds(
            make_plan(
                circuits(5),
                shots=50,
                max_job_size=size,
                max_shot_size=max_shot_size,
                seed_simulator=99,
            )
        )
        for size in (1, 2, 3, 4, 5, None)
    ]
    assert all(seeds == per_size[0] for seeds in per_size[1:])
