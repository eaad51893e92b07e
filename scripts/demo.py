"""The demo: a parameter sweep split over a local cluster, checked against ``AerSimulator.run``.

``scripts/demo`` (which runs this file in the project's ``.venv``) starts a private server
and N worker processes, runs a 5-qubit hardware-efficient ansatz at ``--circuits`` points
of a 2-D grid, shows the sub-jobs' progress (a bar on a terminal), prints a summary, and exits
1 unless the merged counts equal those of one unsplit ``AerSimulator.run`` with the same
seed.  With matplotlib (the ``plot`` extra) it also draws two pictures and prints their
paths: the landscape of the sweep (the parity <Z...Z> over the grid) and the timeline of
the sub-jobs per worker, from what the set recorded.  Everything it started is stopped on
the way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import ParameterVector
from qiskit.result import Result
from qiskit_aer import AerSimulator

from jobset import AerJobSet, CeleryExecutor, run
from jobset.local import LocalCluster

QUBITS = 5
REPS = 2


def ansatz(qubits: int = QUBITS, reps: int = REPS) -> QuantumCircuit:
    """RY-RZ layers joined by a CX ladder, the usual hardware-efficient shape, measured."""
    theta = ParameterVector("theta", 2 * qubits * (reps + 1))
    circuit = QuantumCircuit(qubits, name="hea")
    angles = iter(theta)
    for layer in range(reps + 1):
        for q in range(qubits):
            circuit.ry(next(angles), q)
            circuit.rz(next(angles), q)
        if layer < reps:
            for q in range(qubits - 1):
                circuit.cx(q, q + 1)
    circuit.measure_all()
    return circuit


def sweep(count: int, seed: int) -> list[QuantumCircuit]:
    """``count`` bound circuits on a 2-D grid (a, b): angles = a * u + b * v.

    u and v are two fixed random directions in parameter space, so one grid walks a plane
    through all the ansatz's angles.  Transpiled once, then bound, as a real sweep would.
    """
    template = transpile(ansatz(), AerSimulator(), optimization_level=1, seed_transpiler=seed)
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=(2, template.num_parameters))
    side = math.ceil(math.sqrt(count))
    grid = np.linspace(0.0, math.pi, side)
    circuits = []
    for k in range(count):
        a, b = grid[k // side], grid[k % side]
        bound = template.assign_parameters(a * u + b * v)
        bound.name = f"hea[{k // side},{k % side}]"
        circuits.append(bound)
    return circuits


def grid_side(count: int) -> int:
    return math.ceil(math.sqrt(count))


def parity_landscape(result: Result, count: int) -> np.ndarray:
    """<Z...Z> of every point, from its counts, on the sweep's grid (NaN where none ran)."""
    side = grid_side(count)
    values = np.full((side, side), np.nan)
    for k in range(count):
        counts = result.get_counts(k)
        shots = sum(counts.values())
        even = sum(n for bits, n in counts.items() if bits.count("1") % 2 == 0)
        values[k // side, k % side] = (2 * even - shots) / shots
    return values


def draw(job: AerJobSet, result: Result, count: int, out_dir: Path) -> list[Path]:
    """The sweep's landscape and the set's timeline as PNGs; [] without matplotlib."""
    try:
        from jobset.observe import plot
    except ImportError:
        print("  (no pictures: install the `plot` extra for matplotlib)")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = np.linspace(0.0, math.pi, grid_side(count))
    landscape = plot.landscape_figure(
        parity_landscape(result, count),
        grid,
        grid,
        title=f"{QUBITS}-qubit ansatz over a plane of its angles: {count} points",
        label="<Z...Z> (parity of the measured bits)",
        xlabel="b (angles = a u + b v)",
        ylabel="a",
    )
    sub_jobs = len(job.plan.sub_batches)
    timeline = plot.timeline_figure(job.timeline(), sub_jobs=sub_jobs)
    short = job.job_id()[:8]
    return [
        plot.save(landscape, out_dir / f"sweep-{short}.png"),
        plot.save(timeline, out_dir / f"timeline-{short}.png"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description="A parameter sweep on a local cluster, checked against AerSimulator.run.",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--circuits", type=int, default=200, help="points of the sweep (200)")
    parser.add_argument("--shots", type=int, default=1000, help="shots per circuit (1000)")
    parser.add_argument(
        "--max-job-size", type=int, default=None, help="experiments per sub-job (auto)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed_simulator and sweep seed (7)")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="wait at most (600)")
    parser.add_argument(
        "--out", type=Path, default=Path("demo-output"), help="where pictures go (demo-output)"
    )
    args = parser.parse_args(argv)

    circuits = sweep(args.circuits, args.seed)
    backend = AerSimulator()
    print(f"starting a local cluster: {args.workers} worker(s) ...", flush=True)
    with LocalCluster(workers=args.workers) as cluster:
        print(f"  workers ready: {', '.join(cluster.worker_hostnames)}")
        with CeleryExecutor(cluster.settings) as executor:
            started = time.monotonic()
            job = run(
                backend,
                circuits,
                executor=executor,
                max_job_size=args.max_job_size,
                shots=args.shots,
                seed_simulator=args.seed,
            )
            print(f"job set {job.job_id()}: {len(circuits)} circuits, {args.shots} shots each")
            try:
                job.watch(timeout=args.timeout_s)
            except KeyboardInterrupt:
                # Cancelling first lets the warm shutdown below end the running sub-jobs.
                print("\ninterrupted: cancelling the job set, stopping the cluster", flush=True)
                job.cancel()
                return 130
            result = job.result()
            wall_s = time.monotonic() - started
            sub_jobs = sum(job.progress().values())
            status = job.status()
            pictures = draw(job, result, len(circuits), args.out)

    reference = backend.run(circuits, shots=args.shots, seed_simulator=args.seed).result()
    mismatched = [
        i for i in range(len(circuits)) if result.get_counts(i) != reference.get_counts(i)
    ]
    total_shots = sum(sum(result.get_counts(i).values()) for i in range(len(circuits)))

    rows = [
        ("status", status.name),
        ("sub-jobs", sub_jobs),
        ("experiments", len(result.results)),
        ("total shots", total_shots),
        ("wall time", f"{wall_s:.2f} s"),
        ("time_taken", f"{result.time_taken:.2f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print("\n  most frequent outcome of a few experiments:")
    for i in sorted({0, 1, len(circuits) // 2, len(circuits) - 1}):
        counts = result.get_counts(i)
        top = max(counts, key=counts.__getitem__)
        print(f"    {circuits[i].name:<12} {top}  {counts[top]:>5} / {args.shots}")
    print(f"\n  exact match with AerSimulator.run: {'no' if mismatched else 'yes'}")
    for path in pictures:
        print(f"  picture: {path}")
    if mismatched:
        print(f"  differing experiments: {mismatched[:20]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
