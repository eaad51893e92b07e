"""Repeated Sentinel failovers under running sets: what vanishes, what runs again.

Run: ``python benchmarks/failover.py [--rounds 10] [--sub-jobs 40]``.

On a primary, a replica and three sentinels (``jobset.local.ha``, down-after 1 s) with two
workers (visibility timeout 3 s), each round submits a set of one-circuit sub-jobs, lets a
few finish, SIGKILLs the primary, starts it again as a replica once the sentinels promoted
the other, and finishes the set (publishing again what the wait reports lost).  Per round:
the failover time (kill to a new primary named by the sentinels), kill to merged result,
sub-jobs whose Celery record said done before the kill but whose result was gone after it,
sub-jobs reported lost (message gone), payloads missing among those, sub-jobs started more
than once, and whether the result equals ``AerSimulator.run``.

Beside the sets, a probe thread writes a counter (``INCR``) as fast as it can, plain and
followed by ``WAIT 1`` in turns of rounds: the acknowledged increments missing on the new
primary are the raw window of asynchronous replication that WAIT closes.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import threading
import time
from typing import Any

import redis
from qiskit import QuantumCircuit
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, JobSetFailedError, Settings, SubJobsLostError, run
from jobset.local import LocalCluster
from jobset.local.ha import SentinelCluster
from jobset.protocol import Kind, runs_key, started_field

SEED, SHOTS = 23, 64


def circuits(n: int) -> list[QuantumCircuit]:
    out = []
    for i in range(n):
        qc = QuantumCircuit(4, name=f"f{i}")
        qc.h(0)
        for q in range(3):
            qc.cx(q, q + 1)
        qc.rx(0.07 * (i + 1), 3)
        qc.measure_all()
        out.append(qc)
    return out


class Probe(threading.Thread):
    """INCR a counter, optionally with WAIT 1 after each; remembers the last acknowledged."""

    def __init__(self, client: redis.Redis, key: str, *, wait: bool) -> None:
        super().__init__(daemon=True)
        self.client, self.key, self.wait = client, key, wait
        self.acked = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.incr(self.key)
                if self.wait:
                    pipe.wait(1, 1000)
                replies = pipe.execute()
                if not self.wait or replies[-1] >= 1:
                    self.acked = max(self.acked, int(replies[0]))
            except redis.RedisError:
                return  # the primary is gone: what it acknowledged is in self.acked


def vanished(failure: Any) -> bool:
    """A failure that only says a write vanished in the failover (see the HA test)."""
    return failure.error_type == "ResultGone" or (
        failure.error_type == "DecodeError" and "no payload stored" in failure.message
    )


def one_round(
    ha: SentinelCluster, executor: CeleryExecutor, cs: list[QuantumCircuit], *, wait: bool
) -> dict[str, Any]:
    reference = AerSimulator().run(cs, shots=SHOTS, seed_simulator=SEED, memory=True).result()
    job = run(
        AerSimulator(),
        cs,
        executor=executor,
        max_job_size=1,
        shots=SHOTS,
        seed_simulator=SEED,
        memory=True,
    )
    indices = list(range(len(cs)))
    deadline = time.monotonic() + 60
    while job.progress().get("DONE", 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    probe_key = f"probe:{job.job_id()}"
    direct = redis.Redis(port=ha.primary().port, password=ha.password)
    probe = Probe(direct, probe_key, wait=wait)
    probe.start()
    while probe.acked < 200:
        time.sleep(0.001)
    done_before = [
        i for i, s in zip(indices, job.status(indices), strict=True) if s is JobStatus.DONE
    ]

    old = ha.primary_port()
    assert old is not None
    killed_at = time.monotonic()
    dead = ha.kill_primary()
    ha.wait_failover(old, timeout_s=60)
    failover_s = time.monotonic() - killed_at
    probe.stop.set()
    probe.join(5)
    ha.rejoin(dead)

    present = executor.store.get_many(Kind.RESULT, [(job.job_id(), i) for i in done_before])
    results_gone = sum(r is None for r in present)
    probe_value = int(executor.redis.get(probe_key) or 0)

    lost: list[int] = []
    payloads_gone = results_gone_later = 0
    while True:
        try:
            result = job.result(timeout=120)
            break
        except JobSetFailedError as e:
            if not all(vanished(f) for f in e.failures):
                raise
            # Recorded on the new primary, its result or payload left on the old one.
            results_gone_later += len(job.retry_failed())
        except SubJobsLostError as e:
            refs = [(job.job_id(), i) for i in e.indices]
            payloads_gone += sum(b is None for b in executor.store.get_many(Kind.BATCH, refs))
            lost += job.resubmit_lost()
    total_s = time.monotonic() - killed_at
    starts = executor.redis.hgetall(runs_key(job.job_id()))
    reruns = sum(max(0, int(starts.get(started_field(i).encode(), 0)) - 1) for i in range(len(cs)))
    exact = all(
        result.get_counts(i) == reference.get_counts(i)
        and result.get_memory(i) == reference.get_memory(i)
        for i in range(len(cs))
    )
    direct.close()
    return {
        "failover_s": round(failover_s, 2),
        "result_s": round(total_s, 2),
        "done_before_kill": len(done_before),
        "results_gone": results_gone,
        "results_gone_later": results_gone_later,
        "lost_sub_jobs": len(lost),
        "payloads_gone": payloads_gone,
        "reruns": reruns,
        "probe_wait": wait,
        "probe_acked": probe.acked,
        "probe_vanished": max(0, probe.acked - probe_value),
        "exact": exact,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sub-jobs", type=int, default=40)
    args = parser.parse_args()
    cs = circuits(args.sub_jobs)
    rows = []
    with (
        SentinelCluster(down_after_ms=1000, failover_timeout_ms=3000) as ha,
        LocalCluster(
            workers=2,
            settings=Settings(
                broker_url=ha.url,
                secret_key=secrets.token_hex(32),
                sentinel_master=ha.master_name,
                sentinel_password=ha.sentinel_password,
                visibility_timeout_s=3,
                connect_timeout_s=2,
            ),
        ) as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        for n in range(args.rounds):
            row = one_round(ha, executor, cs, wait=n % 2 == 1)
            rows.append(row)
            print(json.dumps({"round": n, **row}), flush=True)
            # Both servers online again before the next kill.
            ha.wait_ready(timeout_s=60)
    summary = {
        "rounds": len(rows),
        "failover_s": [min(r["failover_s"] for r in rows), max(r["failover_s"] for r in rows)],
        "failover_s_median": statistics.median(r["failover_s"] for r in rows),
        "result_s": [min(r["result_s"] for r in rows), max(r["result_s"] for r in rows)],
        **{
            k: sum(r[k] for r in rows)
            for k in (
                "results_gone",
                "results_gone_later",
                "lost_sub_jobs",
                "payloads_gone",
                "reruns",
            )
        },
        "exact": sum(r["exact"] for r in rows),
        "probe_vanished_plain": [r["probe_vanished"] for r in rows if not r["probe_wait"]],
        "probe_vanished_wait": [r["probe_vanished"] for r in rows if r["probe_wait"]],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
