"""A researcher's session: errors before the queue, failures told in a few lines, cleanup."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, JobSetCancelledError, Settings, run
from jobset.local import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def lonely(redis_server: RedisServer) -> Iterator[CeleryExecutor]:
    """A producer on a server no worker serves: whatever it submits stays queued."""
    settings = Settings(broker_url=redis_server.url, secret_key=secrets.token_hex(32))
    with CeleryExecutor(settings) as executor:
        yield executor


def _coins(n: int) -> list[QuantumCircuit]:
    circuits = []
    for i in range(n):
        circuit = QuantumCircuit(1, name=f"coin-{i}")
        circuit.h(0)
        circuit.measure_all()
        circuits.append(circuit)
    return circuits


def test_a_cancelled_set_raises_its_own_error_that_says_so_in_one_line(
    lonely: CeleryExecutor,
) -> None:
    job = run(AerSimulator(), _coins(40), executor=lonely, max_job_size=1, shots=10)
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
