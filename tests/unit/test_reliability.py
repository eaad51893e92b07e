"""The pure parts of reliability: version rules, memory estimates, limits, settings, names."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import pytest
from qiskit import QuantumCircuit

import jobset
from jobset import errors
from jobset.cost import estimate_memory, human_bytes, used_qubits
from jobset.errors import ConfigurationError, JobSetError, VersionMismatchError
from jobset.executors.celery.config import celery_config, restore_interval_s
from jobset.executors.celery.publish import time_limits
from jobset.executors.celery.recovery import _task_id
from jobset.executors.versions import PACKAGES, runtime_versions, version_mismatch
from jobset.protocol import SubJobRef, queue_lists
from jobset.settings import DEFAULT_MAX_RESULT_BYTES, Settings

PACKAGE = Path(jobset.__file__).parent
KEY = "s3cret-signing-key-of-32-bytes-at-least"


# ------------------------------------------------------------------------- versions

AER_18 = {"qiskit": "2.6.2", "qiskit-aer": "0.18.2", "qiskit-aer-jobset": "0.1.0"}


def test_the_same_versions_match_and_this_process_knows_its_own():
    assert version_mismatch(AER_18, dict(AER_18)) is None
    assert set(runtime_versions()) == set(PACKAGES)


@pytest.mark.parametrize(
    ("worker", "named"),
    [
        ({"qiskit-aer": "0.18.1"}, "qiskit-aer 0.18.2 on the producer, 0.18.1 on the worker"),
        ({"qiskit-aer": "0.17.0"}, "qiskit-aer"),
        ({"qiskit": "2.5.0"}, "qiskit 2.6.2 on the producer, 2.5.0 on the worker"),
        ({"qiskit-aer-jobset": "0.2.0"}, "qiskit-aer-jobset"),
    ],
)
def test_a_version_that_would_change_results_is_a_mismatch_that_names_it(worker, named):
    assert named in (version_mismatch(AER_18, {**AER_18, **worker}) or "")


@pytest.mark.parametrize(
    "worker",
    [
        {"qiskit": "2.6.3"},  # a qiskit patch release keeps the pickle layout
        {"qiskit-aer-jobset": "0.1.7"},
        {"qiskit-aer": "0.18.2+local"},
    ],
)
def test_releases_that_give_the_same_results_match(worker):
    assert version_mismatch(AER_18, {**AER_18, **worker}) is None


def test_a_side_that_does_not_say_its_versions_is_not_compared():
    assert version_mismatch({}, AER_18) is None
    assert version_mismatch(AER_18, {}) is None


def test_a_message_carries_the_producer_versions_and_one_of_an_older_protocol_is_refused():
    set_id = str(uuid.UUID(int=7))
    ref = SubJobRef(set_id, 3, 7, versions=tuple(sorted(AER_18.items())))
    kwargs = json.loads(json.dumps(ref.to_kwargs()))
    assert kwargs["versions"] == AER_18
    assert SubJobRef.from_kwargs(kwargs) == ref
    with pytest.raises(VersionMismatchError, match="protocol version 1"):
        SubJobRef.from_kwargs({"jobset_id": set_id, "index": 3, "experiments": 7, "version": 1})
    bare = SubJobRef.from_kwargs({"jobset_id": set_id, "index": 3, "experiments": 7, "version": 2})
    assert bare.versions == ()
    assert "versions" not in bare.to_kwargs()


# ------------------------------------------------------------------------- memory


def _wide(n: int, *, clifford: bool = False) -> QuantumCircuit:
    qc = QuantumCircuit(n)
    qc.h(range(n))
    if not clifford:
        qc.t(range(n))
    qc.measure_all()
    return qc


@pytest.mark.parametrize(
    ("method", "precision", "qubits", "expected"),
    [
        ("statevector", "double", 30, 16 * 2**30),
        ("statevector", "single", 30, 8 * 2**30),
        ("density_matrix", "double", 12, 16 * 2**24),
        ("density_matrix", "single", 12, 8 * 2**24),
        ("unitary", "double", 10, 16 * 2**20),
        ("superop", "double", 5, 16 * 2**20),
        ("automatic", "double", 25, 16 * 2**25),
    ],
)
def test_the_memory_estimate_is_the_size_of_the_state(method, precision, qubits, expected):
    need = estimate_memory(_wide(qubits), method=method, precision=precision)
    assert need is not None and need.bytes == expected and need.qubits == qubits


@pytest.mark.parametrize("method", ["matrix_product_state", "stabilizer", "extended_stabilizer"])
def test_polynomial_methods_are_not_estimated(method):
    assert estimate_memory(_wide(60), method=method) is None


def test_a_clifford_circuit_on_the_automatic_method_is_not_estimated():
    assert estimate_memory(_wide(60, clifford=True)) is None
    assert estimate_memory(_wide(60, clifford=True), method="statevector") is not None


def test_qubits_no_instruction_touches_are_not_counted_unless_truncation_is_off():
    qc = QuantumCircuit(40, 2)
    qc.h(0)
    qc.t(0)
    qc.cx(0, 1)
    qc.barrier()  # a barrier over all 40 qubits does not make them live
    qc.measure([0, 1], [0, 1])
    assert used_qubits(qc) == 2
    assert used_qubits(qc, truncation=False) == 40
    assert estimate_memory(qc).bytes == 16 * 4  # type: ignore[union-attr]


def test_the_estimate_explains_itself_in_human_units():
    need = estimate_memory(_wide(27), method="statevector")
    assert need is not None
    assert (
        need.explain() == "2.0 GiB (16 B x 2^27: 27 qubits, method statevector, double precision)"
    )
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KiB"
    assert human_bytes(512 * 2**20) == "512.0 MiB"


# ------------------------------------------------------------------------- settings


def test_the_reliability_variables_are_read_from_the_environment():
    settings = Settings.from_env(
        {
            "JOBSET_SECRET_KEY": KEY,
            "JOBSET_CONNECT_TIMEOUT_S": "2",
            "JOBSET_MAX_WORKER_LOSSES": "5",
            "JOBSET_MAX_RESULT_BYTES": "1000",
            "JOBSET_MAX_MEMORY_MB": "4096",
        }
    )
    assert settings.connect_timeout_s == 2
    assert settings.max_worker_losses == 5
    assert settings.max_result_bytes == 1000
    assert settings.max_memory_mb == 4096
    again = Settings.from_env(settings.to_env())
    assert (again.connect_timeout_s, again.max_worker_losses) == (2, 5)
    assert (again.max_result_bytes, again.max_memory_mb) == (1000, 4096)


def test_the_reliability_defaults_are_documented_values():
    settings = Settings(secret_key=KEY)
    assert settings.visibility_timeout_s == 60
    assert settings.connect_timeout_s == 5
    assert settings.max_worker_losses == 3
    assert settings.max_result_bytes == DEFAULT_MAX_RESULT_BYTES == 256 * 2**20
    assert settings.max_memory_mb is None
    assert "JOBSET_MAX_MEMORY_MB" not in settings.to_env()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connect_timeout_s", 0),
        ("max_worker_losses", 0),
        ("max_result_bytes", -1),
        ("max_memory_mb", 0),
    ],
)
def test_limits_that_are_not_positive_are_refused(field, value):
    with pytest.raises(ConfigurationError, match=field):
        Settings(secret_key=KEY, **{field: value})


def test_the_repr_of_settings_shows_the_limits_but_no_secret():
    settings = Settings(broker_url="redis://:pw-123@host:6379/0", secret_key=KEY, max_memory_mb=9)
    text = repr(settings)
    assert "max_memory_mb=9" in text and "max_worker_losses=3" in text
    assert KEY not in text and "pw-123" not in text


# ------------------------------------------------------------------------- celery


def test_the_sweep_for_expired_leases_runs_often_enough_for_the_visibility_timeout():
    assert restore_interval_s(3) == 1
    assert restore_interval_s(20) == 5
    assert restore_interval_s(300) == 10
    transport = celery_config(Settings(secret_key=KEY, visibility_timeout_s=8))[
        "broker_transport_options"
    ]
    assert transport["visibility_timeout"] == 8
    assert transport["unacked_restore_interval"] == 2
    assert transport["unacked_restore_throttle"] == 1  # kombu's default 10 would add 10x


def test_publishing_and_connecting_give_up_after_bounded_tries():
    config = celery_config(Settings(secret_key=KEY, connect_timeout_s=2))
    policy = config["task_publish_retry_policy"]
    assert policy["max_retries"] * policy["interval_max"] <= 5
    assert config["broker_connection_timeout"] == 2
    assert config["broker_transport_options"]["socket_connect_timeout"] == 2


def test_a_lease_is_renewed_three_times_per_visibility_timeout_at_least():
    from workers.lifecycle import lease_renewal_s

    assert lease_renewal_s(3) == 1
    assert lease_renewal_s(300) == 10
    assert lease_renewal_s(0.6) == 0.5


def test_a_worker_whose_pool_cannot_renew_leases_is_told_so_and_a_prefork_one_is_not():
    from celery.concurrency import get_implementation

    from workers.lifecycle import renewal_caveat

    assert renewal_caveat(get_implementation("prefork"), 60) is None
    for pool in ("solo", "threads"):
        caveat = renewal_caveat(get_implementation(pool), 60)
        assert caveat is not None and "JOBSET_VISIBILITY_TIMEOUT_S=60 s" in caveat, pool


def test_with_the_defaults_a_dead_workers_sub_job_is_swept_back_within_a_minute_and_a_half():
    from workers.lifecycle import lease_renewal_s

    timeout_s = Settings(secret_key=KEY).visibility_timeout_s
    # Live leases are renewed six times per timeout: a busy event loop has 50 s of slack.
    assert lease_renewal_s(timeout_s) <= 10
    # An expired lease waits at most one sweep; the last renewal was before the death.
    assert restore_interval_s(timeout_s) <= 10
    assert timeout_s + restore_interval_s(timeout_s) < 90


def test_a_time_limit_becomes_a_soft_and_a_slightly_later_hard_limit():
    assert time_limits(None) == {}
    assert time_limits(2) == {"soft_time_limit": 2, "time_limit": 3.0}
    assert time_limits(1000) == {"soft_time_limit": 1000, "time_limit": 1050.0}


# ------------------------------------------------------------------------- broker keys


def test_a_message_is_found_by_its_task_id_in_a_queue_and_in_the_unacked_hash():
    message = {"body": "e30=", "headers": {"id": "set-3", "task": "jobset.run_sub_job"}}
    assert _task_id(json.dumps(message).encode()) == "set-3"
    assert _task_id(json.dumps([message, "jobset.cpu", "jobset.cpu"])) == "set-3"
    assert _task_id(b"not json") is None
    assert _task_id(json.dumps({"headers": "odd"})) is None


def test_every_priority_list_of_a_queue_is_scanned():
    assert queue_lists("jobset.cpu") == [
        "jobset.cpu",
        "jobset.cpu\x06\x163",
        "jobset.cpu\x06\x166",
        "jobset.cpu\x06\x169",
    ]


@pytest.mark.parametrize(
    "name",
    [
        "BrokerUnavailableError",
        "SubJobsLostError",
        "SubJobError",
        "SimulationFailedError",
        "RedeliveryLimitError",
        "SubJobTimeoutError",
        "ResultTooLargeError",
        "VersionMismatchError",
    ],
)
def test_each_reliability_error_is_in_the_tree_and_says_when_it_is_raised(name):
    cls = getattr(errors, name)
    assert issubclass(cls, JobSetError)
    assert (cls.__doc__ or "").startswith("Raised when")
    assert name in (errors.__doc__ or "")


def test_a_lost_set_error_lists_the_sub_jobs_and_says_what_to_do():
    error = errors.SubJobsLostError("set-1", list(range(25)))
    assert error.indices == list(range(25)) and error.jobset_id == "set-1"
    assert "25 sub-job(s) lost (0, 1, 2" in str(error) and "and 5 more" in str(error)
    assert "resubmit_lost()" in str(error)


# ------------------------------------------------------------------------- local executors


def test_retry_failed_on_a_thread_pool_reruns_only_the_failed_sub_jobs():
    import concurrent.futures as cf

    from qiskit.providers import JobStatus
    from qiskit_aer import AerSimulator

    from jobset import AerJobSet
    from jobset.executors.aer import local_runner
    from jobset.plan import make_plan

    circuits = []
    for i in range(3):
        qc = QuantumCircuit(2, name=f"c{i}")
        qc.h(0)
        qc.cx(0, 1)
        qc.measure_all()
        circuits.append(qc)
    backend = AerSimulator()
    plan = make_plan(circuits, shots=50, max_job_size=1, seed_simulator=4)
    runner = local_runner(backend)
    calls: Counter[int] = Counter()

    def flaky(batch):
        calls[batch.index] += 1
        if batch.index == 1 and calls[1] == 1:
            raise ConnectionError("a passing failure")
        return runner(batch)

    with cf.ThreadPoolExecutor(2) as pool:
        job = AerJobSet(backend, "local", flaky, plan.sub_batches, pool, plan=plan)
        job.submit()
        job.wait_for_final_state(timeout=60, wait=0.05)
        assert job.status([0, 1, 2]) == [JobStatus.DONE, JobStatus.ERROR, JobStatus.DONE]
        assert job.lost() == []  # nothing is ever lost in this process
        assert job.retry_failed() == [1]
        result = job.result(timeout=60)
    assert calls == Counter({0: 1, 1: 2, 2: 1})
    want = backend.run(circuits, shots=50, seed_simulator=4).result()
    assert [result.get_counts(i) for i in range(3)] == [want.get_counts(i) for i in range(3)]
