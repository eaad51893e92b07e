"""A researcher's session: errors before the queue, failures told in a few lines, cleanup."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, InvalidInputError, JobSetCancelledError, Settings, run
from jobset.errors import AdmissionError, AdmissionWarning
from jobset.local import LocalCluster, RedisServer
from jobset.protocol import DEFAULT_QUEUE

from .workloads import coins, wide

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A server of this module's own: prune removes every set another key wrote there."""
    with RedisServer() as own:
        yield own


def _producer(server: RedisServer) -> CeleryExecutor:
    return CeleryExecutor(Settings(broker_url=server.url, secret_key=secrets.token_hex(32)))


@pytest.fixture
def lonely(server: RedisServer) -> Iterator[CeleryExecutor]:
    """A producer on a server no worker serves: whatever it submits stays queued."""
    with _producer(server) as executor:
        yield executor


def _cli(executor: CeleryExecutor, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSET_")}
    return subprocess.run(
        [sys.executable, "-m", "jobset.cli", *args],
        env={**env, **executor.settings.to_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _queued_naming(executor: CeleryExecutor, job_id: str) -> int:
    return sum(job_id.encode() in m for m in executor.broker.lrange(DEFAULT_QUEUE, 0, -1))


def _keys_naming(executor: CeleryExecutor, job_id: str) -> list[bytes]:
    return [k for k in executor.redis.scan_iter(match="*") if job_id.encode() in k]


def test_a_cancelled_set_raises_its_own_error_that_says_so_in_one_line(
    lonely: CeleryExecutor,
) -> None:
    job = run(AerSimulator(), coins(40), executor=lonely, max_job_size=1, shots=10)
    assert job.cancel()
    with pytest.raises(JobSetCancelledError) as caught:
        job.result(timeout=30)
    message = str(caught.value)
    assert message == (
        f"job set {job.job_id()} was cancelled: 0 of 40 sub-job(s) had finished, 40 cancelled; "
        "result(partial=True) returns the finished ones (the others success=False), "
        ".failures lists the rest"
    )
    assert len(caught.value.failures) == 40
    partial = job.result(timeout=30, partial=True)
    assert [e.success for e in partial.results] == [False] * 40


def test_a_set_written_with_another_key_is_named_so_once_and_delete_force_removes_it(
    lonely: CeleryExecutor, server: RedisServer
) -> None:
    with _producer(server) as wrong_key:
        foreign = run(AerSimulator(), coins(3), executor=wrong_key, max_job_size=1, shots=10)
        foreign_id = foreign.job_id()
    listed = _cli(lonely, "ls")
    assert listed.returncode == 0
    warned = [line for line in listed.stderr.splitlines() if foreign_id in line]
    assert len(warned) == 1 and "written by another deployment's key" in warned[0]
    status = _cli(lonely, "status", foreign_id)
    assert status.returncode == 2 and status.stderr.count("\n") == 1, status.stderr
    assert "written by another deployment's key" in status.stderr
    assert f"jobset delete --force {foreign_id}" in status.stderr
    refused = _cli(lonely, "delete", foreign_id)
    assert refused.returncode == 2 and _keys_naming(lonely, foreign_id)
    assert _queued_naming(lonely, foreign_id) == 3
    forced = _cli(lonely, "delete", "--force", foreign_id)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.startswith(f"{foreign_id}: removed ")
    assert _keys_naming(lonely, foreign_id) == []  # record, payloads, metadata
    assert _queued_naming(lonely, foreign_id) == 0
    assert foreign_id not in _cli(lonely, "ls").stderr


def test_prune_removes_unverifiable_sets_and_junk_index_entries_and_says_which(
    lonely: CeleryExecutor, server: RedisServer
) -> None:
    mine = run(AerSimulator(), coins(2), executor=lonely, max_job_size=1, shots=10)
    with _producer(server) as wrong_key:
        foreign = [
            run(AerSimulator(), coins(2), executor=wrong_key, max_job_size=1, shots=10).job_id()
            for _ in range(2)
        ]
    lonely.redis.zadd("jobset:index", {"../../x": time.time()})
    dry = _cli(lonely, "prune", "--dry-run")
    assert dry.returncode == 0 and all(f"would remove {i}" in dry.stdout for i in foreign)
    assert all(_keys_naming(lonely, i) for i in foreign)
    pruned = _cli(lonely, "prune")
    assert pruned.returncode == 0, pruned.stderr
    lines = pruned.stdout.splitlines()
    for job_id in foreign:
        assert any(
            line.startswith(f"removed {job_id}: written by another deployment's key")
            for line in lines
        ), pruned.stdout
        assert _keys_naming(lonely, job_id) == []
    assert "removed ../../x: not a job set id" in lines
    assert mine.job_id() not in pruned.stdout
    assert _cli(lonely, "status", mine.job_id()).returncode == 0
    assert mine.cancel()


def test_what_a_producer_can_know_fails_at_submit_and_memory_past_every_worker_warns(
    server: RedisServer,
) -> None:
    key = secrets.token_hex(32)
    small = Settings(broker_url=server.url, secret_key=key, worker_memory_mb=64)
    with LocalCluster(workers=1, settings=small) as cluster, CeleryExecutor(cluster.settings) as ex:
        before = set(ex.redis.scan_iter(match="jobset:*"))
        theta = Parameter("theta")
        unbound = QuantumCircuit(1, name="unbound")
        unbound.rx(theta, 0)
        unbound.measure_all()
        with pytest.raises(InvalidInputError, match=r"unbound parameters \(theta\) and no"):
            run(AerSimulator(), [unbound], executor=ex)
        with pytest.raises(InvalidInputError, match="did you mean 'stabilizer'"):
            run(AerSimulator(), coins(1), executor=ex, method="stabiliser")
        assert set(ex.redis.scan_iter(match="jobset:*")) - before <= {b"jobset:index"}
        # 24 qubits need 256 MiB of statevector; the only worker offers 64 MiB.
        with pytest.warns(AdmissionWarning, match=r"circuit 0 needs 256\.0 MiB.*admit='wait'"):
            job = run(AerSimulator(method="statevector"), [wide(24)], executor=ex, shots=1)
        job.cancel()
        with pytest.raises(AdmissionError, match="more than any live worker offers"):
            run(AerSimulator(method="statevector"), [wide(24)], executor=ex, admit="wait")
