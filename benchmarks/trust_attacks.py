"""The trust-boundary attacks, each measured end to end; prints one JSON object.

1. a finished set's tally and Celery records copied onto a queued set's keys;
2. sub-job messages carrying an errback, a callback, a chord and a group;
3. Flower's Redis user (config/redis-users.acl): CLIENT KILL/PAUSE, EVAL, SCRIPT LOAD,
   KEYS, then add_consumer / a push to a celeryev list / shutdown on the control channel;
4. the passwords in inspect stats, conf and report on a Sentinel cluster;
5. a record of the wrong Redis type, a rescored and a removed index entry, then listing;
6. a message for an invented set id, the metrics bind address, scripts/cluster's files.

Run: ``python benchmarks/trust_attacks.py [1 2 ...]``.  It measures whichever ``jobset``
it imports, so an older tree is measured with its root first on ``PYTHONPATH`` (run from
that root: the workers start from the tree ``jobset`` comes from).
"""

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from celery import Celery
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

import jobset
from jobset import AerJobSet, CeleryExecutor, Settings, run
from jobset.local import LocalCluster, RedisServer
from jobset.protocol import (
    DEFAULT_QUEUE,
    INDEX_KEY,
    PROTOCOL_VERSION,
    RUN_SUB_JOB_TASK,
    cancel_key,
    record_key,
)

ROOT = Path(jobset.__file__).resolve().parents[1]
R: dict[str, object] = {"tree": str(ROOT)}
WHICH = set(sys.argv[1:]) or {"1", "2", "3", "4", "5", "6"}


def circuits(n):
    out = []
    for i in range(n):
        qc = QuantumCircuit(2, 2, name=f"c{i}")
        qc.h(0)
        qc.cx(0, 1)
        qc.measure([0, 1], [0, 1])
        out.append(qc)
    return out


def wait(pred, timeout=90):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise TimeoutError


def settle(client, app, tid):
    res = app.AsyncResult(tid)
    wait(lambda: res.state in ("FAILURE", "SUCCESS"))
    wait(lambda: all(tid.encode() not in v for v in client.hvals("unacked")))
    return res.state, str(res.result)[:120]


def main():
    with LocalCluster(workers=1, concurrency=1) as cluster, CeleryExecutor(cluster.settings) as ex:
        victim = run(AerSimulator(), circuits(3), executor=ex, max_job_size=1, shots=16)
        victim.result(timeout=120)
        v = victim.job_id()
        attacker = Celery("attacker", broker=cluster.redis_url, backend=cluster.redis_url)
        attacker.conf.task_serializer = "json"
        if "1" in WHICH:
            attack_1(ex, cluster, v)
        if "2" in WHICH:
            attack_2(ex, attacker, v)
        if "5" in WHICH:
            attack_5(ex, v)
        if "6" in WHICH:
            attack_6(ex, attacker)
        attacker.close()
    if "3" in WHICH:
        attack_3()
    if "4" in WHICH:
        attack_4()


