"""Code written for qiskit-aer <= 0.14's executors runs unchanged, on every kind of executor.

The behaviours qiskit-aer 0.14 checked for its thread-pool and Dask executors (random and
noisy circuits split by ``max_job_size`` and ``max_shot_size``, a non-negative
``time_taken``, the executor's ``shutdown()`` at teardown), plus the historic call shapes
of its job set, on a thread pool, on the session's Celery workers and on a real
``dask.distributed`` cluster.  Here a split run is held to the unsplit run exactly where
seeds make that possible, rather than to a tolerance.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import pickle
import uuid

import pytest
from distributed import Client, LocalCluster
from qiskit import QuantumCircuit, transpile
from qiskit.circuit.random import random_circuit
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator
from qiskit_aer.noise.noise_model import AerJSONEncoder

from jobset import AerJobSet, CeleryExecutor, DistributedAerSimulator, SubJob, run
from jobset.executors.aer import local_runner
from jobset.local import RedisServer
from jobset.plan import make_plan
from jobset.settings import Settings

from .faultkit import heavy_circuits, wait_until
from .workloads import kraus_noise_model

pytestmark = pytest.mark.integration

TIMEOUT_S = 120
SHOTS = 4000
EXECUTORS = ["threads", "celery", "dask"]


@pytest.fixture(params=EXECUTORS)
def any_executor(request):
    name = {"threads": "thread_pool", "celery": "executor", "dask": "dask_client"}[request.param]
    return request.getfixturevalue(name)


def _random_circuits(backend) -> list[QuantumCircuit]:
    circuits = [random_circuit(num_qubits=2, depth=2, seed=i) for i in range(10)]
    for circuit in circuits:
        circuit.measure_all()
    return transpile(circuits, backend)


def _noisy_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(3, name="noisy")
    qc.h(0)
    qc.cx(0, 1)
    qc.sx(2)
    qc.cx(1, 2)
    qc.measure_all()
    return transpile(qc, basis_gates=["cx", "rz", "sx", "x"], optimization_level=0)


@pytest.mark.parametrize("max_job_size", [None, 1, 2, 3])
def test_random_circuits_give_the_unsplit_counts_for_every_job_size(any_executor, max_job_size):
    backend = DistributedAerSimulator(
        method="statevector", executor=any_executor, max_job_size=max_job_size
    )
    circuits = _random_circuits(backend)
    job = backend.run(circuits, shots=SHOTS, seed_simulator=101)
    assert isinstance(job, AerJobSet) and job.executor() is any_executor
    result = job.result(timeout=TIMEOUT_S)
    want = AerSimulator(method="statevector").run(circuits, shots=SHOTS, seed_simulator=101)
    assert result.success and result.time_taken >= 0
    assert result.get_counts() == want.result().get_counts()
    if max_job_size is not None:
        assert len(job.worker_job()) == -(-len(circuits) // max_job_size)


@pytest.mark.parametrize("max_shot_size", [None, 100, 1000])
def test_a_kraus_noise_model_set_on_the_backend_is_split_by_shots(any_executor, max_shot_size):
    circuit = _noisy_circuit()
    noise = kraus_noise_model()
    backend = DistributedAerSimulator(
        method="statevector", executor=any_executor, max_job_size=1, max_shot_size=max_shot_size
    )
    backend.set_options(noise_model=noise)  # as 0.14's own tests set it, after construction
    result = backend.run(circuit, shots=SHOTS, seed_simulator=8).result(timeout=TIMEOUT_S)
    want = AerSimulator(method="statevector", noise_model=noise).run(
        circuit, shots=SHOTS, seed_simulator=8
    )
    counts, expected = result.get_counts(), want.result().get_counts()
    assert result.success and sum(counts.values()) == SHOTS
    if max_shot_size is None:
        assert counts == expected
    else:  # other seeds per chunk: the same distribution, within 5% of the shots
        for outcome in set(counts) | set(expected):
            assert abs(counts.get(outcome, 0) - expected.get(outcome, 0)) <= 0.05 * SHOTS


def test_a_merged_result_pickles_and_dumps_to_json_as_aers_does(any_executor):
    circuit = _noisy_circuit()
    job = run(AerSimulator(), [circuit] * 3, executor=any_executor, max_job_size=1, shots=50)
    result = job.result(timeout=TIMEOUT_S)
    assert pickle.loads(pickle.dumps(result)).get_counts() == result.get_counts()
    dumped = json.loads(json.dumps(result.to_dict(), cls=AerJSONEncoder))
    assert [e["data"]["counts"] for e in dumped["results"]] == [
        e.data.counts for e in result.results
    ]


def test_none_or_no_argument_means_every_sub_job_as_in_0_14(any_executor):
    job = run(
        AerSimulator(),
        [_noisy_circuit()] * 4,
        executor=any_executor,
        max_job_size=1,
        shots=64,
        seed_simulator=5,
    )
    everything = job.worker_job(None)
    assert all(isinstance(s, SubJob) for s in everything)
    assert [s.index for s in everything] == [s.index for s in job.worker_job()] == [0, 1, 2, 3]
    merged = job.result(timeout=TIMEOUT_S)
    assert job.worker_results(None).get_counts() == merged.get_counts()
    assert job.worker_results(timeout=TIMEOUT_S).get_counts() == merged.get_counts()
    assert job.worker_results([0, 1]).get_counts() == merged.get_counts()[:2]
    # The fixes over 0.14 stay: status() is the aggregate, worker() the sub-job's index.
    assert job.status() is JobStatus.DONE and job.done()
    assert job.status(None) is JobStatus.DONE
    assert job.worker(2) == 2


def test_sub_jobs_name_their_executor_and_circuits_as_0_14s_did(any_executor):
    circuits = [_noisy_circuit(), _noisy_circuit()]
    job = run(AerSimulator(), circuits, executor=any_executor, max_job_size=1, shots=10)
    assert [s.executor() for s in job.worker_job()] == [any_executor] * 2
    assert [s.circuits() for s in job.worker_job()] == [[c] for c in circuits]
    job.result(timeout=TIMEOUT_S)


def test_a_set_constructed_without_an_executor_runs_on_one_thread_as_in_0_14():
    backend = AerSimulator()
    circuits = [_noisy_circuit()] * 3
    plan = make_plan(circuits, shots=40, max_job_size=1, seed_simulator=4)
    job = AerJobSet(backend, "historic", local_runner(backend), plan.sub_batches, plan=plan)
    assert isinstance(job.executor(), cf.ThreadPoolExecutor)
    assert job.executor()._max_workers == 1
    job.submit()
    want = backend.run(circuits, shots=40, seed_simulator=4).result()
    assert job.result(timeout=TIMEOUT_S).get_counts() == want.get_counts()


def test_sub_job_ids_are_unique_across_sets(any_executor):
    jobs = [
        run(AerSimulator(), [_noisy_circuit()] * 3, executor=any_executor, max_job_size=1)
        for _ in range(2)
    ]
    ids = [s.job_id() for job in jobs for s in job.worker_job()]
    assert len(set(ids)) == len(ids) == 6
    assert not set(ids) & {job.job_id() for job in jobs}
    if not isinstance(any_executor, CeleryExecutor):
        assert all(uuid.UUID(i).version == 4 for i in ids)  # one uuid per sub-job, as 0.14
    for job in jobs:
        job.result(timeout=TIMEOUT_S)


def test_a_dask_client_is_taken_as_it_is_and_spreads_by_its_threads(dask_client):
    # Less work than one sub-job's target, more than an idle thread costs: the automatic
    # split gives each of the cluster's 2 threads one sub-job (jobset.cost.sub_jobs_for_work).
    circuits = heavy_circuits(18, range(8), name="spread")
    job = run(AerSimulator(), circuits, executor=dask_client, shots=20)
    assert job.executor() is dask_client
    assert len(job.worker_job()) == 2
    assert job.result(timeout=TIMEOUT_S).success


# ---------------------------------------------------------------- shutdown


def _clients(server: RedisServer) -> int:
    return int(server.client().info("clients")["connected_clients"])


def test_celery_executor_shutdown_and_with_release_every_connection(redis_server):
    """On a server without workers, so that only the producer and this probe connect."""
    settings = Settings(broker_url=redis_server.url, secret_key=b"s" * 32)
    baseline = _clients(redis_server)
    executor = CeleryExecutor(settings)
    job = run(AerSimulator(), [_noisy_circuit()] * 2, executor=executor, max_job_size=1)
    assert job.status() is JobStatus.QUEUED  # nobody consumes this server's queue
    assert job.cancel()
    assert _clients(redis_server) > baseline
    executor.shutdown()
    wait_until(lambda: _clients(redis_server) <= baseline, 60, "the connections to close")
    executor.shutdown(wait=False)  # a second call is harmless, as for concurrent.futures

    with CeleryExecutor(settings) as inside:
        run(AerSimulator(), [_noisy_circuit()], executor=inside).cancel()
        assert _clients(redis_server) > baseline
        # Closing one executor leaves the others of the process working (kombu shares
        # broker pools by URL unless told otherwise).
        other = CeleryExecutor(settings)
        run(AerSimulator(), [_noisy_circuit()], executor=other).cancel()
        other.close()
        run(AerSimulator(), [_noisy_circuit()], executor=inside).cancel()
    wait_until(lambda: _clients(redis_server) <= baseline, 60, "the connections to close")
    # Used again after shutdown, an executor connects again.
    run(AerSimulator(), [_noisy_circuit()], executor=executor).cancel()
    executor.close()


def test_celery_executor_shutdown_leaves_submitted_sets_running_on_the_workers(cluster):
    circuits = [_noisy_circuit()] * 4
    first = CeleryExecutor(cluster.settings)
    job = run(AerSimulator(), circuits, executor=first, max_job_size=1, shots=30, seed_simulator=2)
    first.shutdown(wait=True)
    with CeleryExecutor(cluster.settings) as other:
        found = AerJobSet.retrieve(job.job_id(), other)
        got = found.result(timeout=TIMEOUT_S)
    want = AerSimulator().run(circuits, shots=30, seed_simulator=2).result()
    assert got.get_counts() == want.get_counts()


def test_local_executors_shut_down_after_a_set_as_in_0_14s_teardown():
    circuit = _noisy_circuit()
    pool = cf.ThreadPoolExecutor(max_workers=1)
    cluster = LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    )
    client = Client(cluster)
    try:
        for executor in (pool, client):
            backend = DistributedAerSimulator(executor=executor, max_job_size=1)
            assert backend.run([circuit] * 2, shots=10).result(timeout=TIMEOUT_S).success
    finally:
        pool.shutdown()
        client.shutdown()
        cluster.close()
    with pytest.raises(RuntimeError):
        pool.submit(print)
