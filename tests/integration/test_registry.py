"""Job sets outlive the producer: records in Redis, retrieve by id, streaming, clean-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import redis
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from jobset import AerJobSet, CeleryExecutor, JobSetNotFoundError, run
from jobset.local import RedisServer
from jobset.protocol import INDEX_KEY, record_key

from .workloads import assert_same_counts_and_memory, qv_circuits

pytestmark = pytest.mark.integration

SUBMIT_IN_ANOTHER_PROCESS = textwrap.dedent(
    """
    import json, sys
    from qiskit_aer import AerSimulator
    from jobset import CeleryExecutor, run
    from tests.integration.workloads import qv_circuits

    with CeleryExecutor() as executor:
        job = run(AerSimulator(), qv_circuits(6), executor=executor, max_job_size=2,
                  shots=200, seed_simulator=13, memory=True, tags=["sweep", "alice"])
        print(json.dumps({"id": job.job_id()}))
    """
)


def _in_another_process(code: str, settings) -> str:
    env = dict(os.environ, **settings.to_env())
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_set_submitted_by_another_process_is_retrieved_whole_by_its_id(cluster, executor):
    job_id = json.loads(_in_another_process(SUBMIT_IN_ANOTHER_PROCESS, cluster.settings))["id"]
    job = AerJobSet.retrieve(job_id, executor)
    got = job.result(timeout=120)
    want = AerSimulator().run(qv_circuits(6), shots=200, seed_simulator=13, memory=True).result()
    assert_same_counts_and_memory(got, want)
    assert got.job_id == job_id
    assert got.time_taken > 0
    assert job.status() is JobStatus.DONE
    assert job.worker("qv3") == 1 and job.worker(5) == 2
    assert job.worker_job(1).job_id() == f"{job_id}-1"
    assert [e.header["name"] for e in job.worker_results(2).results] == ["qv4", "qv5"]
    assert job.plan.seed_simulator == 13
    listed = {info.job_id: info for info in AerJobSet.list_sets(executor)}
    assert listed[job_id].tags == ("sweep", "alice")
    assert listed[job_id].status is JobStatus.DONE
    assert (listed[job_id].sub_jobs, listed[job_id].experiments) == (3, 6)


def test_a_set_is_cancelled_from_another_process():
    with RedisServer() as server:
        from jobset import Settings

        settings = Settings(broker_url=server.url, secret_key="r" * 32)
        with CeleryExecutor(settings) as ex:
            job = run(AerSimulator(), qv_circuits(3), executor=ex, max_job_size=1, shots=10)
            _in_another_process(
                "from jobset import AerJobSet, CeleryExecutor\n"
                f"assert AerJobSet.retrieve({job.job_id()!r}, CeleryExecutor()).cancel()\n",
                settings,
            )
            assert job.status() is JobStatus.CANCELLED


def test_a_retrieved_set_keeps_its_time_limit_for_reruns(executor):
    job = run(AerSimulator(), qv_circuits(2), executor=executor, shots=10, timeout_s=60)
    job.result(timeout=60)
    again = AerJobSet.retrieve(job.job_id(), executor)
    assert again.timeout_s == job.timeout_s == 60


def test_an_unknown_id_raises_a_clear_error_instead_of_pending_forever(executor):
    with pytest.raises(JobSetNotFoundError, match="no job set 'not-a-set'"):
        AerJobSet.retrieve("not-a-set", executor)


def test_results_stream_as_sub_jobs_finish_and_callbacks_report_progress(executor):
    job = run(
        AerSimulator(),
        qv_circuits(6),
        executor=executor,
        max_job_size=1,
        shots=50,
        seed_simulator=4,
    )
    seen = []
    for sub_job in job.as_completed(timeout=120):
        assert sub_job.status() is JobStatus.DONE
        seen.append((sub_job.index, sub_job.result().get_counts(0)))
    assert sorted(k for k, _ in seen) == list(range(6))
    merged = job.result()
    for k, counts in seen:
        assert merged.get_counts(k) == counts

    polls = []
    again = run(AerSimulator(), qv_circuits(4), executor=executor, max_job_size=1, shots=50)
    again.wait_for_final_state(
        timeout=120, wait=0.1, callback=lambda jid, status, j: polls.append(j.progress())
    )
    assert polls and polls[-1] == {"DONE": 4}
    assert all(sum(p.values()) == 4 for p in polls)


def test_every_key_of_the_project_has_a_ttl_and_delete_removes_a_set(cluster, executor):
    job = run(
        AerSimulator(),
        qv_circuits(4),
        executor=executor,
        max_job_size=1,
        shots=20,
        max_shot_size=10,
    )
    job.result(timeout=120)
    job.worker_job(0).cancel()  # already final: writes nothing, but exercises the path
    client = redis.Redis.from_url(cluster.redis_url)
    queue_keys = {b"jobset.cpu", b"jobset.gpu", b"unacked", b"unacked_index"}
    untimed = [
        key
        for key in client.scan_iter(count=1000)
        if key not in queue_keys
        and not key.startswith((b"_kombu.", b"unacked_mutex"))
        and client.ttl(key) < 0
    ]
    assert untimed == []
    assert client.zscore(INDEX_KEY, job.job_id()) is not None

    job.delete()
    leftovers = [k for k in client.scan_iter(match=f"*{job.job_id()}*", count=1000)]
    assert leftovers == []
    assert client.zscore(INDEX_KEY, job.job_id()) is None
    assert not client.exists(record_key(job.job_id()))
    with pytest.raises(JobSetNotFoundError):
        AerJobSet.retrieve(job.job_id(), executor)
