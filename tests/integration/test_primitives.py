"""Distributed SamplerV2 / EstimatorV2 give exactly what Aer's own primitives give.

Each exactness test runs on real Celery workers (the session's 2-worker local cluster)
and on a thread pool, over several split sizes.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading

import numpy as np
import pytest
import redis
from qiskit import QuantumCircuit, transpile
from qiskit.circuit.library import real_amplitudes
from qiskit.primitives import BaseEstimatorV2, BaseSamplerV2
from qiskit.providers import JobStatus
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error
from qiskit_aer.primitives import EstimatorV2 as AerEstimatorV2
from qiskit_aer.primitives import SamplerV2 as AerSamplerV2

from jobset import AerJobSet, CeleryExecutor, InvalidInputError, JobSetFailedError, run
from jobset.errors import PrimitiveJobNotFoundError
from jobset.executors.celery import registry
from jobset.primitives import DistributedPrimitiveJob, EstimatorV2, SamplerV2
from jobset.protocol import DEFAULT_QUEUE, Dispatch, owner_queue, primitive_key

from .faultkit import stored_keys

pytestmark = pytest.mark.integration

TIMEOUT_S = 120
ANSATZ = transpile(real_amplitudes(3, reps=2), basis_gates=["ry", "cx"])
MEASURED = ANSATZ.measure_all(inplace=False)
VALUES = np.random.default_rng(7).uniform(0, np.pi, (2, 3, ANSATZ.num_parameters))
HAMILTONIAN = SparsePauliOp.from_list([("ZZI", 1.0), ("IZZ", 1.0), ("XII", 0.4), ("IXX", -0.3)])


def _bell() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2, name="bell")
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


def _noise_model() -> NoiseModel:
    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(depolarizing_error(0.05, 1), ["ry"])
    noise.add_all_qubit_quantum_error(depolarizing_error(0.1, 2), ["cx"])
    return noise


# Three PUBs over two shot counts: Aer runs (PUB 0, PUB 2) together and PUB 1 alone.
SAMPLER_PUBS = [(MEASURED, VALUES), (_bell(), None, 50), (MEASURED, VALUES[1])]
# Broadcast observables (2, 1) x parameters (2, 3), its own precision, and one with none.
ESTIMATOR_PUBS = [
    (ANSATZ, [[HAMILTONIAN], [SparsePauliOp("ZII")]], VALUES[0]),
    (ANSATZ, HAMILTONIAN, VALUES[1, 0], 0.0),
    (ANSATZ, [SparsePauliOp("XXX"), HAMILTONIAN], VALUES[:, 0]),
]


@pytest.fixture(scope="module")
def celery_executor(cluster):
    with CeleryExecutor(cluster.settings) as ex:
        yield ex


@pytest.fixture(scope="module")
def thread_pool():
    with cf.ThreadPoolExecutor(2) as pool:
        yield pool


@pytest.fixture(params=["celery", "threads"])
def executor(request):
    name = "celery_executor" if request.param == "celery" else "thread_pool"
    return request.getfixturevalue(name)


def _assert_same_bits(got, want) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert sorted(g.data) == sorted(w.data), i
        for name in w.data:
            assert g.data[name].shape == w.data[name].shape, (i, name)
            assert g.data[name].num_shots == w.data[name].num_shots, (i, name)
            assert g.data[name] == w.data[name], f"PUB {i} register {name} differs"
        assert g.metadata["shots"] == w.metadata["shots"]
        assert g.metadata["circuit_metadata"] == w.metadata["circuit_metadata"]


def _assert_same_evs(got, want) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.data.evs.shape == w.data.evs.shape, i
        np.testing.assert_allclose(g.data.evs, w.data.evs, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(g.data.stds, w.data.stds)
        assert g.metadata["target_precision"] == w.metadata["target_precision"]


@pytest.mark.parametrize("max_job_size", [1, 4, None])
def test_the_sampler_gives_aers_bit_arrays_bit_for_bit_for_every_split_size(executor, max_job_size):
    want = AerSamplerV2(seed=11).run(SAMPLER_PUBS, shots=200).result()
    sampler = SamplerV2(executor=executor, seed=11, max_job_size=max_job_size)
    assert isinstance(sampler, BaseSamplerV2)
    job = sampler.run(SAMPLER_PUBS, shots=200)
    got = job.result(timeout=TIMEOUT_S)
    _assert_same_bits(got, want)
    assert got.metadata == {"version": 2} and job.seed == 11
    assert job.status() is JobStatus.DONE and job.done() and job.in_final_state()
    if max_job_size == 1:  # every parameter-value set ran in its own sub-job
        assert len(job.job_set.plan.sub_batches) == 6 + 1 + 3


def test_a_wrong_seed_changes_the_bits():
    """Negative control: the equality above is not an accident of low entropy."""
    want = AerSamplerV2(seed=11).run(SAMPLER_PUBS, shots=200).result()
    with cf.ThreadPoolExecutor(1) as pool:
        got = SamplerV2(executor=pool, seed=12).run(SAMPLER_PUBS, shots=200).result()
    assert got[0].data.meas != want[0].data.meas


@pytest.mark.parametrize("max_job_size", [1, 3, None])
def test_the_estimator_gives_aers_values_and_precision_noise_for_every_split_size(
    executor, max_job_size
):
    options = {"run_options": {"seed_simulator": 5}}
    want = AerEstimatorV2(options=options).run(ESTIMATOR_PUBS, precision=0.02).result()
    estimator = EstimatorV2(executor=executor, options=options, max_job_size=max_job_size)
    assert isinstance(estimator, BaseEstimatorV2)
    got = estimator.run(ESTIMATOR_PUBS, precision=0.02).result(timeout=TIMEOUT_S)
    _assert_same_evs(got, want)
    assert [r.metadata["target_precision"] for r in got] == [0.02, 0.0, 0.02]


def test_the_estimator_with_a_noise_model_gives_aers_sampled_values(celery_executor):
    """Noisy trajectories make the values depend on every experiment's seed."""
    options = {
        "backend_options": {"method": "statevector", "noise_model": _noise_model()},
        "run_options": {"seed_simulator": 3, "shots": 200},
    }
    want = AerEstimatorV2(options=options).run(ESTIMATOR_PUBS).result()
    estimator = EstimatorV2(executor=celery_executor, options=options, max_job_size=1)
    got = estimator.run(ESTIMATOR_PUBS).result(timeout=TIMEOUT_S)
    _assert_same_evs(got, want)
    other = {**options, "run_options": {"seed_simulator": 4, "shots": 200}}
    shifted = AerEstimatorV2(options=other).run(ESTIMATOR_PUBS).result()
    assert not np.allclose(shifted[0].data.evs, want[0].data.evs)


