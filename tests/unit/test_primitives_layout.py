"""Pure planning and merging of the distributed primitives: seeds, layouts, chunk merges."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.primitives.backend_sampler_v2 import _analyze_circuit
from qiskit.primitives.containers import BitArray
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.quantum_info import SparsePauliOp
from qiskit.result.models import ExperimentResult, ExperimentResultData

from jobset.errors import InvalidInputError
from jobset.plan import SEED_STRIDE, chunk_seed
from jobset.primitives.layout import (
    EstimatorPubLayout,
    Part,
    Run,
    SamplerPubLayout,
    compose_plan,
    plan_estimator,
    plan_sampler,
    positive_or_none,
    resolve_seed,
)
from jobset.primitives.merge import estimator_pub_result, sampler_pub_result


def _measured(n_params: int = 2, name: str = "c") -> QuantumCircuit:
    params = [Parameter(f"{name}{i}") for i in range(n_params)]
    qc = QuantumCircuit(2, name=name)
    for i, p in enumerate(params):
        qc.rx(p, i % 2)
    qc.cx(0, 1)
    qc.measure_all()
    return qc


def _sampler_pubs() -> list[SamplerPub]:
    """Three PUBs over two shot counts: 6 + 1 + 4 parameter-value sets."""
    bell = QuantumCircuit(2, 2)
    bell.h(0)
    bell.cx(0, 1)
    bell.measure([0, 1], [0, 1])
    return [
        SamplerPub.coerce((_measured(name="a"), np.zeros((2, 3, 2))), 100),
        SamplerPub.coerce((bell, None, 40), 100),
        SamplerPub.coerce((_measured(name="b"), np.ones((4, 2))), 100),
    ]


def _seeds_by_experiment(plan) -> dict[int, int]:
    return {
        e: b.seed_simulator + SEED_STRIDE * pos
        for b in plan.sub_batches
        for pos, e in enumerate(b.experiments)
    }


@pytest.mark.parametrize("max_job_size", [1, 2, 3, 5, 100, None])
def test_every_run_keeps_aers_seed_offsets_whatever_the_job_size(max_job_size):
    circuits = tuple(_measured(name=n) for n in "xy")
    binds = tuple({p: np.arange(3.0) for p in c.parameters} for c in circuits)
    unbound = tuple(_measured(0, name=n) for n in "uvw")
    runs = [
        Run(circuits, binds, 10, 7),  # 3 + 3 experiments
        Run(unbound[:1], ({},), 20, 7),  # 1
        Run(unbound[1:], ({}, {}), 10, 99),  # 1 + 1
    ]
    plan, firsts = compose_plan(
        runs, run_options={}, max_job_size=max_job_size, slots=2, seed=7, seed_drawn=False
    )
    assert firsts == [[0, 3], [6], [7, 8]]
    seeds = _seeds_by_experiment(plan)
    # Experiment i of each run has the seed run.seed + 2113 * i, as in one AerSimulator.run.
    assert [seeds[e] for e in range(6)] == [7 + SEED_STRIDE * i for i in range(6)]
    assert seeds[6] == 7
    assert [seeds[7], seeds[8]] == [99, 99 + SEED_STRIDE]
    run_of = {e: r for r, first in enumerate([0, 6, 7]) for e in range(first, 9)}
    for batch in plan.sub_batches:
        assert len({run_of[e] for e in batch.experiments}) == 1, "a sub-job mixes two runs"
    assert [b.index for b in plan.sub_batches] == list(range(len(plan.sub_batches)))
    assert sorted(e for b in plan.sub_batches for e in b.experiments) == list(range(9))


def test_the_automatic_job_size_spreads_all_runs_over_two_sub_jobs_per_slot():
    circuit = _measured()
    binds = ({p: np.arange(50.0) for p in circuit.parameters},)
    runs = [Run((circuit,), binds, 10, 1), Run((circuit,), binds, 10, 2)]
    plan, _ = compose_plan(
        runs, run_options={}, max_job_size=None, slots=4, seed=1, seed_drawn=False
    )
    assert len(plan.sub_batches) == 8
    assert {len(b.experiments) for b in plan.sub_batches} == {13, 11}


def test_the_sampler_groups_pubs_by_shots_in_first_seen_order_each_group_from_the_seed():
    pubs = _sampler_pubs()
    plan, record = plan_sampler(
        pubs,
        seed=5,
        seed_drawn=False,
        run_options={"memory": False},
        max_job_size=None,
        max_shot_size=None,
        slots=1,
    )
    # Group 100 shots: PUBs 0 and 2 (6 + 4 experiments); group 40 shots: PUB 1.
    assert [layout.parts for layout in record.pubs] == [
        (Part(0, 100),),
        (Part(10, 40),),
        (Part(6, 100),),
    ]
    seeds = _seeds_by_experiment(plan)
    assert seeds[0] == 5 and seeds[6] == 5 + SEED_STRIDE * 6 and seeds[10] == 5
    assert all(b.run_kwargs()["memory"] is True for b in plan.sub_batches)
    assert [layout.shape for layout in record.pubs] == [(2, 3), (), (4,)]
    assert [layout.experiments for layout in record.pubs] == [6, 1, 4]


def test_sampler_shot_chunks_keep_the_remainder_and_get_seeds_from_seed_and_chunk():
    pubs = _sampler_pubs()
    plan, record = plan_sampler(
        pubs,
        seed=5,
        seed_drawn=False,
        run_options={},
        max_job_size=2,
        max_shot_size=30,
        slots=1,
    )
    first = record.pubs[0]
    assert [p.shots for p in first.parts] == [30, 30, 30, 10]
    assert [p.shots for p in record.pubs[1].parts] == [30, 10]
    seeds = _seeds_by_experiment(plan)
    for c, part in enumerate(first.parts):
        assert seeds[part.first] == chunk_seed(5, c, 4)
    # Chunks of one experiment never share a seed (runs, as in Aer, all start at theirs).
    for layout in record.pubs:
        for j in range(layout.experiments):
            chunk_seeds = [seeds[part.first + j] for part in layout.parts]
            assert len(set(chunk_seeds)) == len(chunk_seeds)
    # One chunk is the unsplit run.
    _, unsplit = plan_sampler(
        pubs,
        seed=5,
        seed_drawn=False,
        run_options={},
        max_job_size=2,
        max_shot_size=100,
        slots=1,
    )
    assert [len(layout.parts) for layout in unsplit.pubs] == [1, 1, 1]


def test_the_estimator_runs_each_pub_alone_with_a_save_per_pauli_and_the_same_seed():
    circuit = _measured().remove_final_measurements(inplace=False)
    obs = [SparsePauliOp.from_list([("ZZ", 1), ("XI", 0.5)]), SparsePauliOp("ZZ")]
    pubs = [
        EstimatorPub.coerce((circuit, [[o] for o in obs], np.zeros((3, 2))), 0.0),
        EstimatorPub.coerce((circuit, obs[1], np.ones(2)), 0.1),
    ]
    plan, record = plan_estimator(
        pubs,
        shots=100,
        seed=9,
        seed_drawn=False,
        run_options={},
        max_job_size=10,
        max_shot_size=None,
        slots=1,
    )
    saved = [
        {
            inst.operation.name
            for inst in b.circuits[0].data
            if inst.operation.name.startswith("save")
        }
        for b in plan.sub_batches
    ]
    assert saved == [{"save_expval"}, {"save_expval"}]
    labels = [
        sorted(inst.operation.label for inst in b.circuits[0].data if inst.operation.label)
        for b in plan.sub_batches
    ]
    assert labels == [["XI", "ZZ"], ["ZZ"]]
    assert [b.seed_simulator for b in plan.sub_batches] == [9, 9]
    assert [layout.parts for layout in record.pubs] == [(Part(0, 100),), (Part(3, 100),)]
    assert [layout.precision for layout in record.pubs] == [0.0, 0.1]


def test_estimator_shot_chunks_are_planned_even_though_the_circuits_have_save_instructions():
    circuit = _measured().remove_final_measurements(inplace=False)
    pubs = [EstimatorPub.coerce((circuit, SparsePauliOp("ZZ"), np.zeros((3, 2))), 0.0)]
    plan, record = plan_estimator(
        pubs,
        shots=250,
        seed=9,
        seed_drawn=False,
        run_options={},
        max_job_size=None,
        max_shot_size=100,
        slots=1,
    )
    assert record.pubs[0].parts == (Part(0, 100), Part(3, 100), Part(6, 50))
    assert [b.shots for b in plan.sub_batches] == [100, 100, 50]


def _experiment(shots: int, **data) -> ExperimentResult:
    return ExperimentResult(shots=shots, success=True, data=ExperimentResultData.from_dict(data))


def test_sampler_chunks_are_concatenated_in_chunk_order_into_the_pubs_shape():
    layout = SamplerPubLayout(
        shape=(2,),
        experiments=2,
        shots=3,
        meas_info=tuple(_analyze_circuit(_measured(0))[0]),
        max_num_bytes=1,
        circuit_metadata={"k": 1},
        parts=(Part(2, 2), Part(0, 1)),  # chunk 0 holds experiments 2, 3; chunk 1 holds 0, 1
    )
    experiments = [
        _experiment(1, memory=["0x3"]),
        _experiment(1, memory=["0x0"]),
        _experiment(2, memory=["0x1", "0x2"]),
        _experiment(2, memory=["0x2", "0x2"]),
    ]
    result = sampler_pub_result(layout, experiments, {"omp_enabled": True})
    want = BitArray.from_samples([1, 2, 3, 2, 2, 0], num_bits=2)
    assert result.data.meas == want.reshape(2, 3)
    assert result.metadata == {
        "shots": 3,
        "circuit_metadata": {"k": 1},
        "simulator_metadata": {"omp_enabled": True},
    }


def _estimator_layout(parts: tuple[Part, ...], precision: float) -> EstimatorPubLayout:
    pub = EstimatorPub.coerce(
        (QuantumCircuit(2), [SparsePauliOp.from_list([("ZZ", 2.0), ("XX", -1.0)])]), precision
    )
    return EstimatorPubLayout(
        param_shape=(),
        experiments=1,
        observables=pub.observables,
        precision=precision,
        circuit_metadata={},
        noise_seed=3,
        parts=parts,
    )


def test_estimator_chunks_are_averaged_weighted_by_their_shots():
    experiments = [_experiment(300, ZZ=0.5, XX=0.1), _experiment(100, ZZ=0.1, XX=0.5)]
    layout = _estimator_layout((Part(0, 300), Part(1, 100)), 0.0)
    result = estimator_pub_result(layout, experiments, {})
    zz, xx = (300 * 0.5 + 100 * 0.1) / 400, (300 * 0.1 + 100 * 0.5) / 400
    np.testing.assert_allclose(result.data.evs, [2.0 * zz - xx])
    np.testing.assert_array_equal(result.data.stds, [0.0])


def test_precision_noise_is_drawn_after_the_merge_so_splitting_does_not_change_it():
    one = estimator_pub_result(
        _estimator_layout((Part(0, 400),), 0.2), [_experiment(400, ZZ=0.4, XX=0.2)], {}
    )
    split = estimator_pub_result(
        _estimator_layout((Part(0, 200), Part(1, 200)), 0.2),
        [_experiment(200, ZZ=0.4, XX=0.2), _experiment(200, ZZ=0.4, XX=0.2)],
        {},
    )
    want = np.random.default_rng(3).normal(np.array([0.6]), 0.2, (1,))
    np.testing.assert_allclose(one.data.evs, want)
    np.testing.assert_allclose(split.data.evs, want)
    np.testing.assert_array_equal(split.data.stds, [0.2])
    assert split.metadata["target_precision"] == 0.2


def test_a_seed_is_drawn_and_flagged_only_when_none_is_given():
    seed, drawn = resolve_seed(None)
    assert drawn and 0 <= seed < 2**31
    assert resolve_seed(np.int64(12)) == (12, False)
    assert resolve_seed(-1) == (-1, False)  # Aer takes every signed 64-bit seed
    for bad in (True, 1.5, "3", 2**63):
        with pytest.raises(InvalidInputError, match="seed"):
            resolve_seed(bad)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "4"])
def test_split_sizes_must_be_positive_integers_or_none(bad):
    assert positive_or_none("max_job_size", None) is None
    assert positive_or_none("max_job_size", np.int32(3)) == 3
    with pytest.raises(InvalidInputError, match="max_job_size"):
        positive_or_none("max_job_size", bad)
