"""Fault injection with real processes and real signals: nothing lost, nothing counted twice.

Each test kills or disturbs a real ``celery worker`` (or its pool child) while a sub-job
runs, then checks that the set still gives exactly the counts and memory of one
undisturbed ``AerSimulator.run``, and that the redelivery it relies on really happened
(the worker counts every start of a sub-job in Redis).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time

import pytest
from qiskit import QuantumCircuit
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from jobset import AdmissionWarning, CeleryExecutor, JobSetFailedError, run
from jobset.executors.celery.config import restore_interval_s
from jobset.local import LocalCluster, RedisServer
from jobset.protocol import SubJobRef, task_id
from jobset.settings import DEFAULT_VISIBILITY_TIMEOUT_S, Settings
from workers.lifecycle import lease_renewal_s

from .faultkit import (
    ends,
    heavy_circuits,
    held,
    lease_age_s,
    round_trip_s,
    starts,
    submit_exact,
    task_meta,
    wait_for_log,
    wait_started,
    wait_until,
)
from .workloads import assert_same_counts_and_memory, qv_circuits

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

SEED = 11
KEY = "f" * 32
SHOTS = 64
# Short enough for a test to see a dead worker's sub-job come back, and a held one outlive.
VISIBILITY_S = 3
MAX_WORKER_LOSSES = 2
# The goal for a dead worker's sub-job with the default settings: to run again within a
# minute and a half (the default visibility timeout plus one sweep is 70 s).
REDELIVERY_GOAL_S = 90


def reference(circuits):
    return (
        AerSimulator(method="statevector")
        .run(circuits, shots=SHOTS, seed_simulator=SEED, memory=True)
        .result()
    )


def submit(executor, circuits, **options):
    return submit_exact(executor, circuits, shots=SHOTS, seed=SEED, **options)


def test_a_worker_killed_mid_sub_job_is_redelivered_in_bounded_time_and_the_set_completes_exactly():
    circuits = heavy_circuits(20, [1]) + qv_circuits(4)
    with (
        LocalCluster(
            workers=2,
            settings=Settings(secret_key=KEY, visibility_timeout_s=VISIBILITY_S),
            private_server=True,
        ) as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        # The slack for a busy machine is measured now, on this cluster, not assumed.
        slack_s = 5 + 10 * round_trip_s(executor)
        bound_s = VISIBILITY_S + restore_interval_s(VISIBILITY_S)
        job = submit(executor, circuits)
        with held(executor, job, 0) as where:
            victim = next(w.index for w in cluster.workers if w.hostname == where["hostname"])
            cluster.kill_worker(victim)  # SIGKILL to the worker's whole process group
            killed_at = time.monotonic()
        wait_until(lambda: starts(executor, job, 0) == 2, bound_s + slack_s, "the redelivery")
        redelivered_after_s = time.monotonic() - killed_at

        # The second run outlives the visibility timeout and one sweep, and is not delivered
        # a third time: the surviving worker renews its lease while it runs.
        with held(executor, job, 0, times=2):
            held_at = time.monotonic()
            wait_until(lambda: time.monotonic() - held_at > bound_s, 2 * bound_s, "a sweep")
            assert starts(executor, job, 0) == 2 and ends(executor, job, 0) == 0
        result = job.result(timeout=120)
        assert starts(executor, job, 0) == 2 and ends(executor, job, 0) == 1
        assert all(starts(executor, job, k) == 1 for k in range(1, 5))
        assert job.status() is JobStatus.DONE
    logger.info("redelivered %.1f s after the kill (bound %d s)", redelivered_after_s, bound_s)
    assert_same_counts_and_memory(result, reference(circuits))


@pytest.fixture(scope="module")
def one_worker():
    """One worker whose sub-jobs may take it down twice before they end in ERROR."""
    settings = Settings(secret_key=KEY, max_worker_losses=MAX_WORKER_LOSSES)
    with (
        LocalCluster(workers=1, settings=settings, private_server=True, loglevel="INFO") as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        yield cluster, executor


def test_a_pool_child_killed_mid_sub_job_runs_it_again_and_the_set_completes_exactly(one_worker):
    cluster, executor = one_worker
    circuits = heavy_circuits(20, [2]) + qv_circuits(3)
    job = submit(executor, circuits)
    with held(executor, job, 0) as where:
        os.kill(where["pid"], signal.SIGKILL)  # the pool child, as the OOM killer would

    result = job.result(timeout=120)
    assert starts(executor, job, 0) == 2
    assert cluster.worker_pids  # the worker itself served on
    assert_same_counts_and_memory(result, reference(circuits))


def test_a_sub_job_that_keeps_killing_its_worker_ends_in_error_and_retry_failed_reruns_only_it(
    one_worker,
):
    _, executor = one_worker
    circuits = heavy_circuits(20, [3]) + qv_circuits(2)
    job = submit(executor, circuits)
    for time_ in range(1, MAX_WORKER_LOSSES + 1):
        with held(executor, job, 0, times=time_) as where:
            os.kill(where["pid"], signal.SIGKILL)

    job.wait_for_final_state(timeout=120, wait=0.1)
    assert job.status() is JobStatus.ERROR
    assert job.status([1, 2]) == [JobStatus.DONE, JobStatus.DONE]
    with pytest.raises(JobSetFailedError) as caught:
        job.result()
    [failure] = caught.value.failures
    assert failure.index == 0
    assert failure.message.startswith("RedeliveryLimitError")
    assert f"worker died {MAX_WORKER_LOSSES} times" in failure.message
    assert "JOBSET_MAX_WORKER_LOSSES=2" in failure.message
    done_at = [task_meta(executor, job, k)["date_done"] for k in (1, 2)]

    assert job.retry_failed() == [0]
    result = job.result(timeout=120)
    assert starts(executor, job, 0) == 1  # a fresh count: the retry ran once, undisturbed
    assert [task_meta(executor, job, k)["date_done"] for k in (1, 2)] == done_at
    assert_same_counts_and_memory(result, reference(circuits))


def test_a_sub_job_delivered_twice_is_counted_once_in_the_merge(cluster):
    circuits = qv_circuits(4)
    with CeleryExecutor(cluster.settings) as executor:
        job = submit(executor, circuits)
        # The same message again, as a broker redelivering past its visibility timeout would.
        ref = SubJobRef(job.job_id(), 1, 1)
        executor.app.send_task(
            "jobset.run_sub_job", kwargs=ref.to_kwargs(), task_id=task_id(job.job_id(), 1)
        )
        wait_until(lambda: ends(executor, job, 1) == 2, 60, "both deliveries to finish")
        result = job.result(timeout=60)
        assert starts(executor, job, 1) == 2
    assert len(result.results) == len(circuits)
    assert all(sum(result.get_counts(i).values()) == SHOTS for i in range(len(circuits)))
    assert_same_counts_and_memory(result, reference(circuits))


def test_a_deterministic_simulation_error_is_not_retried(cluster):
    too_big = QuantumCircuit(40, name="too-big")  # Aer refuses it: not enough memory
    too_big.h(range(40))
    too_big.measure_all()
    with CeleryExecutor(cluster.settings) as executor:
        with pytest.warns(AdmissionWarning):  # the producer says so, and queues it anyway
            job = submit(executor, [too_big, *qv_circuits(1)])
        job.wait_for_final_state(timeout=60, wait=0.1)
        assert job.status([0, 1]) == [JobStatus.ERROR, JobStatus.DONE]
        assert starts(executor, job, 0) == 1
        assert task_meta(executor, job, 0)["status"] == "FAILURE"
        with pytest.raises(JobSetFailedError) as caught:
            job.result()
    # Aer's own figure reaches the user.
    assert "Required memory" in caught.value.failures[0].message


def test_a_backend_connection_lost_while_storing_a_result_is_retried_inside_the_task():
    circuits = heavy_circuits(20, [4]) + qv_circuits(1)
    with (
        RedisServer(appendonly=True, requirepass="restart-me") as server,
        LocalCluster(
            workers=1,
            settings=Settings(broker_url=server.url, secret_key="k" * 32),
            loglevel="DEBUG",
        ) as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        job = submit(executor, circuits)
        log = cluster.workers[0].log_path
        with held(executor, job, 0, simulating_in=log):
            server.down()  # an outage: the sub-job finishes simulating while Redis is away
        line = wait_for_log(log, r"storing the result of sub-job 0 .* failed", 60)
        assert "retrying in" in line
        server.up()
        result = job.result(timeout=120)
        # Stored by the same run, after the outage: the simulation was not redone.
        assert starts(executor, job, 0) == 1
    assert_same_counts_and_memory(result, reference(circuits))


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_with_default_settings_a_dead_workers_sub_job_runs_again_within_90_s_and_a_long_one_once():
    killed_circuits = heavy_circuits(20, [5]) + qv_circuits(2)
    long_circuits = heavy_circuits(20, [6], name="long")
    with (
        # No JOBSET_VISIBILITY_TIMEOUT_S; DEBUG, for the line that says a simulation started.
        LocalCluster(workers=2, loglevel="DEBUG") as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        timeout_s = cluster.settings.visibility_timeout_s
        assert timeout_s == DEFAULT_VISIBILITY_TIMEOUT_S
        swept_by_s = timeout_s + restore_interval_s(timeout_s)

        killed = submit(executor, killed_circuits)
        with held(executor, killed, 0) as where:
            victim = next(w.index for w in cluster.workers if w.hostname == where["hostname"])
            cluster.kill_worker(victim)  # SIGKILL to the worker's whole process group
            killed_at = time.monotonic()

        # A sub-job longer than the timeout on the surviving worker, while the other waits:
        # held, so it is long on any machine, for as long as the test says.
        long = run(
            AerSimulator(method="statevector"),
            long_circuits,
            executor=executor,
            max_job_size=1,
            shots=SHOTS,
            seed_simulator=SEED,
            memory=True,
        )
        logs = [w.log_path for w in cluster.workers]
        with held(executor, long, 0, simulating_in=logs) as long_where:
            long_started_at = time.monotonic()
            survivor = next(w for w in cluster.workers if w.hostname == long_where["hostname"])
            cluster.add_worker()  # two live workers again: one is free for the redelivery

            # Bounded by the timeout plus one sweep: the last renewal was before the kill.
            rerun = wait_started(executor, killed, 0, times=2, timeout_s=2 * REDELIVERY_GOAL_S)
            redelivered_after_s = time.monotonic() - killed_at
            logger.info(
                "killed worker's sub-job started again %.1f s after the kill", redelivered_after_s
            )
            assert redelivered_after_s < REDELIVERY_GOAL_S, redelivered_after_s
            assert rerun["hostname"] != where["hostname"]
            assert rerun["hostname"] in cluster.worker_hostnames
            killed_result = killed.result(timeout=120)
            assert starts(executor, killed, 0) == 2 and ends(executor, killed, 0) == 1
            assert all(starts(executor, killed, k) == 1 for k in (1, 2))

            # Past the timeout and one sweep, the long sub-job still runs, started once, and
            # its worker renewed its lease meanwhile.
            wait_until(
                lambda: time.monotonic() - long_started_at > swept_by_s,
                2 * swept_by_s,
                "the long sub-job to outlive the timeout and one sweep",
            )
            assert starts(executor, long, 0) == 1 and ends(executor, long, 0) == 0
            age_s = lease_age_s(executor, long, 0)
            assert age_s is not None and age_s < 2 * lease_renewal_s(timeout_s), age_s

        long_result = long.result(timeout=300)
        line = wait_for_log(
            survivor.log_path, rf"sub-job 0 of {long.job_id()} simulated in [0-9.]+ s", 60
        )
        simulated_s = float(re.search(r"simulated in ([0-9.]+) s", line).group(1))
        logger.info("the long sub-job ran for %.1f s, started once", simulated_s)
        assert simulated_s > swept_by_s
        assert starts(executor, long, 0) == 1 and ends(executor, long, 0) == 1
        assert survivor.running()
        assert [killed.status(), long.status()] == [JobStatus.DONE, JobStatus.DONE]
    assert_same_counts_and_memory(killed_result, reference(killed_circuits))
    assert_same_counts_and_memory(long_result, reference(long_circuits))
