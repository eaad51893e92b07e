"""The distributed primitives are drop-ins for ``qiskit_aer.primitives``' V2 primitives.

What Aer's own V2 tests check (results of many PUB shapes, exact metadata, errors, the
defaults of a primitive built with no arguments, empty inputs), held here to Aer's own
results bit for bit: without an executor, on a thread pool, on the session's Celery
workers and on a real Dask cluster.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import redis
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister, transpile
from qiskit.circuit import Parameter
from qiskit.circuit.library import UnitaryGate, real_amplitudes
from qiskit.primitives import PrimitiveJob
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.providers import JobStatus
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer.aererror import AerError
from qiskit_aer.primitives import EstimatorV2 as AerEstimatorV2
from qiskit_aer.primitives import SamplerV2 as AerSamplerV2

from jobset import AdmissionWarning, CeleryExecutor, InvalidInputError, JobSetFailedError
from jobset.plan import MAX_SEED, MIN_SEED
from jobset.primitives import DistributedPrimitiveJob, EstimatorV2, SamplerV2
from jobset.protocol import DEFAULT_QUEUE

pytestmark = pytest.mark.integration

SEED = 123
EXECUTORS = ["none", "threads", "celery", "dask"]
DISTRIBUTED = EXECUTORS[1:]


@pytest.fixture(params=EXECUTORS)
def maybe_executor(request):
    """Each executor a primitive may run on; ``None`` is Aer's own primitive."""
    if request.param == "none":
        return None
    name = {"threads": "thread_pool", "celery": "executor", "dask": "dask_client"}[request.param]
    return request.getfixturevalue(name)


@pytest.fixture(params=DISTRIBUTED)
def distributed_executor(request):
    name = {"threads": "thread_pool", "celery": "executor", "dask": "dask_client"}[request.param]
    return request.getfixturevalue(name)


# ---------------------------------------------------------------- PUBs like Aer's tests'


def _bell() -> QuantumCircuit:
    qc = QuantumCircuit(2, name="Bell")
    qc.h(0)
    qc.cx(0, 1)
    qc.measure_all()
    return qc


def _registers() -> QuantumCircuit:
    """Three classical registers, some bits never measured."""
    qc = QuantumCircuit(
        QuantumRegister(3),
        ClassicalRegister(1, "a"),
        ClassicalRegister(5, "b"),
        ClassicalRegister(3, "c"),
    )
    qc.h(range(3))
    qc.measure([0, 1, 2, 2], [0, 2, 4, 5])
    return qc


def _empty_register() -> QuantumCircuit:
    registers = [QuantumRegister(1, "q"), ClassicalRegister(0, "c1"), ClassicalRegister(1, "c2")]
    qc = QuantumCircuit(*registers)
    qc.h(0)
    qc.measure(0, 0)
    return qc


def _aliased_registers() -> QuantumCircuit:
    """Registers that share bits, and conditions on them."""
    c1, c2 = ClassicalRegister(1, "c1"), ClassicalRegister(1, "c2")
    inner = QuantumCircuit(QuantumRegister(3, "q"), c1, c2)
    with inner.if_test((c1, 1)):
        inner.z(2)
    with inner.if_test((c2, 1)):
        inner.x(2)
    outer = QuantumCircuit(5, 5)
    outer.compose(inner, [0, 2, 3], [2, 4], inplace=True)
    qc = QuantumCircuit.copy_empty_like(outer)
    qc.ry(np.pi / 4, 2)
    qc.cx(2, 1)
    qc.cx(0, 1)
    qc.h(0)
    qc.measure(0, 2)
    qc.measure(1, 4)
    return qc


def _reversed_measurements() -> QuantumCircuit:
    x, y = Parameter("x"), Parameter("y")
    qc = QuantumCircuit(3, 3)
    qc.rx(x, 0)
    qc.rx(y, 1)
    qc.x(2)
    qc.measure(0, 2)
    qc.measure(1, 1)
    qc.measure(2, 0)
    return qc


