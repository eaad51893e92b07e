"""States, failures, cancel and the historic AerJobSet methods, on real Celery workers."""

from __future__ import annotations

import json
import time
from unittest.mock import ANY

import pytest
import redis
from qiskit import QuantumCircuit
from qiskit.providers import JobError, JobStatus, JobTimeoutError
from qiskit_aer import AerSimulator

from jobset import (
    AdmissionWarning,
    AerJobSet,
    CeleryExecutor,
    ConfigurationError,
    InvalidInputError,
    JobSetFailedError,
    JobSetStateError,
    Settings,
    SimulationFailedError,
    run,
)
from jobset.local import LocalCluster, RedisServer
from jobset.protocol import DEFAULT_QUEUE, result_key

from .faultkit import ends, held, stored_keys, wait_until
from .faultkit import heavy_circuits as make_heavy
from .workloads import qv_circuits

pytestmark = pytest.mark.integration

# Queued behind two held sub-jobs in the deadline test: each would add a full timeout if the
# wait gave every sub-job its own deadline.
SUB_JOBS_WAITED_ON = 40


def _too_big_for_memory() -> QuantumCircuit:
    """Aer refuses it with success=False ("Insufficient memory"), in microseconds."""
    big = QuantumCircuit(40, name="too-big")
    big.h(range(40))
    big.measure_all()
    return big


def test_historic_methods_report_sub_jobs_task_ids_and_indices(executor):
    circuits = qv_circuits(6)
    job = run(
        AerSimulator(), circuits, executor=executor, max_job_size=2, shots=100, seed_simulator=1
    )
    assert isinstance(job, AerJobSet) and job.version == 1
    job.wait_for_final_state(timeout=120, wait=0.2)
    assert job.status() is JobStatus.DONE
    assert job.status(0) is JobStatus.DONE
    assert job.status([0, 2]) == [JobStatus.DONE, JobStatus.DONE]
    assert job.worker(0) == 0 and job.worker(3) == 1 and job.worker(5) == 2
    assert job.worker("qv4") == 2
    assert job.worker(circuits[4]) == 2
    sub_job, index = job.job(3)
    assert index == 1 and sub_job.job_id() == job.worker_job(1).job_id()
    assert sub_job.job_id() == f"{job.job_id()}-1"
    assert sub_job.status() is JobStatus.DONE
    alone = job.worker_results(1)
    assert [e.header["name"] for e in alone.results] == ["qv2", "qv3"]
    both = job.worker_results([2, 0])
    assert [e.header["name"] for e in both.results] == ["qv4", "qv5", "qv0", "qv1"]
    assert sub_job.result().get_counts(1) == job.result().get_counts(3)
    assert job.executor() is executor and job.backend() is not None
    assert job.cancel() is False  # already final
    with pytest.raises(JobSetStateError):
        job.submit()
    with pytest.raises(InvalidInputError):
        job.worker(99)


def test_a_succeeded_sub_job_reads_to_celery_as_celery_itself_would_record_it(executor):
    """The worker writes Celery's SUCCESS record itself, with the rest of its end, so
    Celery does not write it again: Celery's readers must see exactly its own record."""
    circuits = [QuantumCircuit(1, 1, name=f"c{i}") for i in range(2)]
    for circuit in circuits:
        circuit.h(0)
        circuit.measure(0, 0)
    job = run(AerSimulator(), circuits, executor=executor, max_job_size=1, shots=5)
    job.result(timeout=60)
    backend = executor.app.backend
    for k in range(2):
        task_id = job.worker_job(k).job_id()
        key = backend.get_key_for_task(task_id)
        meta = json.loads(executor.redis.get(key))
        assert set(meta) == {"status", "result", "traceback", "children", "date_done", "task_id"}
        assert meta["status"] == "SUCCESS" and meta["task_id"] == task_id
        assert meta["traceback"] is None and meta["children"] == []
        assert 0 < executor.redis.ttl(key) <= backend.expires
        found = executor.app.AsyncResult(task_id)
        assert found.state == "SUCCESS" and found.date_done is not None
        assert found.result == {"experiments": 1, "shots": 5, "success": True, "worker": ANY}
        (run_k,) = [r for r in job.timeline().runs if r.index == k]
        assert run_k.state == "SUCCESS" and run_k.worker == found.result["worker"]


