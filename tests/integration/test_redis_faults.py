"""Redis going away: restarts with and without persistence, and a broker that never answers."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from jobset import BrokerUnavailableError, CeleryExecutor, Settings, SubJobsLostError, run
from jobset.local import LocalCluster, RedisServer, free_port

from .faultkit import heavy_circuits, held, starts, submit_exact, wait_started
from .workloads import assert_same_counts_and_memory, qv_circuits

pytestmark = pytest.mark.integration

SEED = 5
SHOTS = 50
SECRET = "k" * 32


def submit(executor, circuits):
    return submit_exact(executor, circuits, shots=SHOTS, seed=SEED)


def reference(circuits):
    return (
        AerSimulator(method="statevector")
        .run(circuits, shots=SHOTS, seed_simulator=SEED, memory=True)
        .result()
    )


def test_redis_restarted_mid_run_with_aof_loses_nothing_and_the_waiting_producer_rides_it_out():
    circuits = heavy_circuits(19, range(4)) + qv_circuits(2)
    with (
        RedisServer(appendonly=True, requirepass="aof") as server,
        # A message handed to a worker just as Redis stops is not held by anyone once it
        # returns: it comes back after the visibility timeout, kept short here.
        LocalCluster(
            workers=2,
            settings=Settings(broker_url=server.url, secret_key=SECRET, visibility_timeout_s=10),
        ) as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        job = submit(executor, circuits)

        def restart_once_running() -> None:
            wait_started(executor, job, 0)
            server.restart()  # SIGTERM: Redis writes its AOF and stops; same port, same data

        with ThreadPoolExecutor(1) as pool:
            restarted = pool.submit(restart_once_running)
            result = job.result(timeout=120)  # waiting while Redis goes away and comes back
            restarted.result()
        assert job.status() is JobStatus.DONE
        assert all(starts(executor, job, k) >= 1 for k in range(len(circuits)))
    assert_same_counts_and_memory(result, reference(circuits))


def test_redis_restarted_without_persistence_reports_lost_sub_jobs_and_resubmit_lost_completes():
    circuits = heavy_circuits(19, range(4))
    with (
        RedisServer(appendonly=False, requirepass="volatile") as server,
        LocalCluster(
            workers=1, settings=Settings(broker_url=server.url, secret_key=SECRET)
        ) as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        job = submit(executor, circuits)
        # Held while Redis restarts: sub-job 0 is still running and 1 to 3 still queued,
        # however fast the machine.
        with held(executor, job, 0):
            server.restart()  # everything queued, every payload and result is gone

        # A wait without a deadline would never end: the wait finds the loss by itself.
        with pytest.raises(SubJobsLostError, match="resubmit_lost") as caught:
            job.result()
        lost = caught.value.indices
        # Sub-job 0 was running: its worker may store its result after the restart.
        assert {1, 2, 3} <= set(lost) <= {0, 1, 2, 3}
        assert set(job.lost()) <= set(lost)

        resubmitted = job.resubmit_lost()
        assert {1, 2, 3} <= set(resubmitted)
        result = job.result(timeout=120)
        assert job.lost() == []
        assert all(starts(executor, job, k) == 1 for k in resubmitted)
    assert_same_counts_and_memory(result, reference(circuits))


def _silent_port() -> tuple[socket.socket, int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_an_unreachable_broker_is_a_clear_error_within_seconds_without_its_password(kind):
    silent, port = _silent_port() if kind == "silent" else (None, free_port())
    url = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
    settings = Settings(broker_url=url, secret_key=SECRET, connect_timeout_s=2)
    try:
        with CeleryExecutor(settings) as executor:
            started = time.monotonic()
            with pytest.raises(BrokerUnavailableError) as caught:
                run(AerSimulator(), qv_circuits(1), executor=executor, shots=10)
            elapsed = time.monotonic() - started
    finally:
        if silent is not None:
            silent.close()
    # One attempt, not a retry loop: retries would take many connect timeouts.
    assert elapsed < 3 * settings.connect_timeout_s + 2, elapsed
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "broker" in message
    assert "hunter2" not in message and "hunter2" not in repr(caught.value)


def test_queued_and_running_sub_jobs_are_never_reported_lost():
    circuits = heavy_circuits(20, [7]) + qv_circuits(3)
    with (
        RedisServer(requirepass="steady") as server,
        CeleryExecutor(Settings(broker_url=server.url, secret_key=SECRET)) as executor,
    ):
        job = submit(executor, circuits)
        assert job.lost() == []  # all four wait in the queue: no worker is online
        with LocalCluster(workers=1, settings=Settings(broker_url=server.url, secret_key=SECRET)):
            wait_started(executor, job, 0)
            assert job.lost() == []  # one is held by the worker, three are queued
            assert job.result(timeout=120).success
        assert job.lost() == []
