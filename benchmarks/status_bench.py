"""How long submitting, ``status()`` and ``progress()`` take on a set of 3000 sub-jobs.

Run: ``.venv/bin/python benchmarks/status_bench.py [--sub-jobs 3000]``.  Starts a local
cluster (2 workers), submits a set of tiny circuits with ``max_job_size=1`` and times the
calls while the set is queued, while it runs, and once every result is stored.  Each
status is one pipelined round trip (an MGET of the sub-jobs' Celery records).  Submitting
(``run()`` until it returns: plan, checks, encode, store, publish) is set beside its floor
on the same server: the payloads and messages it writes, written by redis-py in one
pipeline, with nothing else done.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, run
from jobset.local import LocalCluster


def timed_ms(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _write_floor(executor: CeleryExecutor, jobset_id: str, n: int) -> float:
    """Copy what the submit wrote (payloads, messages) to fresh keys in one pipeline."""
    client = executor.redis
    payloads = client.mget([f"jobset:{jobset_id}:batch:{k}" for k in range(n)])
    messages = client.lrange("jobset.cpu", 0, -1)
    scratch = uuid.uuid4().hex
    start = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for k, blob in enumerate(payloads):
        pipe.set(f"floor:{scratch}:{k}", blob, ex=60)
    for message in messages:
        pipe.lpush(f"floor:{scratch}:queue", message)
    pipe.execute()
    took = time.perf_counter() - start
    client.delete(f"floor:{scratch}:queue", *(f"floor:{scratch}:{k}" for k in range(n)))
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sub-jobs", type=int, default=3000)
    args = parser.parse_args()
    circuits = []
    for k in range(args.sub_jobs):
        qc = QuantumCircuit(2, name=f"c{k}")
        qc.h(0)
        qc.cx(0, 1)
        qc.measure_all()
        circuits.append(qc)
    rows = []
    with LocalCluster(workers=0) as cluster, CeleryExecutor(cluster.settings) as executor:
        start = time.perf_counter()
        job = run(AerSimulator(), circuits, executor=executor, max_job_size=1, shots=10)
        submit_s = time.perf_counter() - start
        floor_s = _write_floor(executor, job.job_id(), args.sub_jobs)
        rows.append(("queued", timed_ms(job.status, 20), timed_ms(job.progress, 20)))
        cluster.add_worker()
        cluster.add_worker()
        running_status, running_progress = [], []
        while job.progress().get("DONE", 0) < args.sub_jobs // 2:
            running_status.append(timed_ms(job.status, 1))
            running_progress.append(timed_ms(job.progress, 1))
        rows.append(
            ("running", statistics.median(running_status), statistics.median(running_progress))
        )
        job.wait_for_final_state(timeout=600, wait=0.5)
        rows.append(("all stored", timed_ms(job.status, 20), timed_ms(job.progress, 20)))
        start = time.perf_counter()
        job.result()
        fetch_s = time.perf_counter() - start
    print(
        f"submit {args.sub_jobs} sub-jobs: {submit_s:.2f} s ({submit_s / args.sub_jobs * 1e3:.2f}"
        f" ms each); writing the same keys and messages in one pipeline: {floor_s:.2f} s;"
        f" ratio {submit_s / floor_s:.1f}x"
    )
    print(f"{args.sub_jobs} sub-jobs; medians in ms")
    print(f"{'phase':12} {'status()':>10} {'progress()':>11}")
    for phase, status_ms, progress_ms in rows:
        print(f"{phase:12} {status_ms:10.1f} {progress_ms:11.1f}")
    print(f"result() of all {args.sub_jobs} sub-jobs (fetch + merge): {fetch_s:.2f} s")


if __name__ == "__main__":
    main()