def test_shot_split_results_are_reproducible_for_a_seed_whatever_the_worker_count(
    celery_executor,
):
    options = {
        "backend_options": {"method": "statevector", "noise_model": _noise_model()},
        "run_options": {"seed_simulator": 3, "shots": 150},
    }
    with cf.ThreadPoolExecutor(1) as one_thread:
        runs = [
            (celery_executor, 1),  # 2 workers, every chunk its own sub-job
            (one_thread, None),  # 1 thread, the automatic split
        ]
        samples = [
            SamplerV2(executor=ex, seed=9, max_shot_size=60, max_job_size=size)
            .run(SAMPLER_PUBS, shots=130)
            .result(timeout=TIMEOUT_S)
            for ex, size in runs
        ]
        values = [
            EstimatorV2(executor=ex, options=options, max_shot_size=40, max_job_size=size)
            .run(ESTIMATOR_PUBS)
            .result(timeout=TIMEOUT_S)
            for ex, size in runs
        ]
    _assert_same_bits(samples[0], samples[1])
    assert samples[0][0].data.meas.num_shots == 130  # chunks of 60, 60 and the remainder 10
    assert samples[0][1].data.c.num_shots == 50
    _assert_same_evs(values[0], values[1])
    unsplit = AerEstimatorV2(options=options).run(ESTIMATOR_PUBS).result()
    assert not np.allclose(values[0][0].data.evs, unsplit[0].data.evs)  # chunks are averaged


def test_a_primitive_job_is_retrieved_by_id_and_rebuilds_the_same_result(cluster):
    with CeleryExecutor(cluster.settings) as first:
        job = SamplerV2(executor=first, seed=2, max_job_size=2, tags=["scan"]).run(
            SAMPLER_PUBS, shots=100
        )
        want = job.result(timeout=TIMEOUT_S)
        job_id = job.job_id()
    assert job_id == job.job_set.job_id()
    with CeleryExecutor(cluster.settings) as other:
        found = DistributedPrimitiveJob.retrieve(job_id, other)
        assert found.status() is JobStatus.DONE
        assert found.seed == 2
        (info,) = [i for i in AerJobSet.list_sets(other) if i.job_id == job_id]
        assert info.tags == ("scan",) and info.status is JobStatus.DONE
        _assert_same_bits(found.result(timeout=TIMEOUT_S), want)
        # It is a job set like any other, and deleting it removes its layout too.
        assert AerJobSet.retrieve(job_id, other).status() is JobStatus.DONE
        found.delete()
        assert not other.redis.exists(primitive_key(job_id))
        with pytest.raises(PrimitiveJobNotFoundError):
            DistributedPrimitiveJob.retrieve(job_id, other)


def test_an_unknown_id_or_a_plain_job_set_is_not_a_primitive_job(celery_executor):
    plain = run(AerSimulator(), [_bell()], executor=celery_executor, shots=10)
    plain.result(timeout=TIMEOUT_S)
    for job_id in (plain.job_id(), "no-such-job"):
        with pytest.raises(PrimitiveJobNotFoundError, match="no primitive job"):
            DistributedPrimitiveJob.retrieve(job_id, celery_executor)


