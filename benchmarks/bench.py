"""End-to-end benchmark: a job set on Celery workers against Aer alone and against Dask.

Run: ``./scripts/bench [--reps 5] [--workloads W1,W2,W3]``.  Starts a local cluster with
the documented worker command (one process per core, one Aer thread each) and a Dask
``LocalCluster`` with as many worker processes (one thread each), runs every workload on
the three systems in turn, repetition after repetition (interleaved, so a noisy machine
hurts all three alike), and prints medians and ratios.  Writes the table to
``docs/benchmarks.md`` and a bar chart to ``docs/benchmarks.png``.

Timing is from the call of ``run()`` (planning and encoding included) to the merged
``Result``, on fresh circuit objects each repetition, with no result cache.  The floor is
``AerSimulator(max_parallel_experiments=0).run(all circuits)`` in this process.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuits import ghz
from dask.distributed import Client
from dask.distributed import LocalCluster as DaskCluster
from qiskit import QuantumCircuit, transpile
from qiskit.circuit.library import quantum_volume
from qiskit.result import Result
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error

from jobset import CeleryExecutor, run
from jobset.executors.aer import run_sub_batch
from jobset.executors.machine import available_cores
from jobset.local import LocalCluster
from jobset.merge import merge_results
from jobset.plan import make_plan

DOCS = Path(__file__).resolve().parent.parent / "docs"
SYSTEMS = ("aer", "jobset", "dask")


@dataclass
class Workload:
    name: str
    description: str
    circuits: Callable[[], list[QuantumCircuit]]
    backend: Callable[[], AerSimulator]
    options: dict[str, Any]
    max_shot_size: int | None = None


def workloads() -> dict[str, Workload]:
    sim = AerSimulator()
    qv20 = [transpile(quantum_volume(20, seed=s).measure_all(inplace=False), sim) for s in range(8)]
    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(depolarizing_error(0.001, 1), ["rz", "sx", "x"])
    noise.add_all_qubit_quantum_error(depolarizing_error(0.01, 2), ["cx"])
    qv10 = transpile(
        quantum_volume(10, seed=1).measure_all(inplace=False),
        basis_gates=["cx", "rz", "sx", "x"],
        seed_transpiler=1,
    )
    return {
        "W1": Workload(
            "W1",
            "1000 GHZ-5 circuits, 1000 shots",
            lambda: [ghz(5, f"ghz{i}") for i in range(1000)],
            AerSimulator,
            {"shots": 1000, "seed_simulator": 1},
        ),
        "W2": Workload(
            "W2",
            "8 transpiled quantum_volume(20) circuits, 1000 shots",
            lambda: [c.copy() for c in qv20],
            AerSimulator,
            {"shots": 1000, "seed_simulator": 2},
        ),
        "W3": Workload(
            "W3",
            "noisy quantum_volume(10), statevector trajectories, 10000 shots / 1000",
            lambda: [qv10.copy()],
            lambda: AerSimulator(method="statevector", noise_model=noise),
            {"shots": 10000, "seed_simulator": 3},
            max_shot_size=1000,
        ),
    }


def time_aer(w: Workload) -> tuple[float, Result]:
    circuits, backend = w.circuits(), w.backend()
    backend.set_options(max_parallel_experiments=0)
    start = time.perf_counter()
    result = backend.run(circuits, **w.options).result()
    return time.perf_counter() - start, result


def time_jobset(w: Workload, executor: CeleryExecutor) -> tuple[float, Result]:
    circuits, backend = w.circuits(), w.backend()
    start = time.perf_counter()
    result = run(
        backend, circuits, executor=executor, max_shot_size=w.max_shot_size, **w.options
    ).result()
    return time.perf_counter() - start, result


def time_dask(w: Workload, client: Any, slots: int) -> tuple[float, Result]:
    circuits, backend = w.circuits(), w.backend()
    start = time.perf_counter()
    options = dict(w.options)
    plan = make_plan(
        circuits,
        shots=options.pop("shots"),
        seed_simulator=options.pop("seed_simulator"),
        max_shot_size=w.max_shot_size,
        run_options=options,
        slots=slots,
    )
    futures = [
        client.submit(run_sub_batch, backend, b, threads=1, pure=False) for b in plan.sub_batches
    ]
    results = dict(enumerate(client.gather(futures)))
    merged = merge_results(plan, results, job_id="dask", time_taken=0.0)
    return time.perf_counter() - start, merged


def _check(w: Workload, got: Result, want: Result) -> None:
    assert got.success, f"{w.name}: failed"
    if w.max_shot_size is None:  # a circuit-split run equals the unsplit one exactly
        for i in range(len(want.results)):
            assert got.get_counts(i) == want.get_counts(i), f"{w.name}: counts differ at {i}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workloads", default="W1,W2,W3")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    cores = available_cores()
    chosen = [workloads()[name] for name in args.workloads.split(",")]
    times: dict[tuple[str, str], list[float]] = {}
    with (
        LocalCluster(workers=cores, concurrency=1) as cluster,  # one Aer thread each
        CeleryExecutor(cluster.settings) as executor,
        DaskCluster(
            n_workers=cores, threads_per_worker=1, processes=True, dashboard_address=None
        ) as dask_cluster,
        Client(dask_cluster) as client,
    ):
        for w in chosen:  # warm-up: imports, first simulations, connections
            time_jobset(w, executor)
            time_dask(w, client, cores)
        for rep in range(args.reps):
            for w in chosen:
                # The systems take turns going first, so none always runs on a machine
                # the one before it just warmed (or heated).
                order = SYSTEMS[rep % 3 :] + SYSTEMS[: rep % 3]
                runs = {
                    system: {
                        "aer": lambda w=w: time_aer(w),
                        "jobset": lambda w=w: time_jobset(w, executor),
                        "dask": lambda w=w: time_dask(w, client, cores),
                    }[system]()
                    for system in order
                }
                want = runs["aer"][1]
                _check(w, runs["jobset"][1], want)
                _check(w, runs["dask"][1], want)
                for system in SYSTEMS:
                    times.setdefault((w.name, system), []).append(runs[system][0])
                t_aer, t_js, t_dask = (runs[system][0] for system in SYSTEMS)
                print(
                    f"rep {rep + 1} {w.name} ({' > '.join(order)}): aer {t_aer:.3f} s  "
                    f"jobset {t_js:.3f} s  dask {t_dask:.3f} s  jobset/aer {t_js / t_aer:.2f}x",
                    flush=True,
                )

    rows = []
    pairs: list[list[float]] = []
    for w in chosen:
        aer, js, dask = (statistics.median(times[(w.name, s)]) for s in SYSTEMS)
        paired = sorted(
            j / a for j, a in zip(times[(w.name, "jobset")], times[(w.name, "aer")], strict=True)
        )
        rows.append((w, aer, js, dask))
        pairs.append(paired)
    table = [
        f"Medians of {args.reps} interleaved repetitions on {cores} cores "
        f"({cores} Celery workers x 1 Aer thread; Dask: {cores} processes x 1 thread); the "
        "systems take turns going first. Paired: job set / Aer alone within each "
        "repetition, median (lowest to highest).",
        "",
        "| workload | Aer alone | job set | Dask | job set / Aer | job set / Dask | paired |",
        "|---|---|---|---|---|---|---|",
    ]
    for (w, aer, js, dask), paired in zip(rows, pairs, strict=True):
        table.append(
            f"| {w.name}: {w.description} | {aer:.3f} s | {js:.3f} s | {dask:.3f} s "
            f"| {js / aer:.2f}x | {js / dask:.2f}x "
            f"| {statistics.median(paired):.2f}x ({paired[0]:.2f}-{paired[-1]:.2f}) |"
        )
    print("\n".join(table))
    if not args.no_write:
        write_docs(table, rows)


def write_docs(table: list[str], rows: list[tuple[Workload, float, float, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.27
    for offset, (label, pick) in enumerate(
        (("Aer alone", 1), ("job set (Celery)", 2), ("Dask", 3))
    ):
        xs = [i + (offset - 1) * width for i in range(len(rows))]
        ax.bar(xs, [row[pick] / row[1] for row in rows], width, label=label)
    ax.set_xticks(range(len(rows)), [row[0].name for row in rows])
    ax.set_ylabel("time / Aer alone")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.legend()
    ax.set_title("End to end, submit to merged Result (lower is better)")
    fig.tight_layout()
    DOCS.mkdir(exist_ok=True)
    fig.savefig(DOCS / "benchmarks.png", dpi=110)
    page = DOCS / "benchmarks.md"
    text = page.read_text() if page.exists() else "# Benchmarks\n"
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    block = start + "\n" + "\n".join(table) + "\n\n![ratios](benchmarks.png)\n" + end
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text += "\n" + block + "\n"
    page.write_text(text)


if __name__ == "__main__":
    main()
