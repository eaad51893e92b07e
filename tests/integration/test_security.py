"""Nothing read from Redis is unpickled unless its signature checks out."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Producer, Queue
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, JobSetFailedError, SecurityError, Settings, run
from jobset.deadline import wait_for
from jobset.local import LocalCluster, RedisServer
from jobset.protocol import DEFAULT_QUEUE, RUN_SUB_JOB_TASK, batch_key, result_key

from .faultkit import wait_until
from .workloads import qv_circuits

pytestmark = pytest.mark.integration


def _flip_last_byte(client, key: str) -> None:
    blob = bytearray(client.get(key))
    blob[-1] ^= 0x01
    client.set(key, bytes(blob), keepttl=True)


def test_a_stored_result_tampered_in_redis_is_refused_with_a_security_error(cluster, executor):
    job = run(AerSimulator(), qv_circuits(2), executor=executor, max_job_size=1, shots=20)
    job.result(timeout=60)
    _flip_last_byte(executor.redis, result_key(job.job_id(), 1))
    with pytest.raises(SecurityError, match="signature"):
        job.result()
    with pytest.raises(SecurityError):
        job.worker_results(1)
    assert job.worker_results(0).success  # the untouched sub-result still reads


def test_a_queued_payload_tampered_in_redis_fails_its_sub_job_and_the_worker_serves_on():
    with RedisServer() as server:
        settings = Settings(broker_url=server.url, secret_key="s" * 32)
        with CeleryExecutor(settings) as ex:
            job = run(AerSimulator(), qv_circuits(3), executor=ex, max_job_size=1, shots=20)
            _flip_last_byte(server.client(), batch_key(job.job_id(), 1))
            with LocalCluster(
                workers=1, settings=Settings(broker_url=server.url, secret_key="s" * 32)
            ):
                job.wait_for_final_state(timeout=60, wait=0.1)
                assert job.status() is JobStatus.ERROR
                assert job.status([0, 2]) == [JobStatus.DONE, JobStatus.DONE]
                with pytest.raises(JobSetFailedError, match="SecurityError") as caught:
                    job.result()
                assert [f.index for f in caught.value.failures] == [1]
                again = run(AerSimulator(), qv_circuits(1), executor=ex, shots=10)
                assert again.result(timeout=60).success


def test_a_producer_with_another_key_gets_security_errors_and_no_simulation(cluster):
    other = Settings(broker_url=cluster.redis_url, secret_key="another key entirely" * 2)
    with CeleryExecutor(other) as ex:
        job = run(AerSimulator(), qv_circuits(2), executor=ex, max_job_size=1, shots=20)
        wait_until(lambda: job.status([0, 1]) == [JobStatus.ERROR] * 2, 60, "both to fail")
        states = job._require_submitted().states()
        assert all("signature" in s.message for s in states), states
        assert not ex.redis.exists(result_key(job.job_id(), 0))
        # The workers' word that the sub-jobs ended is signed with their key, which this
        # producer cannot verify: the set is not taken as final (jobset.executors.celery.evidence).
        assert not job.in_final_state()


class _Exploit:
    """Pickles to a call that creates a file: proof of execution if it ever runs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_pickle_message_on_the_queue_executes_nothing_and_the_worker_serves_on(
    cluster, executor, tmp_path
):
    marker = tmp_path / "pwned"
    with Connection(cluster.redis_url) as conn:
        producer = Producer(conn)
        task_id = str(uuid.uuid4())
        producer.publish(
            [[], {"payload": _Exploit(marker)}, {}],
            serializer="pickle",
            exchange=Exchange(DEFAULT_QUEUE, type="direct"),
            routing_key=DEFAULT_QUEUE,
            declare=[Queue(DEFAULT_QUEUE)],
            headers={"lang": "py", "task": RUN_SUB_JOB_TASK, "id": task_id},
        )
    # Any job after it on the same queue completing shows the pickle message was consumed.
    wait_for(
        lambda: not executor.redis.llen(DEFAULT_QUEUE),
        60,
        "the queue to drain",
        error=AssertionError,
    )
    job = run(AerSimulator(), qv_circuits(2), executor=executor, max_job_size=1, shots=10)
    assert job.result(timeout=60).success
    assert not marker.exists()
    logs = "".join(p.read_text(errors="replace") for p in cluster.log_dir.glob("*.log"))
    assert "ContentDisallowed" in logs or "content type" in logs.lower()
