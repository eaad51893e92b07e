"""Key rotation while a set runs, results that vanish, and Redis that may evict."""

from __future__ import annotations

import secrets
import warnings

import pytest
from qiskit_aer import AerSimulator

from jobset import (
    AerJobSet,
    CeleryExecutor,
    EvictionPolicyWarning,
    JobSetFailedError,
    SecurityError,
    Settings,
    run,
)
from jobset.local import LocalCluster, RedisServer
from jobset.protocol import Kind, result_key, task_id

from .faultkit import heavy_circuits, wait_until
from .workloads import qv_circuits

pytestmark = pytest.mark.integration


def _counts(result, n):
    return [result.get_counts(i) for i in range(n)]


def test_keys_rotate_while_a_set_runs_and_every_sub_job_is_counted_once():
    old, new = secrets.token_hex(32), secrets.token_hex(32)
    circuits = heavy_circuits(18, range(8), name="rotate")
    want = AerSimulator().run(circuits, shots=32, seed_simulator=8).result()
    with (
        RedisServer() as server,
        LocalCluster(
            workers=0, settings=Settings(broker_url=server.url, secret_key=old), concurrency=1
        ) as cluster,
    ):
        # Step 1: every process signs with the old key and already accepts the new one.
        before = Settings(broker_url=server.url, secret_key=old, previous_secret_keys=(new,))
        first = cluster.add_worker(settings=before)
        with CeleryExecutor(before) as ex:
            job = run(
                AerSimulator(), circuits, executor=ex, max_job_size=1, shots=32, seed_simulator=8
            )
            wait_until(lambda: job.progress().get("DONE", 0) >= 2, 120, "two sub-jobs done")
        # Step 2, mid-set: the old worker leaves (warm), one that signs with the new key
        # comes; the producer switches too.
        cluster.stop_worker(first)
        assert job.progress().get("DONE", 0) < 8
        after = Settings(broker_url=server.url, secret_key=new, previous_secret_keys=(old,))
        cluster.add_worker(settings=after)
        with CeleryExecutor(after) as ex:
            again = AerJobSet.retrieve(job.job_id(), ex)
            got = again.result(timeout=180)
            assert _counts(got, 8) == _counts(want, 8)
            signed_by = {
                key: sum(1 for i in range(8) if _verifies(server, job.job_id(), i, key))
                for key in (old, new)
            }
            assert signed_by[old] >= 2 and signed_by[new] >= 1, signed_by
            # Step 3: the old key is dropped; new sets need only the new one.
            only_new = Settings(broker_url=server.url, secret_key=new)
            with CeleryExecutor(only_new) as fresh:
                small = qv_circuits(2, name="after-rotation")
                done = run(AerSimulator(), small, executor=fresh, shots=16, seed_simulator=1)
                expected = AerSimulator().run(small, shots=16, seed_simulator=1).result()
                assert _counts(done.result(timeout=60), 2) == _counts(expected, 2)
                with pytest.raises(SecurityError):
                    AerJobSet.retrieve(job.job_id(), fresh)  # its record: the old key


def _verifies(server: RedisServer, jobset_id: str, index: int, key: str) -> bool:
    settings = Settings(broker_url=server.url, secret_key=key)
    with CeleryExecutor(settings) as ex:
        try:
            ex.store.get(Kind.RESULT, (jobset_id, index))
        except SecurityError:
            return False
    return True


def test_a_done_sub_job_whose_result_is_gone_fails_the_set_and_partial_keeps_the_rest(
    executor,
):
    circuits = qv_circuits(3, name="gone")
    job = run(AerSimulator(), circuits, executor=executor, max_job_size=1, shots=20)
    job.result(timeout=60)
    executor.redis.delete(result_key(job.job_id(), 1))  # expired, evicted or deleted
    with pytest.raises(JobSetFailedError, match="gone from Redis") as caught:
        job.result()
    assert [f.index for f in caught.value.failures] == [1]
    with pytest.raises(JobSetFailedError, match="gone from Redis"):
        job.worker_results(1)
    partial = job.result(partial=True)
    assert [e.success for e in partial.results] == [True, False, True]
    assert "gone from Redis" in partial.results[1].status


def test_a_set_proven_done_is_merged_from_its_signed_results_without_celerys_records(executor):
    """Every sub-job's signed end record says it succeeded: the wait reads none of
    Celery's per-sub-job records, so a set whose records are gone still merges."""
    circuits = qv_circuits(3, name="proven")
    job = run(
        AerSimulator(), circuits, executor=executor, max_job_size=1, shots=20, seed_simulator=5
    )
    want = _counts(job.result(timeout=60), 3)
    backend = executor.app.backend
    gone = [backend.get_key_for_task(task_id(job.job_id(), i)) for i in range(3)]
    assert executor.redis.delete(*gone) == 3
    again = AerJobSet.retrieve(job.job_id(), executor)
    assert _counts(again.result(timeout=30), 3) == want


def test_a_redis_that_may_evict_is_warned_about_once_per_executor():
    with RedisServer() as server:
        server.client().config_set("maxmemory-policy", "allkeys-lru")
        settings = Settings(broker_url=server.url, secret_key=secrets.token_hex(32))
        with CeleryExecutor(settings) as ex:
            with pytest.warns(EvictionPolicyWarning, match="allkeys-lru"):
                ex.check_reachable()
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                ex.check_reachable()  # once is enough
