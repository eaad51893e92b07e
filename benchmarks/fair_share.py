"""Fair share: a small set's completion time alone, behind a sweep (FIFO), behind a sweep
of another owner (per-owner queues) and behind a sweep of the same owner submitted with
``priority="low"``, on one worker process of a local cluster.

    python benchmarks/fair_share.py [--sweep 200] [--small 4]
"""

from __future__ import annotations

import argparse
import time

from qiskit import QuantumCircuit, transpile
from qiskit.circuit.library import quantum_volume
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, run
from jobset.local import LocalCluster


def circuits(n: int, name: str) -> list[QuantumCircuit]:
    out = []
    for s in range(n):
        c = transpile(quantum_volume(8, seed=s), basis_gates=["cx", "rz", "sx", "x"])
        c.measure_all()
        c.name = f"{name}{s}"
        out.append(c)
    return out


def small_after(
    ex: CeleryExecutor, sweep: int, small: int, *, owners: bool, priority: str = "normal"
) -> float:
    big = []
    if sweep:
        big.append(
            run(
                AerSimulator(),
                circuits(sweep, "sweep"),
                executor=ex,
                max_job_size=1,
                shots=100,
                owner="sweeper" if owners else None,
                priority=priority,
            )
        )
    started = time.monotonic()
    job = run(
        AerSimulator(),
        circuits(small, "small"),
        executor=ex,
        max_job_size=1,
        shots=100,
        owner="alice" if owners else None,
    )
    job.result(timeout=600)
    took = time.monotonic() - started
    for b in big:
        b.result(timeout=600)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sweep", type=int, default=200)
    parser.add_argument("--small", type=int, default=4)
    args = parser.parse_args()
    with LocalCluster(workers=1, concurrency=1) as cluster, CeleryExecutor(cluster.settings) as ex:
        small_after(ex, 0, args.small, owners=True)  # warm up the owner queue and the worker
        alone = small_after(ex, 0, args.small, owners=True)
        fifo = small_after(ex, args.sweep, args.small, owners=False)
        shared = small_after(ex, args.sweep, args.small, owners=True)
        stepped_back = small_after(ex, args.sweep, args.small, owners=False, priority="low")
    print(f"small set of {args.small} sub-jobs, one worker process, sweep of {args.sweep}:")
    print(f"  alone:                          {alone:6.2f} s")
    print(f"  behind the sweep, one queue:    {fifo:6.2f} s")
    print(f"  behind the sweep, owner queues: {shared:6.2f} s")
    print(f"  behind the sweep at low priority, one queue: {stepped_back:6.2f} s")


if __name__ == "__main__":
    main()
