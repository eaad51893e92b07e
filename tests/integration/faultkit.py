"""What the fault-injection tests share: waiting on real events, reading a sub-job's traces.

Every wait polls Redis (or a log file) with a deadline; nothing sleeps in place of an
event.  The traces are the project's own: Celery's task record (its STARTED record names
the pool process and the worker) and the ``jobset:{id}:runs`` hash the worker keeps.

No verdict here depends on how fast the machine simulates.  A test that needs a sub-job
still running when something happens (a kill, a cancel, a deadline, a timer) does not size
its circuits to outlast it: it *holds* the sub-job (:func:`held`), freezing its pool child
with SIGSTOP once it started, so it cannot end by itself on any machine until the test lets
it go.  The worker's main process, which renews leases, sends heartbeats, enforces time
limits and carries out revokes, runs on meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from qiskit import QuantumCircuit, transpile
from qiskit.circuit.library import quantum_volume
from qiskit.result import Result
from qiskit_aer import AerSimulator

from jobset import run
from jobset.deadline import wait_for
from jobset.protocol import (
    UNACKED_INDEX_KEY,
    UNACKED_KEY,
    WORKER_KEY_PREFIX,
    WORKERS_INDEX_KEY,
    ended_field,
    runs_key,
    started_field,
)

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    return wait_for(predicate, timeout_s, what, error=AssertionError, pause_s=0.02)


def heavy_circuits(
    qubits: int, seeds: range | list[int], name: str = "heavy"
) -> list[QuantumCircuit]:
    """Quantum volume circuits: about 1.5 s at 20 qubits and 7 s at 22, on one core here.

    Only "long enough to be seen running": a test that needs one to outlast an event holds it.
    """
    sim = AerSimulator(method="statevector")
    out = []
    for seed in seeds:
        qc = quantum_volume(qubits, seed=seed).measure_all(inplace=False)
        qc.name = f"{name}{qubits}-{seed}"
        out.append(transpile(qc, sim, optimization_level=0))
    return out


def task_meta(executor: Any, job: Any, index: int) -> dict[str, Any] | None:
    raw = executor.redis.get(executor.app.backend.get_key_for_task(job.worker_job(index).job_id()))
    return json.loads(raw) if raw else None


def starts(executor: Any, job: Any, index: int) -> int:
    """How many times sub-job ``index`` started on a worker (the worker counts them)."""
    raw = executor.redis.hget(runs_key(job.job_id()), started_field(index))
    return int(raw or 0)


def ends(executor: Any, job: Any, index: int) -> int:
    raw = executor.redis.hget(runs_key(job.job_id()), ended_field(index))
    return int(raw or 0)


def lease_age_s(executor: Any, job: Any, index: int) -> float | None:
    """Seconds since the lease of sub-job ``index`` was last renewed; None when none holds it.

    kombu keeps a held message in the ``unacked`` hash (tag -> [message, ...]) and its
    lease in ``unacked_index`` (tag -> when it was delivered or last renewed).
    """
    task = job.worker_job(index).job_id()
    for tag, raw in executor.redis.hscan_iter(UNACKED_KEY):
        message = json.loads(raw)[0]
        if message.get("headers", {}).get("id") == task:
            score = executor.redis.zscore(UNACKED_INDEX_KEY, tag)
            return None if score is None else time.time() - float(score)
    return None


def wait_started(
    executor: Any, job: Any, index: int, *, times: int = 1, timeout_s: float = 60
) -> dict[str, Any]:
    """Wait for the ``times``-th start of sub-job ``index``; its pool pid and worker name."""

    def running() -> dict[str, Any] | None:
        meta = task_meta(executor, job, index)
        if meta is None or meta.get("status") != "STARTED" or starts(executor, job, index) < times:
            return None
        where = meta.get("result")
        return where if isinstance(where, dict) and "pid" in where else None

    return wait_until(running, timeout_s, f"sub-job {index} to start (time {times})")


@contextlib.contextmanager
def held(
    executor: Any,
    job: Any,
    index: int,
    *,
    times: int = 1,
    timeout_s: float = 60,
    simulating_in: Path | Sequence[Path] = (),
) -> Iterator[dict[str, Any]]:
    """Sub-job ``index``, frozen mid-run (its ``times``-th run) until the block ends.

    Waits for the run to start (and, with ``simulating_in``, worker logs at DEBUG, for its
    simulation to start, its payload read), stops its pool child with SIGSTOP and yields
    where it runs (``pid``, ``hostname``); on leaving, the child continues (SIGCONT) unless
    something killed it meanwhile.  The run is checked to be still unfinished once frozen: a
    sub-job must only be long enough for the poll that sees it start (circuits of seconds
    against a poll of milliseconds), never long enough to outlast what the test then does.
    """
    where = wait_started(executor, job, index, times=times, timeout_s=timeout_s)
    if simulating_in:
        wait_for_log(simulating_in, rf"sub-job {index} of {job.job_id()}: simulating", timeout_s)
    pid = int(where["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        meta = task_meta(executor, job, index) or {}
        if meta.get("status") != "STARTED" or ends(executor, job, index) >= times:
            raise AssertionError(f"sub-job {index} ended before it could be held")
        yield where
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def round_trip_s(executor: Any) -> float:
    """Seconds a one-circuit set takes now, submit to merged result, on ``executor``'s cluster.

    A measure of how busy this machine is at the moment, for tests that bound how long a
    recovery may take: their slack is a multiple of it, not a figure that holds only on an
    idle machine.
    """
    circuit = QuantumCircuit(1, name="probe")
    circuit.h(0)
    circuit.measure_all()
    started = time.monotonic()
    run(AerSimulator(), [circuit], executor=executor, shots=1).result(timeout=120)
    return time.monotonic() - started


def wait_for_log(paths: Path | Sequence[Path], pattern: str, timeout_s: float) -> str:
    """Wait for a line matching ``pattern`` in a worker's log (or any of several); the line."""
    paths = [paths] if isinstance(paths, Path) else list(paths)

    def found() -> str | None:
        for path in paths:
            text = path.read_text(errors="replace") if path.exists() else ""
            match = re.search(f".*{pattern}.*", text)
            if match:
                return match.group(0)
        return None

    return wait_until(found, timeout_s, f"{pattern!r} in {', '.join(p.name for p in paths)}")


def submit_exact(executor: Any, circuits: Any, *, shots: int, seed: int, **options: Any) -> Any:
    """A set of one circuit per sub-job, seeded and with memory, to compare runs exactly."""
    return run(
        AerSimulator(method="statevector"),
        circuits,
        executor=executor,
        max_job_size=1,
        shots=shots,
        seed_simulator=seed,
        memory=True,
        **options,
    )


def reference_result(circuits: list[QuantumCircuit], shots: int, seed: int) -> Result:
    """One undisturbed ``AerSimulator.run`` on one thread (picklable: a spawned process runs it)."""
    return (
        AerSimulator(method="statevector")
        .run(circuits, shots=shots, seed_simulator=seed, memory=True, max_parallel_threads=1)
        .result()
    )


def stored_keys(client: Any) -> set[bytes]:
    """Every key but the workers' own: their heartbeats, which lapse and come back on their
    own, kombu's tables of the queues they bind (written when a worker starts consuming,
    which may be after it is seen) and kombu's lock for restoring unacknowledged messages
    (taken and left to expire by any worker, at any time)."""
    theirs = (
        WORKER_KEY_PREFIX.encode(),
        WORKERS_INDEX_KEY.encode(),
        b"_kombu.binding",
        b"unacked_mutex",
    )
    return {k for k in client.scan_iter(count=1000) if not k.startswith(theirs)}
