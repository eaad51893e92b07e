"""Where W1's time goes: each stage of a job set timed on its own, old codec and new.

Run: ``.venv/bin/python benchmarks/profile_w1.py``.  W1 is 1000 GHZ-5 circuits, 1000 shots,
split as ``max_job_size=None`` splits it on 2 worker slots (4 sub-jobs of 250).  "before"
signs every sub-batch as pickle; "after" is the current wire format (circuits as QPY when
that is exact).  Per-worker stages are per sub-job; two workers run two sub-jobs at once.
The end-to-end figure is measured on a local cluster of 2 workers.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

from circuits import ghz
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, Settings, codec, run
from jobset.executors.aer import run_sub_batch
from jobset.local import LocalCluster
from jobset.merge import merge_results
from jobset.plan import make_plan
from jobset.protocol import Kind

KEY = b"profile-signing-key-of-32-bytes!"


def best_ms(fn: Callable[[], Any], repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return min(samples)


def main() -> None:
    circuits = [ghz(5, f"ghz{i}") for i in range(1000)]
    plan = make_plan(circuits, shots=1000, seed_simulator=1, slots=2)
    batches = plan.sub_batches
    sim = AerSimulator()
    old = [codec.dumps(b, kind=Kind.BATCH, key=KEY, context="b") for b in batches]
    new = [codec.dumps_batch(b, key=KEY, context="b") for b in batches]
    result = run_sub_batch(sim, batches[0], threads=1)
    blob = codec.dumps(result, kind=Kind.RESULT, key=KEY, context="r")
    results = {b.index: run_sub_batch(sim, b, threads=1) for b in batches}
    stages = [
        ("producer: plan", best_ms(lambda: make_plan(circuits, shots=1000, slots=2))),
        (
            "producer: encode all sub-batches (before: pickle)",
            best_ms(
                lambda: [codec.dumps(b, kind=Kind.BATCH, key=KEY, context="b") for b in batches]
            ),
        ),
        (
            "producer: encode all sub-batches (after: QPY)",
            best_ms(lambda: [codec.dumps_batch(b, key=KEY, context="b") for b in batches]),
        ),
        (
            "worker: decode one sub-batch (before)",
            best_ms(lambda: codec.loads(old[0], kind=Kind.BATCH, keys=(KEY,), context="b")),
        ),
        (
            "worker: decode one sub-batch (after)",
            best_ms(lambda: codec.loads_batch(new[0], keys=(KEY,), context="b")),
        ),
        (
            "worker: simulate one sub-batch (1 thread)",
            best_ms(lambda: run_sub_batch(sim, batches[0], threads=1), repeat=3),
        ),
        (
            "worker: encode one result",
            best_ms(lambda: codec.dumps(result, kind=Kind.RESULT, key=KEY, context="r")),
        ),
        (
            "producer: decode all results",
            best_ms(
                lambda: [
                    codec.loads(blob, kind=Kind.RESULT, keys=(KEY,), context="r") for _ in batches
                ]
            ),
        ),
        (
            "producer: merge",
            best_ms(lambda: merge_results(plan, results, job_id="p", time_taken=0.0)),
        ),
        (
            "Aer alone, all 1000 (floor)",
            best_ms(
                lambda: (
                    AerSimulator(max_parallel_experiments=0)
                    .run(circuits, shots=1000, seed_simulator=1)
                    .result()
                ),
                repeat=3,
            ),
        ),
    ]
    one_thread = Settings(secret_key=secrets.token_hex(32), aer_threads=1)
    with (
        LocalCluster(workers=2, settings=one_thread, private_server=True) as cluster,
        CeleryExecutor(cluster.settings) as ex,
    ):
        run(sim, circuits[:10], executor=ex, shots=10).result()
        e2e = []
        for _ in range(5):
            fresh = [ghz(5, f"ghz{i}") for i in range(1000)]
            start = time.perf_counter()
            run(AerSimulator(), fresh, executor=ex, shots=1000, seed_simulator=1).result()
            e2e.append((time.perf_counter() - start) * 1000)
    stages.append(("end to end on 2 workers (median of 5)", statistics.median(e2e)))
    print(f"{'stage':55} {'ms':>8}")
    for name, ms in stages:
        print(f"{name:55} {ms:8.1f}")


if __name__ == "__main__":
    main()