BAD_INPUT = [
    # Observables on the wrong number of qubits.
    (EstimatorV2, [(ANSATZ, SparsePauliOp("ZZ"), VALUES[0, 0])], {}, ValueError, "qubits"),
    # Parameter values that do not match the circuit's parameters.
    (EstimatorV2, [(ANSATZ, HAMILTONIAN, np.zeros(3))], {}, ValueError, "inconsistent"),
    # Shapes of observables and parameter values that do not broadcast.
    (EstimatorV2, [(ANSATZ, [HAMILTONIAN] * 2, VALUES[0])], {}, ValueError, "broadcastable"),
    (EstimatorV2, [(ANSATZ, HAMILTONIAN, VALUES[0, 0])], {"precision": -0.1}, ValueError, "neg"),
    # A single PUB not wrapped in a list.
    (EstimatorV2, [ANSATZ], {}, ValueError, "invalid Estimator pub-like"),
    (SamplerV2, [(MEASURED, np.zeros(2))], {}, ValueError, "inconsistent"),
    (SamplerV2, [(MEASURED, VALUES)], {"shots": 0}, ValueError, "positive"),
    (SamplerV2, [(MEASURED, VALUES, 1.5)], {}, TypeError, "integer"),
    (SamplerV2, ["not a circuit"], {}, ValueError, "length of pub"),
]


@pytest.mark.parametrize(("primitive", "pubs", "kwargs", "error", "match"), BAD_INPUT)
def test_bad_pubs_get_qiskits_own_errors_before_anything_is_queued(
    cluster, celery_executor, primitive, pubs, kwargs, error, match
):
    client = redis.Redis.from_url(cluster.redis_url)
    before = stored_keys(client)
    with pytest.raises(error, match=match):
        primitive(executor=celery_executor).run(pubs, **kwargs)
    assert stored_keys(client) == before
    assert client.llen(DEFAULT_QUEUE) == 0


def test_pubs_get_the_same_submit_checks_as_run_before_anything_is_queued(cluster, celery_executor):
    circuit = QuantumCircuit(3)
    circuit.rccx(0, 1, 2)  # has a definition, but Aer does not simulate it as such
    circuit.measure_all()
    client = redis.Redis.from_url(cluster.redis_url)
    before = stored_keys(client)
    with pytest.raises(InvalidInputError, match="rccx"):
        SamplerV2(executor=celery_executor).run([circuit])
    options = {"run_options": {"shot": 10}}
    with pytest.raises(InvalidInputError, match="did you mean 'shots'"):
        SamplerV2(executor=celery_executor, options=options).run(SAMPLER_PUBS)
    assert stored_keys(client) == before
    assert client.llen(DEFAULT_QUEUE) == 0


@pytest.mark.parametrize(
    "options",
    [
        {"executor": object()},
        {"max_job_size": 0},
        {"max_shot_size": -1},
        {"seed": 2**63},  # past the signed 64-bit seeds Aer takes
        {"seed": 1.5},
        {"owner": "a b"},
        {"priority": "urgent"},
    ],
)
def test_bad_options_are_refused_with_the_projects_error(celery_executor, options):
    kwargs = {"executor": celery_executor, **options}
    with pytest.raises(InvalidInputError):
        SamplerV2(**kwargs).run(SAMPLER_PUBS)


def test_a_primitive_job_runs_on_its_owners_queue_at_its_priority(celery_executor):
    sampler = SamplerV2(executor=celery_executor, seed=3, owner="carol", priority="low")
    job = sampler.run(SAMPLER_PUBS, shots=20)
    want = AerSamplerV2(seed=3).run(SAMPLER_PUBS, shots=20).result()
    _assert_same_bits(job.result(), want)
    record = registry.load(celery_executor.store, job.job_id())
    assert record.dispatch == Dispatch(owner_queue(DEFAULT_QUEUE, "carol"), priority="low")
    with cf.ThreadPoolExecutor(1) as pool, pytest.raises(InvalidInputError, match="Celery"):
        EstimatorV2(executor=pool, owner="carol")


def test_cancel_drops_the_queued_sub_jobs_of_a_primitive_job():
    release = threading.Event()
    with cf.ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(release.wait)  # holds the only thread: the job stays queued
        job = SamplerV2(executor=pool, seed=1, max_job_size=2).run(SAMPLER_PUBS, shots=20)
        assert job.status() is JobStatus.QUEUED
        assert job.cancel()
        release.set()
        blocker.result()
        assert job.status() is JobStatus.CANCELLED and job.cancelled()
        assert not job.cancel()
        with pytest.raises(JobSetFailedError):
            job.result()


def test_a_pub_without_classical_registers_warns_as_aer_does_and_gives_an_empty_result():
    pubs = [(ANSATZ, VALUES[0])]
    with pytest.warns(UserWarning, match="no output classical registers"):
        want = AerSamplerV2(seed=1).run(pubs, shots=10).result()
    with cf.ThreadPoolExecutor(1) as pool, pytest.warns(UserWarning, match="classical"):
        got = SamplerV2(executor=pool, seed=1).run(pubs, shots=10).result()
    assert len(got[0].data) == len(want[0].data) == 0
    assert got[0].data.shape == want[0].data.shape == (3,)