def test_shot_split_experiment_maps_to_the_list_of_its_chunk_sub_jobs(executor):
    job = run(
        AerSimulator(),
        qv_circuits(2),
        executor=executor,
        max_job_size=1,
        max_shot_size=40,
        shots=100,
        seed_simulator=1,
    )
    job.result(timeout=120)
    assert job.worker(0) == [0, 1, 2] and job.worker(1) == [3, 4, 5]
    assert [pos for _, pos in job.job(1)] == [0, 0, 0]


def test_aer_failure_makes_the_set_error_and_result_lists_every_failed_sub_job(executor):
    circuits = [*qv_circuits(2), _too_big_for_memory(), *qv_circuits(1, name="tail")]
    with pytest.warns(AdmissionWarning, match="circuit 2 needs"):  # queued all the same
        job = run(
            AerSimulator(method="statevector"),
            circuits,
            executor=executor,
            max_job_size=1,
            shots=50,
            seed_simulator=1,
        )
    job.wait_for_final_state(timeout=120, wait=0.2)
    assert job.status() is JobStatus.ERROR
    assert job.status(2) is JobStatus.ERROR and job.status(3) is JobStatus.DONE
    with pytest.raises(JobSetFailedError) as caught:
        job.result()
    error = caught.value
    assert isinstance(error, JobError)
    assert [f.index for f in error.failures] == [2]
    assert error.failures[0].task_id == job.worker_job(2).job_id()
    assert "Insufficient memory" in error.failures[0].message
    assert error.failures[0].error_class is SimulationFailedError  # typed, not only words
    assert "sub-job 2" in str(error)

    partial = job.result(partial=True)
    assert [e.success for e in partial.results] == [True, True, False, True]
    assert "Insufficient memory" in partial.results[2].status
    assert partial.results[3].header["name"] == "tail0"
    assert not partial.success


def test_a_set_stays_queued_while_no_worker_runs_it_and_completes_once_one_starts():
    with RedisServer() as server:
        settings = Settings(broker_url=server.url, secret_key="k" * 32)
        with CeleryExecutor(settings) as ex:
            job = run(
                AerSimulator(),
                qv_circuits(3),
                executor=ex,
                max_job_size=1,
                shots=50,
                seed_simulator=3,
            )
            assert job.status() is JobStatus.QUEUED
            assert job.progress() == {"QUEUED": 3}
            assert server.client().llen(DEFAULT_QUEUE) == 3
            with pytest.raises(JobTimeoutError):
                job.result(timeout=0.3)
            with LocalCluster(workers=1, settings=settings):
                result = job.result(timeout=120)
            assert result.success and job.status() is JobStatus.DONE


def test_cancel_while_no_worker_is_online_holds_when_a_worker_starts_later():
    with RedisServer() as server:
        settings = Settings(broker_url=server.url, secret_key="k" * 32)
        with CeleryExecutor(settings) as ex:
            job = run(AerSimulator(), qv_circuits(4), executor=ex, max_job_size=1, shots=50)
            assert job.cancel() is True
            assert job.status() is JobStatus.CANCELLED
            with LocalCluster(workers=1, settings=settings) as local:
                # Wait for the worker to consume every message, then check none ran.
                wait_until(
                    lambda: server.client().llen(DEFAULT_QUEUE) == 0,
                    60,
                    "the worker to take the cancelled messages",
                )
                after = run(AerSimulator(), qv_circuits(1), executor=ex, shots=10)
                assert after.result(timeout=60).success  # the worker served on
                assert local.worker_pids
            client = server.client()
            assert not any(client.exists(result_key(job.job_id(), k)) for k in range(4))
            assert job.status([0, 1, 2, 3]) == [JobStatus.CANCELLED] * 4
            with pytest.raises(JobSetFailedError):
                job.result(timeout=10)


@pytest.fixture(scope="module")
def heavy_circuits():
    """Seconds each: long enough to be seen running, then held for as long as a test needs."""
    return make_heavy(20, range(4))


