"""Big sets stay cheap: cancel frees the queues at once, results are read in chunks."""

from __future__ import annotations

import secrets

import pytest
from qiskit import QuantumCircuit
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, Settings, run
from jobset.local import LocalCluster, RedisServer
from jobset.protocol import DEFAULT_QUEUE, queue_lists, runs_key

pytestmark = pytest.mark.integration


def _coins(n: int, name: str) -> list[QuantumCircuit]:
    out = []
    for i in range(n):
        qc = QuantumCircuit(1, name=f"{name}{i}")
        qc.h(0)
        qc.measure_all()
        out.append(qc)
    return out


def test_cancel_of_a_big_queued_set_removes_its_messages_so_the_next_set_runs_at_once():
    key = secrets.token_hex(32)
    with RedisServer() as server:
        settings = Settings(broker_url=server.url, secret_key=key)
        with CeleryExecutor(settings) as ex:
            big = run(AerSimulator(), _coins(2000, "big"), executor=ex, max_job_size=1, shots=1)
            other = run(AerSimulator(), _coins(3, "keep"), executor=ex, max_job_size=1, shots=4)
            queued = sum(ex.broker.llen(name) for name in queue_lists(DEFAULT_QUEUE))
            assert queued == 2003
            assert big.cancel()
            left = sum(ex.broker.llen(name) for name in queue_lists(DEFAULT_QUEUE))
            assert left == 3  # the other set's messages stay, in their order
            assert big.status() is JobStatus.CANCELLED
            one = run(AerSimulator(), _coins(5, "one"), executor=ex, max_job_size=1, shots=8)
            assert one.worker_job(4).cancel()
            left = sum(ex.broker.llen(name) for name in queue_lists(DEFAULT_QUEUE))
            assert left == 3 + 4
            with LocalCluster(workers=1, settings=Settings(broker_url=server.url, secret_key=key)):
                assert other.result(timeout=60).success
                after = run(AerSimulator(), _coins(4, "after"), executor=ex, max_job_size=1,
                            shots=4)  # fmt: skip
                assert after.result(timeout=30).success
                assert big.status() is JobStatus.CANCELLED
                assert not ex.redis.exists(runs_key(big.job_id()))  # none of them ever ran
                partial = one.result(timeout=60, partial=True)
                assert [e.success for e in partial.results] == [True] * 4 + [False]
                assert one.status(4) is JobStatus.CANCELLED