def _unitary() -> QuantumCircuit:
    qc = QuantumCircuit(1)
    qc.append(UnitaryGate([[0, 1], [1, 0]]), [0])
    qc.measure_all()
    return qc


PQC = transpile(real_amplitudes(2, reps=2).measure_all(inplace=False), basis_gates=["ry", "cx"])
SAMPLER_PUBS = [
    _bell(),
    (PQC, [1, 2, 3, 4, 5, 6]),
    (PQC, np.linspace(0, 1, 5 * PQC.num_parameters).reshape(5, PQC.num_parameters)),
    SamplerPub(_bell(), shots=102),  # a second shot count: a second Aer run
    _registers(),
    _empty_register(),
    _aliased_registers(),
    (_reversed_measurements(), [[0, 0], [np.pi / 2, 0]]),
    _unitary(),
    QuantumCircuit(2),  # no classical register: warned, an empty result
]

ANSATZ = transpile(real_amplitudes(2, reps=2), basis_gates=["ry", "cx"])
H1 = SparsePauliOp.from_list([("II", 1), ("IZ", 2), ("XI", 3)])
H3 = SparsePauliOp.from_list([("ZI", 1), ("ZZ", 1)])
ESTIMATOR_PUBS = [
    (ANSATZ, [H1, H3], [[0, 1, 1, 2, 3, 5], [1, 2, 3, 4, 5, 6]]),
    (ANSATZ.assign_parameters([0, 1, 1, 2, 3, 5]), H1),
    (ANSATZ, SparsePauliOp("IZ"), np.random.default_rng(15).random((5, 6)), 0.0),
    (ANSATZ, H1, [0, 1, 1, 2, 3, 5], 0.004),  # its own precision
]
ESTIMATOR_OPTIONS = {"run_options": {"seed_simulator": 15}, "default_precision": 5e-3}


def _without_simulator_metadata(metadata) -> dict:
    assert isinstance(metadata["simulator_metadata"], dict)
    return {k: v for k, v in metadata.items() if k != "simulator_metadata"}


def assert_same_sampler_results(got, want) -> None:
    assert got.metadata == want.metadata == {"version": 2}
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert list(g.data) == list(w.data), i
        for name in w.data:
            assert g.data[name] == w.data[name], f"PUB {i} register {name} differs"
        assert _without_simulator_metadata(g.metadata) == _without_simulator_metadata(w.metadata)


def assert_same_estimator_results(got, want) -> None:
    assert got.metadata == want.metadata == {"version": 2}
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.data.evs, w.data.evs, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(g.data.stds, w.data.stds)
        assert _without_simulator_metadata(g.metadata) == _without_simulator_metadata(w.metadata)


# ---------------------------------------------------------------- results and metadata


def test_the_sampler_gives_aers_results_and_metadata_for_pubs_of_every_shape(maybe_executor):
    with pytest.warns(UserWarning, match="no output classical registers"):
        want = AerSamplerV2(default_shots=300, seed=SEED).run(SAMPLER_PUBS).result()
    sampler = SamplerV2(executor=maybe_executor, default_shots=300, seed=SEED)
    with pytest.warns(UserWarning, match="no output classical registers"):
        job = sampler.run(iter(SAMPLER_PUBS))  # any iterable of PUBs, as Aer takes
    assert_same_sampler_results(job.result(), want)
    assert job.status() is JobStatus.DONE
    if maybe_executor is None:  # Aer's own primitive, and its own job
        assert type(job) is PrimitiveJob
    else:  # the set's id and the seed are on the job, not in Aer's metadata
        assert isinstance(job, DistributedPrimitiveJob)
        assert job.job_id() == job.job_set.job_id() and job.seed == SEED