def test_cancel_stops_running_sub_jobs_and_workers_serve_the_next_set(executor, heavy_circuits):
    job = run(
        AerSimulator(method="statevector"),
        heavy_circuits,
        executor=executor,
        max_job_size=1,
        shots=10,
    )
    # Both running sub-jobs are held: only the cancel can end them, however fast the machine.
    with held(executor, job, 0), held(executor, job, 1):
        assert job.status() is JobStatus.RUNNING and job.running()
        assert job.cancel() is True
        job.wait_for_final_state(timeout=60, wait=0.1)
        assert job.status() is JobStatus.CANCELLED and job.cancelled()
        assert set(job.status([0, 1, 2, 3])) == {JobStatus.CANCELLED}
        assert [ends(executor, job, k) for k in (0, 1)] == [0, 0]
    nxt = run(AerSimulator(), qv_circuits(4), executor=executor, max_job_size=1, shots=20)
    assert nxt.result(timeout=60).success


def test_cancelling_one_sub_job_leaves_the_others_running_to_completion(executor):
    job = run(AerSimulator(), qv_circuits(6), executor=executor, max_job_size=1, shots=20)
    sub = job.worker_job(5)
    cancelled = sub.cancel()
    job.wait_for_final_state(timeout=60, wait=0.2)
    if cancelled:
        assert job.status(5) is JobStatus.CANCELLED
        assert job.status() is JobStatus.CANCELLED
        partial = job.result(partial=True)
        assert [e.success for e in partial.results] == [True] * 5 + [False]
    else:  # it had already finished: nothing to cancel
        assert job.status() is JobStatus.DONE
    # A sub-job cancelled while queued reads CANCELLED at once, but its message is still
    # on the queue until a worker drops it; let that happen here, not in the next test.
    wait_until(
        lambda: executor.broker.llen(DEFAULT_QUEUE) == 0 and not executor.broker.exists("unacked"),
        30,
        "the cancelled sub-job's message to be dropped",
    )


@pytest.mark.parametrize(
    ("circuits", "options", "message"),
    [
        ("not a circuit", {}, "QuantumCircuit"),
        ([QuantumCircuit(1), 42], {}, r"circuits\[1\]"),
        ([], {}, "empty"),
        (None, {"shots": 0}, "shots"),
        (None, {"shots": -5}, "shots"),
        (None, {"max_job_size": 0}, "max_job_size"),
        (None, {"max_shot_size": -1}, "max_shot_size"),
    ],
)
def test_bad_input_is_refused_before_anything_is_queued(
    cluster, executor, circuits, options, message
):
    client = redis.Redis.from_url(cluster.redis_url)
    before = stored_keys(client)
    with pytest.raises(InvalidInputError, match=message):
        run(
            AerSimulator(),
            qv_circuits(1) if circuits is None else circuits,
            executor=executor,
            **options,
        )
    assert stored_keys(client) == before
    assert client.llen(DEFAULT_QUEUE) == 0


def test_an_executor_of_the_wrong_kind_is_refused():
    with pytest.raises(InvalidInputError, match="executor"):
        run(AerSimulator(), qv_circuits(1), executor=object())


def test_a_missing_secret_key_is_refused_at_the_edge():
    with pytest.raises(ConfigurationError, match="JOBSET_SECRET_KEY"):
        CeleryExecutor(broker_url="redis://127.0.0.1:1/0", secret_key="")
    with pytest.raises(ConfigurationError):
        Settings.from_env({})


def test_result_waits_share_one_deadline(executor, heavy_circuits):
    job = run(
        AerSimulator(method="statevector"),
        [*heavy_circuits[:2], *qv_circuits(SUB_JOBS_WAITED_ON)],
        executor=executor,
        max_job_size=1,
        shots=10,
    )
    timeout_s = 0.5
    try:
        # Both workers are held: no sub-job can end, so every wait runs to its deadline.
        with held(executor, job, 0), held(executor, job, 1):
            start = time.monotonic()
            with pytest.raises(JobTimeoutError):
                job.result(timeout=timeout_s)
            waited_s = time.monotonic() - start
            # A deadline per sub-job would wait at least this long; one for the set, far less.
            per_sub_job_s = (SUB_JOBS_WAITED_ON + 2) * timeout_s
            assert timeout_s <= waited_s < per_sub_job_s, waited_s
            job.cancel()
    finally:
        job.cancel()
        job.wait_for_final_state(timeout=60, wait=0.1)
