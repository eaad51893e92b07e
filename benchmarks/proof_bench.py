"""What proving a big set's end costs (the signed end records), beside a status read from the
tally and the read of every Celery state that a wait does once at the end: the same
server, the same run.  ``python benchmarks/proof_bench.py [N]`` (default 100 000)."""

import json
import statistics
import sys
import time
import uuid

from celery import Celery

from jobset import protocol
from jobset.executors.celery import evidence, tally
from jobset.executors.celery.store import SignedStore
from jobset.local import RedisServer
from jobset.settings import Settings

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
with RedisServer() as srv:
    s = Settings(broker_url=srv.url, secret_key="k" * 32)
    c = srv.client()
    store = SignedStore(c, s)
    sid = str(uuid.uuid4())
    app = Celery(broker=srv.url, backend=srv.url)
    meta_keys = [app.backend.get_key_for_task(f"{sid}-{i}") for i in range(N)]
    meta = json.dumps(
        {
            "status": "SUCCESS",
            "result": {"experiments": 1, "shots": 1, "success": True, "worker": "w@h"},
            "traceback": None,
            "children": [],
            "date_done": "2026-12-04T21:00:00.000000+00:00",
            "task_id": "x",
        }
    )
    for first in range(0, N, 5000):
        p = c.pipeline(transaction=False)
        for i in range(first, min(N, first + 5000)):
            evidence.write_end(p, s, sid, i, tally.DONE)
            p.set(meta_keys[i], meta)
        p.execute()
    c.hset(protocol.counts_key(sid), "D", N)

    def timed(fn, reps=5):
        out = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return statistics.median(out) * 1000

    def states():
        for first in range(0, N, 500):  # what CeleryRun.states() reads (one MGET there)
            [json.loads(r) for r in c.mget(meta_keys[first : first + 500])]

    tally_ms = timed(lambda: tally.counts(c.hgetall(protocol.counts_key(sid))), 20)
    prove_ms = timed(lambda: evidence.proven_status(store, sid, N))
    states_ms = timed(states)
    assert evidence.proven_status(store, sid, N)[0].name == "DONE"
    # A forged tally on a queued set: nothing to prove, every result key read (absent).
    other = str(uuid.uuid4())
    forged_ms = timed(lambda: evidence.proven_status(store, other, N))
    print(
        f"N={N}: status from the tally {tally_ms:.2f} ms | "
        f"proof of the end, once {prove_ms:.0f} ms "
        f"| all Celery states (a wait's final read) {states_ms:.0f} ms | ratio proof/states "
        f"{prove_ms / states_ms:.2f} | a forged tally's check {forged_ms:.0f} ms"
    )
    print(
        "ends hash bytes:",
        c.memory_usage(f"jobset:{sid}:ends"),
        "per sub-job:",
        round(c.memory_usage(f"jobset:{sid}:ends") / N, 1),
    )