def attack_1(ex, cluster, v):
    """A finished set's tally and Celery records copied onto a queued set's keys."""
    src = ex.redis
    with (
        RedisServer() as srv,
        CeleryExecutor(
            Settings(broker_url=srv.url, secret_key=cluster.settings.secret_key)
        ) as idle,
    ):
        q = run(AerSimulator(), circuits(3), executor=idle, max_job_size=1, shots=16)
        qid, dst = q.job_id(), idle.redis
        for suffix in ("states", "counts", "ends"):
            fields = src.hgetall(f"jobset:{v}:{suffix}")
            if fields:
                dst.hset(f"jobset:{qid}:{suffix}", mapping=fields)
        for k in range(3):
            meta = src.get(ex.app.backend.get_key_for_task(f"{v}-{k}"))
            dst.set(
                idle.app.backend.get_key_for_task(f"{qid}-{k}"),
                meta.replace(v.encode(), qid.encode()),
            )
        R["1.status"] = q.status().name
        R["1.retrieve_status"] = AerJobSet.retrieve(qid, idle).status().name
        R["1.ls_status"] = [i.status.name for i in AerJobSet.list_sets(idle)]
        env = {**os.environ, **idle.settings.to_env()}
        import subprocess

        out = subprocess.run(
            [sys.executable, "-m", "jobset.cli", "status", qid],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        R["1.cli_status"] = out.stdout.splitlines()[:1]
        try:
            q.wait_for_final_state(timeout=2, wait=0.2)
            R["1.wait"] = "returned"
        except Exception as e:
            R["1.wait"] = type(e).__name__
        R["1.cancel_returned"] = q.cancel()
        R["1.mark_written"] = bool(dst.exists(cancel_key(qid)))
        R["1.messages_left_in_queue"] = srv.client().llen(DEFAULT_QUEUE)


def attack_2(ex, attacker, v):
    """Messages whose embed or headers carry workflow fields."""
    mark = f"jobset:{v}:cancelled"
    good = {"jobset_id": v, "index": 0, "experiments": 1, "version": PROTOCOL_VERSION}
    sig = attacker.signature("jobset.anything", queue=mark)
    for name, options in {
        "errback": {"link_error": sig},
        "callback": {"link": sig},
        "chord_group": {"chord": sig, "group_id": f"evil-{uuid.uuid4().hex[:6]}"},
    }.items():
        ex.redis.delete(mark)
        tid = str(uuid.uuid4())
        attacker.send_task(
            RUN_SUB_JOB_TASK, kwargs=good, task_id=tid, queue=DEFAULT_QUEUE, **options
        )
        state, why = settle(ex.redis, attacker, tid)
        time.sleep(1)  # anything the worker publishes after its ack
        R[f"2.{name}.state"] = f"{state}: {why}"
        R[f"2.{name}.victim_mark_list_written"] = ex.redis.type(mark).decode()
        R[f"2.{name}.evil_keys"] = len(list(ex.redis.scan_iter(match="*evil*", count=1000)))
        ex.redis.delete(mark)
    R["2.victim_status_after"] = AerJobSet.retrieve(v, ex).status().name


def attack_5(ex, v):
    broken = str(uuid.uuid4())
    c = ex.redis
    c.zadd(INDEX_KEY, {broken: time.time()})
    c.hset(record_key(broken), "x", "1")
    try:
        ids = [i.job_id for i in AerJobSet.list_sets(ex)]
        R["5.wrong_type_record"] = f"listed, skipped={broken not in ids}"
    except Exception as e:
        R["5.wrong_type_record"] = f"raised {type(e).__name__}: {str(e)[:60]}"
    c.delete(record_key(broken))
    c.zrem(INDEX_KEY, broken)
    c.zadd(INDEX_KEY, {v: 0})
    AerJobSet.list_sets(ex)
    R["5.rescored_to_0_still_listed"] = v in [i.job_id for i in AerJobSet.list_sets(ex)]
    c.zrem(INDEX_KEY, v)
    R["5.index_entry_removed_still_listed"] = v in [i.job_id for i in AerJobSet.list_sets(ex)]


def attack_6(ex, attacker):
    fresh = str(uuid.uuid4())
    kwargs = {"jobset_id": fresh, "index": 0, "experiments": 1, "version": PROTOCOL_VERSION}
    tid = f"{fresh}-0"
    attacker.send_task(RUN_SUB_JOB_TASK, kwargs=kwargs, task_id=tid, queue=DEFAULT_QUEUE)
    R["6.fresh_uuid.state"] = " ".join(settle(ex.redis, attacker, tid))
    keys = sorted(
        k.decode().replace(fresh, "<id>") for k in ex.redis.scan_iter(match=f"jobset:{fresh}*")
    )
    R["6.fresh_uuid.keys_written"] = keys
    R["6.fresh_uuid.ttls_s"] = [ex.redis.ttl(k.replace("<id>", fresh)) for k in keys]
    from jobset.settings import MetricsSettings

    R["6.metrics_default_addr"] = MetricsSettings().addr
    from jobset.local import command

    d = Path(tempfile.mkdtemp())
    (d / "victim").write_text("untouched")
    (d / "jobset.env.tmp").symlink_to(d / "victim")
    try:
        command._write_private(d / "jobset.env", "SECRET\n")
    except Exception as e:
        R["6.write_private_error"] = type(e).__name__
    R["6.planted_link_written_through"] = (d / "victim").read_text() != "untouched"
    old = os.umask(0o022)
    try:
        top = d / "cl"
        if hasattr(command, "private_dir"):
            command.private_dir(top)
        else:  # the old main's own loop
            for sub in ("logs", "redis"):
                (top / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        R["6.cluster_dir_mode"] = oct(top.stat().st_mode & 0o777)
    finally:
        os.umask(old)


def attack_3():
    acl = (ROOT / "config/redis-users.acl").read_text()
    acl = acl.replace("@JOBSET_REDIS_PASSWORD@", "jpw").replace("@FLOWER_REDIS_PASSWORD@", "fpw")
    lines = [line for line in acl.splitlines() if line.startswith("user ")]
    lines[0] = "user default on nopass resetkeys -@all +ping"
    with RedisServer(config=lines) as srv:
        settings = Settings(
            broker_url=f"redis://jobset:jpw@127.0.0.1:{srv.port}/0", secret_key="k" * 32
        )
        flower_url = f"redis://flower:fpw@127.0.0.1:{srv.port}/0"
        with LocalCluster(workers=1, settings=settings):
            f = redis.Redis.from_url(flower_url)
            for name, cmd in {
                "CLIENT KILL": ("CLIENT", "KILL", "ID", "999999"),
                "CLIENT PAUSE": ("CLIENT", "PAUSE", "1"),
                "EVAL": ("EVAL", "return 1", "0"),
                "SCRIPT LOAD": ("SCRIPT", "LOAD", "return 1"),
                "KEYS": ("KEYS", "nothing-*"),
            }.items():
                try:
                    f.execute_command(*cmd)
                    R[f"3.flower {name}"] = "allowed"
                except redis.exceptions.NoPermissionError:
                    R[f"3.flower {name}"] = "NOPERM"
                except redis.RedisError as e:
                    R[f"3.flower {name}"] = f"allowed ({type(e).__name__})"
            app = Celery("flower", broker=flower_url, backend=None)
            app.conf.task_serializer = "json"
            ctl = app.control
            R["3.add_consumer_reply"] = str(
                ctl.add_consumer("celeryev.evil", reply=True, timeout=5)
            )[:150]
            queues = ctl.inspect(timeout=5).active_queues() or {}
            R["3.worker_consumes_celeryev.evil"] = any(
                q["name"] == "celeryev.evil" for qs in queues.values() for q in qs
            )
            tid = str(uuid.uuid4())
            try:
                app.send_task(RUN_SUB_JOB_TASK, kwargs={}, task_id=tid, queue="celeryev.evil")
                R["3.flower_push_to_celeryev.evil"] = "sent"
            except Exception as e:
                R["3.flower_push_to_celeryev.evil"] = type(e).__name__
            admin = redis.Redis(port=srv.port, username="jobset", password="jpw")
            try:
                wait(lambda: admin.exists(f"celery-task-meta-{tid}"), 20)
                R["3.worker_ran_it_and_wrote_celery-task-meta"] = True
            except TimeoutError:
                R["3.worker_ran_it_and_wrote_celery-task-meta"] = False
            R["3.shutdown_reply"] = str(ctl.broadcast("shutdown", reply=True, timeout=5))[:120]
            time.sleep(2)
            R["3.worker_alive_after_shutdown"] = bool(ctl.inspect(timeout=5).ping())
            app.close()


def attack_4():
    from jobset.local.ha import SentinelCluster

    with SentinelCluster() as s:
        settings = Settings(
            broker_url=s.url,
            secret_key="k" * 32,
            sentinel_master=s.master_name,
            sentinel_password=s.sentinel_password,
        )
        with LocalCluster(workers=1, settings=settings), CeleryExecutor(settings) as ex:
            i = ex.app.control.inspect(timeout=10)
            for name, reply in (
                ("stats", i.stats()),
                ("conf", i.conf(with_defaults=True)),
                ("report", i.report()),
            ):
                text = json.dumps(reply, default=repr)
                R[f"4.inspect {name}: sentinel password"] = s.sentinel_password in text
                R[f"4.inspect {name}: server password"] = s.password in text


main()
print(json.dumps(R, indent=1))
