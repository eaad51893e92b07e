"""Distributed SamplerV2 / EstimatorV2 against Aer's own primitives, on one machine.

Run: ``.venv/bin/python benchmarks/primitives_bench.py [--qubits 12 --points 200 --reps 3]``.
Starts a local cluster (2 worker processes, concurrency 1) and times, end to end (``run``
to ``result``), a parameter scan and a VQE-style energy sweep:

- sampler: a ``real_amplitudes`` ansatz (measured), ``--points`` parameter-value sets,
  ``--shots`` shots each;
- estimator: the same ansatz (unmeasured) and a Heisenberg chain Hamiltonian,
  ``--points`` parameter-value sets.

Each is run by ``qiskit_aer.primitives`` alone (one process, Aer's own OpenMP threads),
by ``jobset.primitives`` on the Celery cluster, and on a 2-thread pool, interleaved
``--reps`` times; the medians are printed, and the results are checked equal to Aer's.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from qiskit import transpile
from qiskit.circuit.library import real_amplitudes
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer.primitives import EstimatorV2 as AerEstimatorV2
from qiskit_aer.primitives import SamplerV2 as AerSamplerV2

from jobset import CeleryExecutor
from jobset.local import LocalCluster
from jobset.primitives import EstimatorV2, SamplerV2


def heisenberg(n: int) -> SparsePauliOp:
    terms = []
    for q in range(n - 1):
        for p in "XYZ":
            label = ["I"] * n
            label[q] = label[q + 1] = p
            terms.append(("".join(label), 1.0))
    return SparsePauliOp.from_list(terms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--qubits", type=int, default=12)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    ansatz = transpile(real_amplitudes(args.qubits, reps=3), basis_gates=["ry", "cx"])
    measured = ansatz.measure_all(inplace=False)
    values = np.random.default_rng(1).uniform(0, np.pi, (args.points, ansatz.num_parameters))
    hamiltonian = heisenberg(args.qubits)
    sampler_pubs = [(measured, values)]
    estimator_pubs = [(ansatz, hamiltonian, values)]
    seed = 17
    est_options = {"run_options": {"seed_simulator": seed}}

    with (
        LocalCluster(workers=2, concurrency=1) as cluster,
        CeleryExecutor(cluster.settings) as celery,
        cf.ThreadPoolExecutor(2) as threads,
    ):
        contenders: dict[str, dict[str, Callable[[], Any]]] = {
            "sampler": {
                "aer": lambda: AerSamplerV2(seed=seed).run(sampler_pubs, shots=args.shots),
                "celery": lambda: SamplerV2(executor=celery, seed=seed).run(
                    sampler_pubs, shots=args.shots
                ),
                "threads": lambda: SamplerV2(executor=threads, seed=seed).run(
                    sampler_pubs, shots=args.shots
                ),
            },
            "estimator": {
                "aer": lambda: AerEstimatorV2(options=est_options).run(estimator_pubs),
                "celery": lambda: EstimatorV2(executor=celery, options=est_options).run(
                    estimator_pubs
                ),
                "threads": lambda: EstimatorV2(executor=threads, options=est_options).run(
                    estimator_pubs
                ),
            },
        }
        times: dict[tuple[str, str], list[float]] = {}
        results: dict[tuple[str, str], Any] = {}
        for _ in range(args.reps):
            for primitive, runners in contenders.items():
                for name, start_job in runners.items():  # interleaved: aer, celery, threads
                    start = time.perf_counter()
                    result = start_job().result()
                    times.setdefault((primitive, name), []).append(time.perf_counter() - start)
                    results[(primitive, name)] = result

    same_bits = all(
        results[("sampler", name)][0].data.meas == results[("sampler", "aer")][0].data.meas
        for name in ("celery", "threads")
    )
    same_evs = all(
        np.allclose(
            results[("estimator", name)][0].data.evs,
            results[("estimator", "aer")][0].data.evs,
            rtol=1e-12,
            atol=1e-12,
        )
        for name in ("celery", "threads")
    )
    print(
        f"{args.qubits} qubits, {args.points} parameter-value sets, sampler {args.shots} shots; "
        f"seconds from run() to result(), median (min-max) of {args.reps} interleaved reps"
    )
    names = {"aer": "aer alone", "celery": "celery, 2 workers", "threads": "2-thread pool"}
    print(f"{'primitive':10} " + " ".join(f"{h:>19}" for h in names.values()) + "  celery/aer")
    for primitive in contenders:
        cells, medians = [], {}
        for name in names:
            samples = times[(primitive, name)]
            medians[name] = statistics.median(samples)
            cells.append(f"{medians[name]:.2f} ({min(samples):.2f}-{max(samples):.2f})")
        ratio = medians["celery"] / medians["aer"]
        print(f"{primitive:10} " + " ".join(f"{c:>19}" for c in cells) + f"  {ratio:9.2f}x")
    print(f"sampler bit arrays equal to Aer's: {same_bits}; estimator evs equal: {same_evs}")


if __name__ == "__main__":
    main()
