"""``result()`` of a finished set of N one-shot sub-jobs: fetch, verify, merge, twice.

Run: ``.venv/bin/python benchmarks/merge_bench.py [--sub-jobs 20000] [--reps 3]
[--profile FILE]``.

A local cluster (2 workers) runs N two-qubit one-shot circuits with ``max_job_size=1`` to
the end.  Then each repetition starts a fresh process, which retrieves the set by its id
(``AerJobSet.retrieve``) and calls ``result()`` twice: the first call is what a user's
script pays (it reads the states, checks the signed proofs of the end, reads, verifies
and decodes every signed sub-result, and merges), the second what the same process pays
again with the first's Result still held.  Printed: the median of each, and the
producer's peak Python memory of the first call beside what the merged Result keeps.
``--profile FILE`` writes a cProfile of one first call.  ``--keep DIR`` keeps the finished
set (the server's snapshot and the settings) in DIR and, when DIR already holds one, times
that set instead of running a new one: code that reads the same format can be timed
against the same data.

Run it with ``PYTHONPATH`` set to another checkout to time that code on the same machine
in the same session (the workers are started from the package the script imports).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path

from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from jobset import AerJobSet, CeleryExecutor, Settings, run
from jobset.local import LocalCluster, RedisServer


def bell_pairs(n: int) -> list[QuantumCircuit]:
    base = QuantumCircuit(2, name="bell")
    base.h(0)
    base.cx(0, 1)
    base.measure_all()
    return [base.copy(name=f"bell{i}") for i in range(n)]


def time_result(settings: Settings, jobset_id: str, n: int, mode: str, profile: str) -> dict:
    """In this (fresh) process: result() of the finished set, twice ("time"), or once under
    tracemalloc ("memory") or cProfile ("profile": written to ``profile``)."""
    with CeleryExecutor(settings) as executor:
        job = AerJobSet.retrieve(jobset_id, executor)
        job.status()  # the connection and the record, outside the timing
        gc.collect()
        if mode == "memory":
            tracemalloc.start()
            result = job.result(timeout=600)
            kept, peak = tracemalloc.get_traced_memory()  # kept: the merged Result, about
            tracemalloc.stop()
            assert len(result.results) == n
            return {"peak": peak, "kept": kept}
        if mode == "profile":
            import cProfile

            cProfile.runctx("job.result(timeout=600)", globals(), {"job": job}, profile)
            return {}
        start = time.perf_counter()
        first = job.result(timeout=600)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        second = job.result(timeout=600)
        second_s = time.perf_counter() - start
    assert first.success and len(first.results) == n and len(second.results) == n
    return {"first_s": first_s, "second_s": second_s}


@contextlib.contextmanager
def finished_set(n: int, keep: Path | None) -> Iterator[tuple[Settings, str]]:
    """A server holding a finished set of ``n`` sub-jobs: run now, or the one kept in
    ``keep`` (then no worker runs while it is timed)."""
    saved = keep / f"set-{n}.json" if keep is not None else None
    if saved is not None and saved.exists():
        given = json.loads(saved.read_text())
        data = Path(given["dir"])
        with RedisServer(requirepass=given["password"], data_dir=data) as server:
            settings = Settings(broker_url=server.url, secret_key=given["key"])
            yield settings, given["id"]
        return
    warnings.simplefilter("ignore")  # the PerformanceWarning of max_job_size=1
    password = secrets.token_hex(16)
    with RedisServer(requirepass=password) as server:
        settings = Settings(broker_url=server.url, secret_key=secrets.token_hex(32))
        with LocalCluster(workers=2, settings=settings), CeleryExecutor(settings) as ex:
            start = time.perf_counter()
            job = run(AerSimulator(), bell_pairs(n), executor=ex, max_job_size=1, shots=1)
            job.wait_for_final_state(timeout=3600, wait=1)
            print(f"{n} sub-jobs ran in {time.perf_counter() - start:.0f} s", flush=True)
            if saved is not None:
                assert keep is not None
                ex.redis.save()
                data = keep / f"redis-{n}"
                data.mkdir(parents=True, exist_ok=True)
                shutil.copy(server.data_dir / "dump.rdb", data / "dump.rdb")
                key = settings.secret_key.decode()
                record = {"dir": str(data), "password": password, "key": key}
                saved.write_text(json.dumps({**record, "id": job.job_id()}))
        yield settings, job.job_id()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sub-jobs", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--profile", help="write a cProfile of one first call here")
    parser.add_argument("--keep", help="a folder that keeps the finished set between runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # settings, set id, mode
    args = parser.parse_args()
    if args.child:
        given = json.loads(args.child)
        settings = Settings.from_env(given["env"])
        out = time_result(settings, given["id"], args.sub_jobs, given["mode"], args.profile)
        print(json.dumps(out), flush=True)
        return
    n = args.sub_jobs
    with finished_set(n, Path(args.keep) if args.keep else None) as (settings, jobset_id):

        def child(mode: str) -> dict:
            given = {"env": settings.to_env(), "id": jobset_id, "mode": mode}
            command = [sys.executable, __file__, "--sub-jobs", str(n), "--child"]
            command += [json.dumps(given), "--profile", args.profile or ""]
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            return dict(json.loads(out.stdout.strip().splitlines()[-1]))

        runs = []
        for rep in range(args.reps):
            runs.append(child("time"))
            print(
                f"  rep {rep + 1}: first {runs[-1]['first_s']:.2f} s, "
                f"second {runs[-1]['second_s']:.2f} s",
                flush=True,
            )
        memory = child("memory")
        if args.profile:
            child("profile")
    first = statistics.median(r["first_s"] for r in runs)
    second = statistics.median(r["second_s"] for r in runs)
    peak, kept = memory["peak"], memory["kept"]
    print(
        f"result() of {n} one-shot sub-results, median of {len(runs)} fresh processes: "
        f"first call {first:.2f} s, second call {second:.2f} s; peak {peak / 1e6:.0f} MB "
        f"(tracemalloc) for a merged Result of {kept / 1e6:.0f} MB ({peak / max(kept, 1):.2f}x)"
    )
    if args.profile:
        print(f"cProfile of one first call: {args.profile}")


if __name__ == "__main__":
    main()
