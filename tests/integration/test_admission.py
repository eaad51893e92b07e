"""Admission control, routing by size, fair share between owners and the result cache,
with real workers on a private server."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from jobset import AerJobSet, CeleryExecutor, run
from jobset.errors import AdmissionError
from jobset.local import LocalCluster, RedisServer
from jobset.protocol import (
    DEFAULT_QUEUE,
    LARGE_QUEUE,
    OWNER_QUEUES_KEY,
    PRIORITY_SEP,
    owner_queue,
    queue_lists,
    worker_key,
)
from jobset.settings import Settings

from .faultkit import heavy_circuits, held, stored_keys, task_meta, wait_until
from .workloads import qv_circuits, wide

pytestmark = pytest.mark.integration

KEY = "a" * 32
SMALL_WORKER_MB = 64
LARGE_WORKER_MB = 128


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """One default worker (no -Q) and one that serves only the large queue."""
    small = Settings(secret_key=KEY, worker_memory_mb=SMALL_WORKER_MB)
    with LocalCluster(workers=1, settings=small, private_server=True, loglevel="INFO") as local:
        large = dataclasses.replace(local.settings, worker_memory_mb=LARGE_WORKER_MB)
        local.add_worker(queues=[LARGE_QUEUE], settings=large)
        yield local


@pytest.fixture(scope="module")
def executor(cluster: LocalCluster) -> Iterator[CeleryExecutor]:
    # A state of 1 MiB or more counts as large here (a 16-qubit statevector).
    with CeleryExecutor(dataclasses.replace(cluster.settings, large_memory_mb=1)) as ex:
        yield ex


def _records(client: redis.Redis, cluster: LocalCluster) -> list[dict[str, Any]]:
    raws = [client.get(worker_key(h)) for h in cluster.worker_hostnames]
    return [json.loads(r) for r in raws if r]


def test_workers_advertise_memory_cores_and_whether_aer_sees_a_gpu_from_a_pool_child(
    cluster, executor
):
    def looked() -> list[dict[str, Any]] | None:
        records = _records(executor.redis, cluster)
        ready = len(records) == 2 and all(r.get("gpu") is not None for r in records)
        return records if ready else None

    records = wait_until(looked, 30.0, "both workers' GPU flag in their heartbeat")
    by_queue = {r["queues"][0]: r for r in records}
    assert by_queue[DEFAULT_QUEUE]["memory_bytes"] == SMALL_WORKER_MB * 1024 * 1024
    assert by_queue[LARGE_QUEUE]["memory_bytes"] == LARGE_WORKER_MB * 1024 * 1024
    for record in records:
        assert record["cores"] >= 1 and record["gpu"] is False
        assert record["pid"] != 0
    capacities = executor.workers()
    assert {c.memory_bytes for c in capacities} == {
        SMALL_WORKER_MB * 1024 * 1024,
        LARGE_WORKER_MB * 1024 * 1024,
    }


def test_a_set_too_large_for_every_live_worker_is_refused_with_its_need_and_the_largest_capacity(
    executor,
):
    before = stored_keys(executor.redis)
    with pytest.raises(AdmissionError) as caught:
        run(
            AerSimulator(method="statevector"),
            [wide(4), wide(24)],
            executor=executor,
            admit="wait",
            shots=10,
        )
    message = str(caught.value)
    assert "circuit 1 needs 256.0 MiB" in message
    assert "the largest" in message and "has 128.0 MiB" in message
    assert caught.value.need_bytes == 16 * 2**24
    assert caught.value.largest_bytes == LARGE_WORKER_MB * 1024 * 1024
    assert stored_keys(executor.redis) == before  # nothing was stored or queued


def test_admit_wait_queues_when_no_worker_is_online_and_admit_require_refuses(
    redis_server: RedisServer,
):
    settings = Settings(broker_url=redis_server.url, secret_key=b"k" * 32)
    with CeleryExecutor(settings) as ex:
        with pytest.raises(AdmissionError, match="no worker is online"):
            run(AerSimulator(), qv_circuits(1), executor=ex, admit="require", shots=10)
        job = run(AerSimulator(), qv_circuits(2), executor=ex, admit="wait", shots=10)
        assert job.status() is JobStatus.QUEUED
        assert job.cancel()


def test_large_sub_jobs_go_to_the_large_queue_and_small_ones_to_the_default_queue(
    cluster, executor
):
    circuits = [wide(4), wide(17), wide(5)]  # 256 B, 2 MiB, 512 B of state
    job = run(
        AerSimulator(method="statevector"),
        circuits,
        executor=executor,
        max_job_size=1,
        shots=20,
        seed_simulator=3,
    )
    result = job.result(timeout=60)
    assert [len(result.get_counts(i)) > 0 for i in range(3)] == [True] * 3
    ran_on = [
        executor.app.AsyncResult(job.worker_job(k).job_id()).result["worker"] for k in range(3)
    ]
    records = _records(executor.redis, cluster)
    large = next(r["hostname"] for r in records if LARGE_QUEUE in r["queues"])
    assert ran_on[1] == large
    assert ran_on[0] != large and ran_on[2] != large


@contextlib.contextmanager
def _worker_held(executor: CeleryExecutor) -> Iterator[None]:
    """The default worker held on a sub-job of its own: sets submitted in the block queue
    up however fast the machine, and are taken in turn once it ends.  The sub-job's states
    stay under the large-queue threshold (15 qubits: 512 KiB), so it runs on that worker."""
    blocker = run(
        AerSimulator(method="statevector"),
        heavy_circuits(15, range(60), name="blocker"),
        executor=executor,
        max_job_size=60,
        shots=10,
    )
    with held(executor, blocker, 0):
        yield
    assert blocker.result(timeout=120).success


def _end(executor: CeleryExecutor, job: AerJobSet, index: int) -> datetime | None:
    """When sub-job ``index`` ended, as Celery recorded it (None while it has not)."""
    meta = task_meta(executor, job, index)
    if not meta or meta.get("status") not in ("SUCCESS", "FAILURE") or not meta.get("date_done"):
        return None
    return datetime.fromisoformat(str(meta["date_done"]))


def _last_end(executor: CeleryExecutor, job: AerJobSet, size: int) -> datetime:
    ends = [_end(executor, job, k) for k in range(size)]
    assert all(ends), ends
    return max(e for e in ends if e is not None)


def _ended_before(executor: CeleryExecutor, job: AerJobSet, size: int, moment: datetime) -> int:
    """How many of ``job``'s sub-jobs ended before ``moment``: what another set waited for."""
    return sum(1 for k in range(size) if (e := _end(executor, job, k)) is not None and e < moment)


