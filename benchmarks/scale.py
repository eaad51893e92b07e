"""Big sets: submit, status, cancel, results and Redis memory at 20 000 and 100 000 sub-jobs.

Run: ``python benchmarks/scale.py [--sizes 20000,100000] [--run-sizes 20000]``.

For each size, on a private server: the raw floor first (the same payload and message
bytes written by redis-py in one pipeline per 1000, nothing else), then ``run()`` of that
many one-shot single-qubit sub-jobs (``max_job_size=1``) with no worker online, ``status()``
and ``progress()`` at 0 %, Redis bytes per queued sub-job, ``cancel()``, and how long a
4-sub-job set submitted right after the cancel takes once 2 workers start, with how many
of the cancelled sub-jobs ran, and what reading the live workers costs (as a submit does,
from their index) beside a SCAN of every key for their heartbeats.  For the sizes in
``--run-sizes`` the set then runs on those workers: status and progress at 50 % and
100 %, and ``result()`` with the producer's peak Python memory (tracemalloc) beside what
the merged Result keeps.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import secrets
import time
import tracemalloc
from collections.abc import Callable

from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator
from status_bench import timed_ms

from jobset import CeleryExecutor, Settings, run
from jobset.deadline import wait_for
from jobset.local import LocalCluster, RedisServer
from jobset.protocol import (
    DEFAULT_QUEUE,
    batch_key,
    counts_key,
    runs_key,
    worker_keys_pattern,
)


def coins(n: int) -> list[QuantumCircuit]:
    base = QuantumCircuit(1, name="coin")
    base.h(0)
    base.measure_all()
    return [base.copy(name=f"coin{i}") for i in range(n)]


def ms(fn: Callable[[], object]) -> float:
    return timed_ms(fn, 3)


def used(client) -> int:
    return int(client.info("memory")["used_memory"])


def floor_per_sub_job_ms(client, payload: bytes, message: bytes, n: int) -> float:
    """The same bytes our submit writes, in pipelines of 1000: what Redis itself costs."""
    start = time.perf_counter()
    for first in range(0, n, 1000):
        pipe = client.pipeline(transaction=False)
        for k in range(first, min(n, first + 1000)):
            pipe.set(f"floor:batch:{k}", payload, ex=3600)
            pipe.lpush("floor:queue", message)
        pipe.execute()
    elapsed = time.perf_counter() - start
    for first in range(0, n, 1000):
        client.delete(*(f"floor:batch:{k}" for k in range(first, min(n, first + 1000))))
    client.delete("floor:queue")
    return elapsed * 1000 / n


def wait_fraction(job, total: int, fraction: float, timeout_s: float) -> None:
    wait_for(
        lambda: job.progress().get("DONE", 0) >= fraction * total,
        timeout_s,
        f"{fraction:.0%} of {total} sub-jobs done",
        pause_s=0.2,
    )


def one_size(n: int, *, run_it: bool) -> None:
    key = secrets.token_hex(32)
    with RedisServer() as server:
        client = server.client()
        settings = Settings(broker_url=server.url, secret_key=key)
        with CeleryExecutor(settings) as ex:
            warm = run(AerSimulator(), coins(2), executor=ex, max_job_size=1, shots=1)
            warm.cancel()
            circuits = coins(n)
            before = used(client)
            start = time.perf_counter()
            job = run(AerSimulator(), circuits, executor=ex, max_job_size=1, shots=1)
            submit_ms = (time.perf_counter() - start) * 1000 / n
            per_sub_job = (used(client) - before) / n
            payload = client.get(batch_key(job.job_id(), 0)) or b""
            message = client.lindex(DEFAULT_QUEUE, 0) or b""
            floor_ms = floor_per_sub_job_ms(client, payload, message, n)
            print(
                f"{n:>7} sub-jobs  submit {submit_ms:.3f} ms/sub-job (raw Redis floor "
                f"{floor_ms:.3f}, ratio {submit_ms / floor_ms:.1f}x); Redis "
                f"{per_sub_job:.0f} B/sub-job ({len(payload)} B payload, {len(message)} B "
                f"message)"
            )
            print(
                f"{'':>17}status at 0 % {ms(job.status):.1f} ms, progress {ms(job.progress):.1f} ms"
            )
            start = time.perf_counter()
            job.cancel()
            cancel_s = time.perf_counter() - start
            with LocalCluster(
                workers=2, concurrency=1, settings=Settings(broker_url=server.url, secret_key=key)
            ):
                start = time.perf_counter()
                after = run(AerSimulator(), coins(4), executor=ex, max_job_size=1, shots=4)
                after.result(timeout=120)
                next_s = time.perf_counter() - start
                workers_ms = ms(ex.heartbeats)
                scan_ms = ms(lambda: list(client.scan_iter(match=worker_keys_pattern(), count=500)))
                ran = sum(int(v) for v in client.hvals(counts_key(job.job_id())))
                started = len(client.hkeys(runs_key(job.job_id())))
                print(
                    f"{'':>17}cancel() {cancel_s:.2f} s; the next 4-sub-job set done in "
                    f"{next_s:.2f} s; cancelled sub-jobs that ran afterwards: {started} "
                    f"(tallied {ran}); status {job.status().name}"
                )
                print(
                    f"{'':>17}reading the live workers {workers_ms:.1f} ms from their index; "
                    f"a SCAN of all {client.dbsize()} keys for them {scan_ms:.1f} ms"
                )
                if run_it:
                    run_to_completion(ex, circuits, n)


def run_to_completion(ex: CeleryExecutor, circuits: list[QuantumCircuit], n: int) -> None:
    start = time.perf_counter()
    job = run(AerSimulator(), circuits, executor=ex, max_job_size=1, shots=1)
    wait_fraction(job, n, 0.5, timeout_s=3600)
    half = f"status at 50 % {ms(job.status):.1f} ms, progress {ms(job.progress):.1f} ms"
    job.wait_for_final_state(timeout=3600, wait=1)
    ran_s = time.perf_counter() - start
    full = f"status at 100 % {ms(job.status):.1f} ms, progress {ms(job.progress):.1f} ms"
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    result = job.result(timeout=600)
    result_s = time.perf_counter() - start
    gc.collect()
    kept, peak = tracemalloc.get_traced_memory()  # kept: the merged Result, about
    tracemalloc.stop()
    merged = len(pickle.dumps(result))
    print(f"{'':>17}ran in {ran_s:.0f} s on 2 workers; {half}; {full}")
    print(
        f"{'':>17}result() {result_s:.2f} s, producer peak {peak / 1e6:.0f} MB for a "
        f"merged Result of {kept / 1e6:.0f} MB in memory ({peak / kept:.1f}x; "
        f"{merged / 1e6:.0f} MB pickled)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--run-sizes", default="20000", help="sizes also run to the end")
    args = parser.parse_args()
    run_sizes = {int(s) for s in args.run_sizes.split(",") if s}
    for n in (int(s) for s in args.sizes.split(",")):
        one_size(n, run_it=n in run_sizes)


if __name__ == "__main__":
    main()
