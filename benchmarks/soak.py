"""Soak benchmark: thousands of sub-jobs while workers are killed and restarted.

``scripts/soak`` (``python benchmarks/soak.py``) starts a local cluster, submits one set of
``--sub-jobs`` single-circuit sub-jobs, and every ``--kill-every-s`` seconds SIGKILLs one
worker's whole process group (worker and pool child, mid sub-job) and starts a new one.
Then it checks the merged result against one undisturbed ``AerSimulator.run`` and
reports, as JSON:

``completed``              sub-jobs DONE
``lost``                   experiments missing or failed in the merged result (must be 0)
``duplicated_in_merge``    experiments counted more than once (must be 0)
``mismatched``             experiments whose counts or memory differ from the reference
``redelivered``            sub-jobs that started more than once (the kills at work)
``producer_rss_mb`` / ``worker_rss_mb``   resident memory at start and at end

A benchmark, not a test: it takes minutes and two cores.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, Settings, run
from jobset.local import LocalCluster
from jobset.protocol import runs_key, started_field


def rss_mb(pid: int) -> float:
    """Resident memory of one process, from /proc (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def group_rss_mb(pgid: int) -> float:
    """Resident memory of a worker and its pool children (one process group)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += rss_mb(int(entry.name))
    return total


def circuits(n: int, *, qubits: int = 15, depth: int = 12) -> list[QuantumCircuit]:
    """Distinct random circuits (seeded by index): layers of ``u`` gates and paired ``cx``.

    Built from gates Aer runs natively, so thousands need no transpiling; 15 qubits at
    depth 12 take about 35 ms each on one core here, long enough for a kill to land mid
    sub-job.
    """
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        qc = QuantumCircuit(qubits, name=f"soak{i}")
        for _ in range(depth):
            for q in range(qubits):
                theta, phi, lam = rng.uniform(0.0, 2 * np.pi, 3)
                qc.u(theta, phi, lam, q)
            order = rng.permutation(qubits)
            for a in range(0, qubits - 1, 2):
                qc.cx(int(order[a]), int(order[a + 1]))
        qc.measure_all()
        out.append(qc)
    return out


class Killer(threading.Thread):
    """Every ``interval_s``, SIGKILL the oldest live worker's group and start another."""

    def __init__(self, cluster: LocalCluster, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.interval_s = interval_s
        self.stopped = threading.Event()
        self.kills = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            live = [w for w in self.cluster.workers if w.running()]
            if not live:
                continue
            try:
                self.cluster.kill_worker(live[0].index)
                self.kills += 1
                self.cluster.add_worker()
            except Exception as e:  # reported, and the soak goes on with the workers left
                self.errors.append(f"{type(e).__name__}: {e}")


def soak(
    *,
    sub_jobs: int,
    workers: int,
    kill_every_s: float,
    visibility_timeout_s: int,
    shots: int,
    timeout_s: float,
    qubits: int = 15,
    depth: int = 12,
) -> dict[str, Any]:
    work = circuits(sub_jobs, qubits=qubits, depth=depth)
    seed = 20240601
    settings = Settings(
        secret_key=secrets.token_hex(32).encode(), visibility_timeout_s=visibility_timeout_s
    )
    with (
        LocalCluster(workers=workers, settings=settings, private_server=True) as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        producer_start = rss_mb_self()
        workers_start = sum(group_rss_mb(pid) for pid in cluster.worker_pids)
        killer = Killer(cluster, kill_every_s)
        started = time.monotonic()
        job = run(
            AerSimulator(),
            work,
            executor=executor,
            max_job_size=1,
            shots=shots,
            seed_simulator=seed,
            memory=True,
        )
        submitted_s = time.monotonic() - started
        killer.start()
        try:
            merged = job.result(timeout=timeout_s, partial=True)
        finally:
            killer.stopped.set()
            killer.join()
        wall_s = time.monotonic() - started
        statuses = Counter(s.name for s in job.status(range(sub_jobs)))
        runs = executor.redis.hgetall(runs_key(job.job_id()))
        redelivered = sum(int(runs.get(started_field(k).encode(), 0)) > 1 for k in range(sub_jobs))
        still_lost = job.lost()
        producer_end = rss_mb_self()
        workers_end = sum(group_rss_mb(pid) for pid in cluster.worker_pids)

    reference = (
        AerSimulator(max_parallel_experiments=0)
        .run(work, shots=shots, seed_simulator=seed, memory=True)
        .result()
    )
    names = Counter(e.header["name"] for e in merged.results if e.success)
    lost = sum(not e.success for e in merged.results) + (sub_jobs - len(merged.results))
    duplicated = sum(c - 1 for c in names.values() if c > 1) + sum(
        sum(merged.get_counts(i).values()) > shots
        for i, e in enumerate(merged.results)
        if e.success
    )
    mismatched = sum(
        e.success
        and (
            merged.get_counts(i) != reference.get_counts(i)
            or merged.get_memory(i) != reference.get_memory(i)
        )
        for i, e in enumerate(merged.results)
    )
    return {
        "sub_jobs": sub_jobs,
        "qubits": qubits,
        "depth": depth,
        "workers": workers,
        "kill_every_s": kill_every_s,
        "visibility_timeout_s": visibility_timeout_s,
        "kills": killer.kills,
        "killer_errors": killer.errors,
        "submit_s": round(submitted_s, 1),
        "wall_s": round(wall_s, 1),
        "completed": statuses.get("DONE", 0),
        "states": dict(statuses),
        "lost": lost,
        "lost_reported_by_the_set": len(still_lost),
        "duplicated_in_merge": duplicated,
        "mismatched": mismatched,
        "redelivered": redelivered,
        "producer_rss_mb": {"start": round(producer_start), "end": round(producer_end)},
        "worker_rss_mb": {"start": round(workers_start), "end": round(workers_end)},
    }


def rss_mb_self() -> float:
    return rss_mb(int(Path("/proc/self").resolve().name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__)
    parser.add_argument("--sub-jobs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every-s", type=float, default=30.0)
    parser.add_argument("--visibility-timeout-s", type=int, default=10)
    parser.add_argument("--shots", type=int, default=20)
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("--qubits", type=int, default=15)
    parser.add_argument("--depth", type=int, default=12)
    args = parser.parse_args(argv)
    report = soak(
        sub_jobs=args.sub_jobs,
        workers=args.workers,
        kill_every_s=args.kill_every_s,
        visibility_timeout_s=args.visibility_timeout_s,
        shots=args.shots,
        timeout_s=args.timeout_s,
        qubits=args.qubits,
        depth=args.depth,
    )
    json.dump(report, sys.stdout, indent=2)
    print()
    ok = report["lost"] == 0 and report["duplicated_in_merge"] == 0 and report["mismatched"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
