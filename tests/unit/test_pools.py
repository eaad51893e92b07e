"""Which objects a job set takes as its executor; Dask clients are recognised by shape.

A real ``dask.distributed`` client is exercised in ``tests/integration/test_parity.py``.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections import Counter

import pytest
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from jobset import InvalidInputError
from jobset.executors.aer import local_runner
from jobset.executors.base import Executor, SetRequest, SubmitOptions
from jobset.executors.pools import (
    FuturesExecutor,
    as_executor,
    futures_executor,
    is_dask_client,
    local_slots,
)
from jobset.plan import make_plan


class LooksLikeAClient:
    """Has ``get_executor`` but is not from the ``distributed`` package."""

    def get_executor(self, **kwargs):
        return cf.ThreadPoolExecutor(1)


def test_a_concurrent_futures_executor_is_adapted_to_the_executor_interface():
    with cf.ThreadPoolExecutor(3) as pool:
        assert futures_executor(pool) is pool
        adapted = as_executor(pool)
        assert isinstance(adapted, FuturesExecutor) and isinstance(adapted, Executor)
        assert adapted.pool is pool and adapted.slots() == local_slots(pool) == 3
        assert as_executor(adapted) is adapted


@pytest.mark.parametrize("executor", [object(), LooksLikeAClient(), None, "redis://x"])
def test_anything_else_is_refused_naming_what_would_do(executor):
    assert not is_dask_client(executor)
    assert futures_executor(executor) is None
    with pytest.raises(
        InvalidInputError, match=r"CeleryExecutor, a concurrent\.futures.*dask\.distributed"
    ):
        as_executor(executor)


@pytest.mark.parametrize(
    ("given", "refused"),
    [
        ({"owner": "alice"}, "owner"),
        ({"priority": "low"}, "priority"),
        ({"admit": "wait"}, "admit"),
        ({"cache_ttl_s": 60}, "cache_ttl_s"),
        ({"timeout_s": 5}, "timeout_s"),
    ],
)
def test_a_pool_refuses_what_only_celery_can_do_before_anything_runs(given, refused):
    with (
        cf.ThreadPoolExecutor(1) as pool,
        pytest.raises(InvalidInputError, match=f"{refused}.*CeleryExecutor"),
    ):
        as_executor(pool).check_options(SubmitOptions.check(**given))


def test_a_pool_runs_a_planned_set_through_the_same_request_celery_gets():
    circuit = QuantumCircuit(1, 1)
    circuit.x(0)
    circuit.measure(0, 0)
    plan = make_plan([circuit] * 3, shots=10, max_job_size=1, seed_simulator=5)
    backend = AerSimulator()
    with cf.ThreadPoolExecutor(2) as pool:
        run = as_executor(pool).submit(
            SetRequest("a-set", backend, plan, local_runner(backend), SubmitOptions())
        )
        results = [f.result(timeout=60) for f in run.futures]
    assert [r.get_counts() for r in results] == [{"1": 10}] * 3
    assert len(set(run.task_ids)) == 3


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": True}, "timeout_s"),
        ({"cache_ttl_s": 1.5}, "cache_ttl_s"),
        ({"admit": "maybe"}, "admit"),
        ({"priority": "urgent"}, "priority"),
        ({"owner": "a b"}, "owner"),
    ],
)
def test_submit_options_are_checked_once_for_every_executor(bad, match):
    with pytest.raises(InvalidInputError, match=match):
        SubmitOptions.check(**bad)


def test_tags_given_as_one_string_are_one_tag():
    assert SubmitOptions.check(tags="sweep").tags == ("sweep",)


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