def test_the_estimator_gives_aers_values_and_metadata_for_pubs_of_every_shape(maybe_executor):
    want = AerEstimatorV2(options=ESTIMATOR_OPTIONS).run(ESTIMATOR_PUBS).result()
    estimator = EstimatorV2(executor=maybe_executor, options=ESTIMATOR_OPTIONS)
    job = estimator.run(ESTIMATOR_PUBS)
    assert_same_estimator_results(job.result(), want)
    assert [r.metadata["target_precision"] for r in want] == [5e-3, 5e-3, 0.0, 0.004]
    if maybe_executor is not None:
        assert job.seed == 15


def test_aers_metadata_test_holds_as_an_equality(maybe_executor):
    qc = QuantumCircuit(2)
    qc.measure_all()
    qc2 = qc.copy()
    qc2.metadata = {"a": 1}
    result = (
        SamplerV2(executor=maybe_executor, seed=SEED).run([(qc, None, 10), (qc2, None, 20)])
    ).result()
    assert result.metadata == {"version": 2}
    assert [_without_simulator_metadata(r.metadata) for r in result] == [
        {"shots": 10, "circuit_metadata": {}},
        {"shots": 20, "circuit_metadata": {"a": 1}},
    ]
    bare, tagged = QuantumCircuit(2), QuantumCircuit(2)
    tagged.metadata = {"a": 1}
    op = SparsePauliOp("ZZ")
    result = (
        EstimatorV2(executor=maybe_executor, options=ESTIMATOR_OPTIONS).run(
            [(bare, op), (tagged, op)], precision=0.1
        )
    ).result()
    assert result.metadata == {"version": 2}
    assert [_without_simulator_metadata(r.metadata) for r in result] == [
        {"target_precision": 0.1, "circuit_metadata": {}},
        {"target_precision": 0.1, "circuit_metadata": {"a": 1}},
    ]


# ---------------------------------------------------------------- defaults and edges


def test_primitives_built_with_no_arguments_are_aers():
    sampler, estimator = SamplerV2(), EstimatorV2()
    assert sampler.executor is None and estimator.executor is None
    assert sampler.default_shots == 1024 and sampler.seed is None
    assert SamplerV2(seed=SEED).seed == SEED
    counts = sampler.run([_bell()]).result()[0].data.meas.get_counts()
    assert sum(counts.values()) == 1024 and set(counts) <= {"00", "11"}
    assert estimator.run([(QuantumCircuit(1), SparsePauliOp("Z"))]).result()[0].data.evs == 1
    # Split sizes only mean something with an executor: refused rather than ignored.
    with pytest.raises(InvalidInputError, match="need an executor"):
        SamplerV2(max_job_size=2)


def test_from_backend_needs_no_executor_and_truncates_as_aer_does():
    """Aer's test_truncate: the same circuit on a 2- and a 5-qubit device."""
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.append(real_amplitudes(num_qubits=2, reps=2), [0, 1])
    op = SparsePauliOp.from_list([("II", -1.05), ("IZ", 0.39), ("ZZ", -0.01), ("XX", 0.18)])
    values = []
    for qubits in (2, 5):
        device = GenericBackendV2(num_qubits=qubits, seed=1)
        isa = transpile(qc, device, optimization_level=0, seed_transpiler=1)
        pub = [(isa, [op.apply_layout(isa.layout)], [[0, 1, 1, 2, 3, 5]])]
        ours = EstimatorV2.from_backend(device, options=ESTIMATOR_OPTIONS).run(pub, precision=0.01)
        aers = AerEstimatorV2.from_backend(device, options=ESTIMATOR_OPTIONS).run(
            pub, precision=0.01
        )
        assert_same_estimator_results(ours.result(), aers.result())
        values.append(ours.result()[0].data.evs[0])
    assert values[0] == pytest.approx(values[1], abs=0.3)


