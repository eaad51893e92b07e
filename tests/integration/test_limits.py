"""Limits and refusals: time limits, result sizes, memory, bad input and version skew."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import re

import pytest
import redis
from qiskit import QuantumCircuit
from qiskit.circuit.library import quantum_volume
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, InvalidInputError, JobSetFailedError, run
from jobset.errors import VersionSkewWarning
from jobset.executors import versions as compat_module
from jobset.local import LocalCluster
from jobset.protocol import DEFAULT_QUEUE, result_key
from jobset.settings import Settings

from .faultkit import heavy_circuits, held, starts, stored_keys
from .workloads import assert_same_counts_and_memory, qv_circuits

pytestmark = pytest.mark.integration


def _nothing_queued(client: redis.Redis, before: set[bytes]) -> None:
    assert stored_keys(client) == before
    assert client.llen(DEFAULT_QUEUE) == 0


def test_a_sub_job_past_its_time_limit_ends_in_error_and_the_worker_serves_on(executor):
    circuits = [*heavy_circuits(20, [5]), *qv_circuits(2)]
    job = run(AerSimulator(), circuits, executor=executor, max_job_size=1, shots=10, timeout_s=2)
    # Held, the first sub-job runs past its limit on any machine; the worker's main process,
    # which enforces the limit, runs on.
    with held(executor, job, 0):
        job.wait_for_final_state(timeout=60, wait=0.1)
    assert job.status([0, 1, 2]) == [JobStatus.ERROR, JobStatus.DONE, JobStatus.DONE]
    with pytest.raises(JobSetFailedError) as caught:
        job.result()
    [failure] = caught.value.failures
    assert failure.message.startswith("SubJobTimeoutError")
    assert "ran past its time limit of 2 s" in failure.message
    # The pool child was stopped and replaced; the next set runs at once.
    after = run(AerSimulator(), qv_circuits(2), executor=executor, max_job_size=1, shots=10)
    assert after.result(timeout=60).success


@pytest.mark.parametrize("timeout_s", [0, -1, "10", True])
def test_a_time_limit_that_is_not_a_positive_number_is_refused(executor, timeout_s):
    with pytest.raises(InvalidInputError, match="timeout_s"):
        run(AerSimulator(), qv_circuits(1), executor=executor, timeout_s=timeout_s)


def test_a_time_limit_on_a_thread_pool_is_refused_because_a_pool_cannot_stop_a_function():
    with (
        cf.ThreadPoolExecutor(1) as pool,
        pytest.raises(InvalidInputError, match="CeleryExecutor"),
    ):
        run(AerSimulator(), qv_circuits(1), executor=pool, timeout_s=5)


def test_a_result_over_the_size_limit_fails_its_sub_job_with_the_size_and_stores_nothing():
    statevector = quantum_volume(16, seed=1)  # a random state: 1 MiB that does not compress
    statevector.save_statevector()
    statevector.name = "big-state"
    settings = Settings(secret_key="l" * 32, max_result_bytes=256 * 1024)
    with (
        LocalCluster(workers=1, settings=settings, private_server=True) as cluster,
        CeleryExecutor(cluster.settings) as ex,
    ):
        circuits = [statevector, *qv_circuits(1)]
        job = run(AerSimulator(method="statevector"), circuits, executor=ex, max_job_size=1)
        job.wait_for_final_state(timeout=60, wait=0.1)
        assert job.status([0, 1]) == [JobStatus.ERROR, JobStatus.DONE]
        with pytest.raises(JobSetFailedError) as caught:
            job.result()
        assert not ex.redis.exists(result_key(job.job_id(), 0))
        assert starts(ex, job, 0) == 1  # a size is deterministic: not retried
    message = caught.value.failures[0].message
    assert message.startswith("ResultTooLargeError")
    assert re.search(r"sub-job 0 is [\d.]+ KiB \(\d+ bytes, signed\)", message), message
    assert "over JOBSET_MAX_RESULT_BYTES=262144 (256.0 KiB)" in message


@pytest.mark.parametrize(
    ("qubits", "options", "need"),
    [
        (27, {"method": "statevector"}, "2.0 GiB (16 B x 2^27: 27 qubits"),
        (28, {"method": "statevector", "precision": "single"}, "2.0 GiB (8 B x 2^28"),
        (14, {"method": "density_matrix"}, "4.0 GiB (16 B x 2^28: 14 qubits"),
        (27, {}, "method automatic"),
    ],
)
def test_a_circuit_too_large_for_the_memory_limit_is_refused_at_submit_with_its_figure(
    cluster, qubits, options, need
):
    settings = dataclasses.replace(cluster.settings, max_memory_mb=1024)
    circuit = QuantumCircuit(qubits, name="wide")
    circuit.h(range(qubits))
    circuit.t(range(qubits))  # not Clifford: "automatic" would use a statevector
    circuit.measure_all()
    client = redis.Redis.from_url(cluster.redis_url)
    before = stored_keys(client)
    with CeleryExecutor(settings) as ex:
        with pytest.raises(InvalidInputError) as caught:
            run(AerSimulator(**options), [*qv_circuits(1), circuit], executor=ex, shots=10)
        _nothing_queued(client, before)
        # Within the limit it is accepted: half the qubits' worth of state is tiny.
        assert (
            run(AerSimulator(**options), qv_circuits(1), executor=ex, shots=10)
            .result(timeout=60)
            .success
        )
    message = str(caught.value)
    assert "circuit 1 ('wide')" in message and need in message
    assert "JOBSET_MAX_MEMORY_MB=1024" in message and "1.0 GiB" in message
    client.close()


def _rccx() -> QuantumCircuit:
    circuit = QuantumCircuit(3, name="toffoli-ish")
    circuit.rccx(0, 1, 2)  # has a definition, but Aer does not simulate it as such
    circuit.measure_all()
    return circuit


@pytest.mark.parametrize(
    ("circuits", "backend", "options", "message"),
    [
        (lambda: [_rccx()], AerSimulator, {}, r"circuit 0 \('toffoli-ish'\).*\['rccx'\]"),
        (lambda: qv_circuits(1), AerSimulator, {"shot": 10}, r"'shot' \(did you mean 'shots'\?\)"),
        (lambda: qv_circuits(1), AerSimulator, {"noise_model": "depolarizing"}, "NoiseModel"),
        (lambda: qv_circuits(1), AerSimulator, {"noise_model": {"errors": []}}, "got dict"),
    ],
)
def test_more_bad_input_is_refused_with_a_clear_error_before_anything_is_queued(
    cluster, executor, circuits, backend, options, message
):
    client = redis.Redis.from_url(cluster.redis_url)
    before = stored_keys(client)
    with pytest.raises(InvalidInputError, match=message):
        run(backend(), circuits(), executor=executor, **options)
    _nothing_queued(client, before)
    client.close()


def test_a_from_backend_simulator_refuses_instructions_outside_its_basis_at_submit(
    executor,
):
    from qiskit.providers.fake_provider import GenericBackendV2

    device = AerSimulator.from_backend(GenericBackendV2(3, basis_gates=["cx", "rz", "sx", "x"]))
    bell = QuantumCircuit(2, name="bell")
    bell.h(0)  # not in the device's basis: Aer would fail the sub-job on a worker
    bell.cx(0, 1)
    bell.measure_all()
    with pytest.raises(InvalidInputError, match=r"\['h'\]"):
        run(device, [bell], executor=executor, shots=10)
    assert run(AerSimulator(), [bell], executor=executor, shots=10).result(timeout=60).success


def test_a_producer_of_other_versions_is_warned_at_submit_and_its_sub_jobs_are_refused(
    executor, monkeypatch
):
    old = (("qiskit", "1.4.0"), ("qiskit-aer", "0.14.2"), ("qiskit-aer-jobset", "0.1.0"))
    # This process plays a producer running qiskit-aer 0.14: its messages say so.
    monkeypatch.setattr(compat_module, "producer_versions", lambda: old)
    with pytest.warns(VersionSkewWarning, match="no live worker runs this producer's versions"):
        job = run(AerSimulator(), qv_circuits(2), executor=executor, max_job_size=1, shots=10)
    job.wait_for_final_state(timeout=60, wait=0.1)
    assert job.status() is JobStatus.ERROR
    with pytest.raises(JobSetFailedError) as caught:
        job.result()
    for failure in caught.value.failures:
        assert failure.message.startswith("VersionMismatchError")
        assert "qiskit-aer 0.14.2 on the producer, 0.18" in failure.message
    assert starts(executor, job, 0) == 0  # refused before it ran anything


def test_a_producer_of_matching_versions_gets_no_warning_and_exact_results(executor):
    circuits = qv_circuits(2)
    # filterwarnings=error: any VersionSkewWarning here would fail the test.
    job = run(AerSimulator(), circuits, executor=executor, shots=20, seed_simulator=3, memory=True)
    want = AerSimulator().run(circuits, shots=20, seed_simulator=3, memory=True).result()
    assert_same_counts_and_memory(job.result(timeout=60), want)