def _sweep(executor: CeleryExecutor, *, size: int = 60, **sharing: str) -> AerJobSet:
    """``size`` one-circuit sub-jobs: enough to keep the default worker busy for a while."""
    return run(
        AerSimulator(), qv_circuits(size), executor=executor, max_job_size=1, shots=10, **sharing
    )


def test_a_small_set_behind_a_big_sweep_of_another_owner_finishes_while_the_sweep_runs(executor):
    # Workers pick up a new owner's queue within a second; let both owners be known
    # first, so the test measures the turns and not that discovery.
    for owner in ("sweeper", "alice"):
        run(AerSimulator(), qv_circuits(1), executor=executor, shots=10, owner=owner).result(
            timeout=60
        )
    with _worker_held(executor):  # both queue up behind the held worker
        sweep = _sweep(executor, owner="sweeper")
        small = run(
            AerSimulator(),
            qv_circuits(2),
            executor=executor,
            max_job_size=1,
            shots=10,
            owner="alice",
        )
    small.result(timeout=60)
    ran_first = _ended_before(executor, sweep, 60, _last_end(executor, small, 2))
    # Without owners the small set would wait for all 60; with turns it waits for a few.
    assert ran_first <= 40, ran_first
    queues = {q.decode() for q in executor.redis.zrange(OWNER_QUEUES_KEY, 0, -1)}
    assert {owner_queue(DEFAULT_QUEUE, "sweeper"), owner_queue(DEFAULT_QUEUE, "alice")} <= queues
    assert 0 < executor.redis.ttl(OWNER_QUEUES_KEY) <= executor.settings.result_ttl_s
    assert sweep.result(timeout=120).success


def test_a_normal_set_is_taken_before_a_low_priority_sweep_queued_ahead_of_it(executor):
    with _worker_held(executor):  # both queue up behind the held worker
        sweep = _sweep(executor, priority="low", size=150)
        small = run(AerSimulator(), qv_circuits(2), executor=executor, max_job_size=1, shots=10)
    small.result(timeout=60)
    ran_first = _ended_before(executor, sweep, 150, _last_end(executor, small, 2))
    # In one queue, first in first out, the small set would wait for every sub-job of the
    # sweep queued before it; taken first, it waits at most for the ones already running.
    assert ran_first <= 2, ran_first
    assert sweep.result(timeout=120).success