def test_an_empty_list_of_pubs_gives_aers_empty_result_and_stores_nothing(cluster, maybe_executor):
    client = redis.Redis.from_url(cluster.redis_url)
    before = set(client.scan_iter(count=1000))
    for primitive, aer in ((SamplerV2, AerSamplerV2), (EstimatorV2, AerEstimatorV2)):
        want = aer().run([]).result()
        job = primitive(executor=maybe_executor).run([])
        got = job.result()
        assert len(got) == len(want) == 0
        assert got.metadata == want.metadata == {"version": 2}
        assert job.status() is JobStatus.DONE
    # No job set key was written (workers' own keys come and go meanwhile).
    new = set(client.scan_iter(count=1000)) - before
    assert not [k for k in new if k.startswith(b"jobset:") and b":worker:" not in k]
    assert client.llen(DEFAULT_QUEUE) == 0


@pytest.mark.parametrize("seed", [-4, MIN_SEED, MAX_SEED, np.int64(7)], ids=repr)
def test_every_seed_aer_takes_gives_aers_bits_split_or_not(executor, seed):
    """On the Celery workers, every parameter-value set in its own sub-job."""
    pubs = SAMPLER_PUBS[1:4]
    want = AerSamplerV2(seed=seed).run(pubs, shots=50).result()
    got = SamplerV2(executor=executor, seed=seed, max_job_size=1).run(pubs, shots=50)
    assert_same_sampler_results(got.result(), want)
    options = {"run_options": {"seed_simulator": seed}}
    pub = [ESTIMATOR_PUBS[0]]
    want = AerEstimatorV2(options=options).run(pub).result()
    got = EstimatorV2(executor=executor, options=options, max_job_size=1).run(pub)
    assert_same_estimator_results(got.result(), want)


def test_precision_noise_with_a_negative_seed_fails_as_in_aer(executor):
    """numpy's generator, which Aer seeds with the seed, refuses a negative one."""
    options = {"run_options": {"seed_simulator": -4}}
    pub = [ESTIMATOR_PUBS[1]]
    with pytest.raises(ValueError, match="non-negative"):
        AerEstimatorV2(options=options).run(pub, precision=0.1).result()
    job = EstimatorV2(executor=executor, options=options).run(pub, precision=0.1)
    with pytest.raises(ValueError, match="non-negative"):
        job.result()


# ---------------------------------------------------------------- errors


def _too_big() -> QuantumCircuit:
    """Aer reports it failed (not enough memory for 40 qubits), in microseconds."""
    big = QuantumCircuit(40)
    big.h(range(40))
    big.t(0)  # not a Clifford circuit: Aer does not pick the stabilizer method
    big.measure_all()
    return big


def test_a_failed_simulation_is_caught_as_aers_error_and_as_a_job_set_failure(
    distributed_executor,
):
    with pytest.raises(AerError, match="Insufficient memory"):
        AerSamplerV2().run([_too_big()], shots=10).result()
    with warnings.catch_warnings(record=True) as seen:
        # With Celery the producer knows no live worker has the memory: it warns, and
        # (admit unset) queues the job all the same.
        warnings.simplefilter("always", AdmissionWarning)
        jobs = (
            SamplerV2(executor=distributed_executor).run([_bell(), _too_big()], shots=10),
            EstimatorV2(executor=distributed_executor).run(
                [(_too_big().remove_final_measurements(inplace=False), SparsePauliOp("Z" * 40))]
            ),
        )
    warned = [w for w in seen if issubclass(w.category, AdmissionWarning)]
    assert len(warned) == (2 if isinstance(distributed_executor, CeleryExecutor) else 0)
    assert all("Insufficient memory" in str(w.message) for w in warned)
    for job in jobs:
        with pytest.raises(AerError, match="Insufficient memory") as caught:
            job.result()
        assert isinstance(caught.value, JobSetFailedError)
        assert caught.value.jobset_id == job.job_id() and caught.value.failures
        assert job.status() is JobStatus.ERROR
