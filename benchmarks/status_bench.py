"""How long ``status()`` and ``progress()`` take on a set of 3000 sub-jobs.

Run: ``.venv/bin/python benchmarks/status_bench.py [--sub-jobs 3000]``.  Starts a local
cluster (2 workers), submits a set of tiny circuits with ``max_job_size=1`` and times the
calls while the set is queued, while it runs, and once every result is stored.  Each
status is one pipelined round trip (an MGET of the sub-jobs' Celery records).
"""

from __future__ import annotations

import argparse
import statistics
import time

from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, run
from jobset.local import LocalCluster


def _timed_ms(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


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
        job = run(AerSimulator(), circuits, executor=executor, max_job_size=1, shots=10)
        rows.append(("queued", _timed_ms(job.status, 20), _timed_ms(job.progress, 20)))
        cluster.add_worker()
        cluster.add_worker()
        running_status, running_progress = [], []
        while job.progress().get("DONE", 0) < args.sub_jobs // 2:
            running_status.append(_timed_ms(job.status, 1))
            running_progress.append(_timed_ms(job.progress, 1))
        rows.append(
            ("running", statistics.median(running_status), statistics.median(running_progress))
        )
        job.wait_for_final_state(timeout=600, wait=0.5)
        rows.append(("all stored", _timed_ms(job.status, 20), _timed_ms(job.progress, 20)))
        start = time.perf_counter()
        job.result()
        fetch_s = time.perf_counter() - start
    print(f"{args.sub_jobs} sub-jobs; medians in ms")
    print(f"{'phase':12} {'status()':>10} {'progress()':>11}")
    for phase, status_ms, progress_ms in rows:
        print(f"{phase:12} {status_ms:10.1f} {progress_ms:11.1f}")
    print(f"result() of all {args.sub_jobs} sub-jobs (fetch + merge): {fetch_s:.2f} s")


if __name__ == "__main__":
    main()