def test_lost_sub_jobs_are_published_again_to_their_owner_queue_at_their_priority():
    with (
        RedisServer() as server,
        CeleryExecutor(Settings(broker_url=server.url, secret_key="s" * 32)) as ex,
    ):
        circuits = qv_circuits(2)
        job = run(
            AerSimulator(),
            circuits,
            executor=ex,
            max_job_size=1,
            shots=10,
            owner="bob",
            priority="lowest",
        )
        bob = owner_queue(DEFAULT_QUEUE, "bob")
        low = f"{bob}{PRIORITY_SEP}6"

        def lengths() -> dict[str, int]:
            return {n: ex.redis.llen(n) for n in queue_lists(bob) + queue_lists(DEFAULT_QUEUE)}

        assert {n: k for n, k in lengths().items() if k} == {low: 2}
        ex.redis.delete(low)  # what a restart without persistence does to them
        wait_until(lambda: job.lost() == [0, 1], 60, "both sub-jobs reported lost")
        # A set rebuilt by id knows where its sub-jobs went from its record.
        again = AerJobSet.retrieve(job.job_id(), ex)
        assert again.resubmit_lost() == [0, 1]
        assert {n: k for n, k in lengths().items() if k} == {low: 2}
        with LocalCluster(workers=1, settings=Settings(broker_url=server.url, secret_key="s" * 32)):
            result = again.result(timeout=60)
        assert [sum(result.get_counts(i).values()) for i in range(2)] == [10, 10]


def test_a_resubmitted_set_reuses_cached_results_with_the_same_counts(executor):
    circuits = qv_circuits(3, name="cached")
    options = {"shots": 50, "seed_simulator": 21, "max_job_size": 1, "cache_ttl_s": 60}
    first = run(AerSimulator(), circuits, executor=executor, **options)
    want = first.result(timeout=60)
    again = run(AerSimulator(), circuits, executor=executor, **options)
    got = again.result(timeout=60)
    assert [got.get_counts(i) for i in range(3)] == [want.get_counts(i) for i in range(3)]
    summaries = [executor.app.AsyncResult(again.worker_job(k).job_id()).result for k in range(3)]
    assert all(s["cached"] for s in summaries)
    other = run(AerSimulator(), circuits, executor=executor, **{**options, "seed_simulator": 22})
    other.result(timeout=60)
    fresh = [executor.app.AsyncResult(other.worker_job(k).job_id()).result for k in range(3)]
    assert not any(s.get("cached") for s in fresh)
    keys = list(executor.redis.scan_iter(match="jobset:cache:*", count=1000))
    assert len(keys) == 6 and all(0 < executor.redis.ttl(k) <= 60 for k in keys)


def test_the_primitives_share_run_s_submit_path_admission_routing_and_cache_included(
    cluster, executor
):
    from jobset.primitives import SamplerV2

    statevector = {"backend_options": {"method": "statevector"}}
    too_big = SamplerV2(executor=executor, admit="wait", options=statevector)
    with pytest.raises(AdmissionError, match=r"needs 256\.0 MiB"):
        too_big.run([wide(24)], shots=10)

    sampler = SamplerV2(
        executor=executor, seed=5, max_job_size=1, cache_ttl_s=60, options=statevector
    )
    pubs = [wide(4), wide(17)]  # 256 B and 2 MiB of state: the second one is large
    first = sampler.run(pubs, shots=20)
    want = first.result(timeout=60)
    summaries = [
        executor.app.AsyncResult(first.job_set.worker_job(k).job_id()).result for k in range(2)
    ]
    records = _records(executor.redis, cluster)
    large = next(r["hostname"] for r in records if LARGE_QUEUE in r["queues"])
    assert [s["worker"] == large for s in summaries] == [False, True]

    again = sampler.run(pubs, shots=20)
    got = again.result(timeout=60)
    cached = [
        executor.app.AsyncResult(again.job_set.worker_job(k).job_id()).result for k in range(2)
    ]
    assert all(s["cached"] for s in cached)
    assert [got[i].data.meas.get_counts() for i in range(2)] == [
        want[i].data.meas.get_counts() for i in range(2)
    ]
