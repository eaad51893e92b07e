"""An attacker who holds only the Redis URL (and password), not ``JOBSET_SECRET_KEY``.

Against real workers on the session cluster: crafted sub-job messages in every field,
values copied between keys and sets, re-cut envelopes, forged index entries and
heartbeats.  What must hold: no code runs (a marker file), no key is written outside
the namespace, no set reads another's result, and the workers serve on.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from hashlib import sha1
from pathlib import Path

import pytest
import redis
from celery import Celery
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from jobset import (
    AerJobSet,
    CeleryExecutor,
    DecodeError,
    JobSetTimeoutError,
    SecurityError,
    Settings,
    protocol,
    run,
)
from jobset.codec import MAGIC
from jobset.executors.celery.evidence import cancel_proven
from jobset.local import LocalCluster, RedisServer
from jobset.protocol import (
    DEFAULT_QUEUE,
    INDEX_KEY,
    OWNER_QUEUES_KEY,
    PROTOCOL_VERSION,
    RUN_SUB_JOB_TASK,
    WORKERS_INDEX_KEY,
    Kind,
    SubJobRef,
    backend_key,
    batch_key,
    check_envelope,
    ends_key,
    record_key,
    result_key,
    worker_key,
)
from workers.control import KOMBU_SCRIPTS

from .faultkit import wait_until
from .workloads import qv_circuits

pytestmark = pytest.mark.integration

HEADER = len(MAGIC) + 1 + 32
SET_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PROJECT_KEY = re.compile(
    rf"jobset:(index|owner-queues|workers|worker:[^*?\[\]\x00]+|cache:[0-9a-f]{{64}}|"
    rf"{SET_ID.pattern}:(record|backend|primitive|runs|cancelled|ends|"
    rf"(batch|result|cancelled):\d+))"
)


class Exploit:
    """Pickles to a call that creates ``path``: proof of execution if it is ever loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "attacker code ran"


@pytest.fixture(scope="module")
def attacker(cluster) -> Iterator[Celery]:
    """A Celery app of the attacker's: the broker URL, no secret, JSON messages."""
    app = Celery("attacker", broker=cluster.redis_url, backend=cluster.redis_url)
    app.conf.task_serializer = "json"
    yield app
    app.close()


def _send(attacker: Celery, kwargs: object, *, tid: str | None = None, args=()) -> str:
    tid = tid or str(uuid.uuid4())
    attacker.send_task(RUN_SUB_JOB_TASK, args=args, kwargs=kwargs, task_id=tid, queue=DEFAULT_QUEUE)
    return tid


def _failure(executor: CeleryExecutor, tid: str) -> str:
    result = executor.app.AsyncResult(tid)
    wait_until(lambda: result.state in ("FAILURE", "SUCCESS"), 60, f"crafted message {tid}")
    assert result.state == "FAILURE", result.result
    return f"{type(result.result).__name__}: {result.result}"


def _project_keys(executor: CeleryExecutor) -> list[str]:
    return [
        k.decode(errors="replace") for k in executor.redis.scan_iter(match="jobset*", count=1000)
    ]


def _exact(job, circuits, **options) -> None:
    got = job.result(timeout=120)
    want = AerSimulator().run(circuits, **options).result()
    assert [got.get_counts(i) for i in range(len(circuits))] == [
        want.get_counts(i) for i in range(len(circuits))
    ]


@pytest.fixture(scope="module")
def victim(executor) -> AerJobSet:
    circuits = qv_circuits(3, name="victim")
    job = run(
        AerSimulator(), circuits, executor=executor, max_job_size=1, shots=64, seed_simulator=5
    )
    job.result(timeout=120)
    return job


def _crafted_fields(victim_id: str, marker: Path) -> list[dict[str, object]]:
    good = {"jobset_id": victim_id, "index": 0, "experiments": 1, "version": PROTOCOL_VERSION}
    payload = pickle.dumps(Exploit(marker))
    strange = ["../../x", "*", "a\x00b", "x" * 100_000, "jobset:cache:d\x00\x00", str(uuid.uuid4())]
    crafted: list[dict[str, object]] = [
        {**good, "jobset_id": s} for s in [*strange[:-1], payload.decode("latin-1")]
    ]
    crafted += [{**good, "jobset_id": victim_id.upper()}, {**good, "jobset_id": victim_id[:-1]}]
    crafted += [{**good, "index": v} for v in (-1, 10**12, "0", "../1", 1.0, None)]
    crafted += [{**good, "experiments": v} for v in (-5, "1", 10**30)]
    crafted += [{**good, "versions": v} for v in ("x" * 1000, {"a" * 500: "1"}, {"q": 1})]
    crafted += [
        {**good, "cache_digest": "0" * 64, "cache_ttl_s": 60},
        {**good, "payload": payload.decode("latin-1")},
        {**good, "version": 1},
        {**good, "version": "2"},
        {},
    ]
    return crafted


def test_crafted_messages_in_every_field_are_refused_write_nothing_and_run_nothing(
    executor, attacker, victim, marker
):
    before = set(_project_keys(executor))
    crafted = _crafted_fields(victim.job_id(), marker)
    tids = [_send(attacker, kwargs) for kwargs in crafted]
    # A well-formed message under a task id that is not the sub-job's, and positional args.
    good = {"jobset_id": victim.job_id(), "index": 0, "experiments": 1, "version": 2}
    assert PROTOCOL_VERSION == 2
    tids.append(_send(attacker, good))
    tids.append(_send(attacker, {}, args=[victim.job_id(), 0]))
    failures = [_failure(executor, tid) for tid in tids]

    older = crafted.index({**good, "version": 1})
    assert failures[older].startswith("VersionMismatchError"), failures[older]
    refused = failures[:older] + failures[older + 1 : -1]
    assert all(f.startswith("SecurityError") for f in refused), refused
    assert "task id" in failures[-2]
    assert failures[-1] == "SecurityError: refused a sub-job message with positional arguments"
    written = set(_project_keys(executor)) - before
    assert all(PROJECT_KEY.fullmatch(k) for k in written), sorted(written)[:5]
    assert [k for k in written if "worker:" not in k] == []
    # The victim's result is its own, and the workers serve on.
    _exact(victim, qv_circuits(3, name="victim"), shots=64, seed_simulator=5)
    circuits = qv_circuits(2, name="after")
    _exact(
        run(AerSimulator(), circuits, executor=executor, shots=32, seed_simulator=2),
        circuits,
        shots=32,
        seed_simulator=2,
    )


def test_a_message_naming_another_sets_digest_leaves_each_result_its_own(
    executor, attacker, marker
):
    theirs = qv_circuits(2, name="cached-s")
    s = run(
        AerSimulator(),
        theirs,
        executor=executor,
        max_job_size=1,
        shots=40,
        seed_simulator=9,
        cache_ttl_s=120,
    )
    s.result(timeout=60)
    digests = [
        k.decode().rsplit(":", 1)[1]
        for k in executor.redis.scan_iter(match="jobset:cache:*", count=1000)
    ]
    mine = qv_circuits(2, name="plain-p")
    p = run(AerSimulator(), mine, executor=executor, max_job_size=1, shots=40, seed_simulator=3)
    p.result(timeout=60)
    for index in range(2):
        for digest in digests:
            kwargs = {
                "jobset_id": p.job_id(), "index": index, "experiments": 1, "version": 2,
                "cache_digest": digest, "cache_ttl_s": 60,
            }  # fmt: skip
            assert "unknown fields" in _failure(executor, _send(attacker, kwargs))
    _exact(p, mine, shots=40, seed_simulator=3)
    stored = executor.store.get_many(Kind.RESULT, [(p.job_id(), i) for i in range(2)])
    assert [r.get_counts(0) for r in stored] == [p.result().get_counts(i) for i in range(2)]
    assert stored[0].get_counts(0) != s.result().get_counts(0)


def test_values_copied_between_keys_and_sets_never_verify(executor, victim, marker):
    circuits = qv_circuits(2, name="other")
    other = run(
        AerSimulator(), circuits, executor=executor, max_job_size=1, shots=64, seed_simulator=5
    )
    other.result(timeout=60)
    client, v, o = executor.redis, victim.job_id(), other.job_id()
    # Their result 0 where the victim's result 0 is, and the victim's 1 over its own 0.
    client.set(result_key(v, 0), client.get(result_key(o, 0)), ex=600)
    with pytest.raises(SecurityError):
        victim.result()
    client.set(result_key(o, 0), client.get(result_key(o, 1)), ex=600)
    with pytest.raises(SecurityError):
        other.worker_results(0)
    # A batch or a backend where a result is, a record under another id.
    client.set(result_key(o, 1), client.get(batch_key(o, 1)), ex=600)
    with pytest.raises(SecurityError):
        other.worker_results(1)
    client.set(backend_key(o), client.get(backend_key(v)), ex=600)
    with pytest.raises(SecurityError):
        AerJobSet.retrieve(o, executor)
    client.set(record_key(o), client.get(record_key(v)), ex=600)
    with pytest.raises(SecurityError):
        AerJobSet.retrieve(o, executor)


def test_re_cut_and_forged_envelopes_execute_nothing(executor, marker):
    circuits = qv_circuits(1, name="recut")
    job = run(AerSimulator(), circuits, executor=executor, shots=16, seed_simulator=1)
    job.result(timeout=60)
    key = result_key(job.job_id(), 0)
    real = executor.redis.get(key)
    exploit = pickle.dumps(Exploit(marker))
    forged = [
        real[:HEADER] + exploit + real[HEADER:],  # the attacker's pickle in front of the body
        real[:HEADER] + exploit,
        MAGIC + b"\x00" + b"\x00" * 32 + exploit,
        b"AJS1\x00" + real[5:HEADER] + exploit,  # an envelope of the older version
        real[: len(MAGIC)] + b"\x01" + real[5:],  # the zlib flag flipped
        *(real[:HEADER] + real[HEADER + cut :] for cut in (1, 7, 64)),
    ]
    for blob in forged:
        executor.redis.set(key, blob, ex=600)
        with pytest.raises((SecurityError, DecodeError)):
            job.worker_results(0)


def test_a_forged_index_entry_or_record_is_skipped_by_ls_with_one_line(executor, cluster, victim):
    forged_id = str(uuid.uuid4())
    executor.redis.zadd(INDEX_KEY, {"../../x": 1e12, "*": 1e12, forged_id: 1e12})
    executor.redis.set(record_key(forged_id), MAGIC + b"\x00" + b"\x00" * 32 + b"junk", ex=600)
    try:
        ids = [i.job_id for i in AerJobSet.list_sets(executor)]
        assert victim.job_id() in ids and forged_id not in ids
        env = {**os.environ, **cluster.settings.to_env()}
        done = subprocess.run(
            [sys.executable, "-m", "jobset.cli", "ls"], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert victim.job_id() in done.stdout
        lines = [line for line in done.stderr.splitlines() if "skipped" in line]
        assert len(lines) == 1 and forged_id in lines[0], done.stderr
    finally:
        executor.redis.zrem(INDEX_KEY, "../../x", "*", forged_id)
        executor.redis.delete(record_key(forged_id))


def test_garbage_heartbeats_and_owner_queues_do_not_stop_anyone_from_submitting(executor):
    bad = {
        worker_key("evil-1"): '{"cores": "x", "concurrency": 1}',
        worker_key("evil-2"): '{"concurrency": [1], "memory_bytes": "lots"}',
        worker_key("evil-3"): "[1, 2, 3]",
        worker_key("evil-4"): '{"cores": 1e400, "queues": "jobset.cpu"}',
        worker_key("evil-5"): '{"versions": {"qiskit": 2, "qiskit-aer": ["0.18"]}}',
    }
    for key, value in bad.items():
        executor.redis.set(key, value, ex=60)
    forged_names = [f"evil-{i}" for i in range(1, 6)]
    executor.redis.zadd(WORKERS_INDEX_KEY, dict.fromkeys(forged_names, time.time()))
    executor.redis.zadd(OWNER_QUEUES_KEY, {"celery": 1, "jobset.cpu.owner.a*b": 1})
    try:
        circuits = qv_circuits(2, name="hb")
        job = run(
            AerSimulator(), circuits, executor=executor, shots=16, seed_simulator=4, admit="require"
        )
        _exact(job, circuits, shots=16, seed_simulator=4)
        assert job.status() is JobStatus.DONE
    finally:
        executor.redis.delete(*bad)
        executor.redis.zrem(WORKERS_INDEX_KEY, *forged_names)
        executor.redis.zrem(OWNER_QUEUES_KEY, "celery", "jobset.cpu.owner.a*b")


def _copy_hash(source, key: str, target, to: str) -> None:
    fields = source.hgetall(key)
    if fields:
        target.hset(to, mapping=fields)


def test_a_finished_sets_tally_copied_onto_a_queued_set_neither_ends_it_nor_stops_its_cancel(
    executor, victim
):
    """Every hash a worker writes for the finished victim, and Celery's records, copied
    onto a set that waits in a queue no worker consumes: nothing proves its end."""
    with (
        RedisServer() as server,
        CeleryExecutor(
            Settings(broker_url=server.url, secret_key=executor.settings.secret_key)
        ) as idle,
    ):
        queued = run(AerSimulator(), qv_circuits(3), executor=idle, max_job_size=1, shots=16)
        source, target, v, q = executor.redis, idle.redis, victim.job_id(), queued.job_id()
        for key in (protocol.states_key, protocol.counts_key, ends_key):
            _copy_hash(source, key(v), target, key(q))
        target.rpush(protocol.ended_key(q), *source.lrange(protocol.ended_key(v), 0, -1))
        for k in range(3):
            meta = source.get(executor.app.backend.get_key_for_task(f"{v}-{k}"))
            forged = meta.replace(v.encode(), q.encode())
            target.set(idle.app.backend.get_key_for_task(f"{q}-{k}"), forged)
        assert queued.progress() == {"DONE": 3}  # the unsigned tally says so
        assert queued.status() is JobStatus.QUEUED
        assert AerJobSet.retrieve(q, idle).status() is JobStatus.QUEUED
        assert [i.status for i in AerJobSet.list_sets(idle)] == [JobStatus.QUEUED]
        with pytest.raises(JobSetTimeoutError):
            queued.wait_for_final_state(timeout=0.5, wait=0.1)
        assert queued.cancel() is True
        assert cancel_proven(target, idle.settings, q)
        assert target.llen(DEFAULT_QUEUE) == 0  # purged
        assert queued.status() is JobStatus.CANCELLED
    # The victim itself, read from scratch, is still DONE: its proofs are its own.
    assert AerJobSet.retrieve(v, executor).status() is JobStatus.DONE


def test_the_producers_messages_carry_exactly_the_envelope_workers_accept(executor):
    with (
        RedisServer() as server,
        CeleryExecutor(
            Settings(broker_url=server.url, secret_key=executor.settings.secret_key)
        ) as idle,
    ):
        run(AerSimulator(), qv_circuits(2), executor=idle, max_job_size=1, shots=8, timeout_s=30)
        raws = server.client().lrange(DEFAULT_QUEUE, 0, -1)
    assert len(raws) == 2
    for raw in raws:
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        check_envelope(message["headers"], body)
        assert SubJobRef.from_kwargs(body[1]).task_id == message["headers"]["id"]
        assert body[2] == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _settled(executor: CeleryExecutor, tid: str) -> str:
    """The refusal in Celery's record, once the worker is done with the message: it acks
    the message after anything it would publish for it, and stores the failure."""
    failure = _failure(executor, tid)
    wait_until(
        lambda: all(tid.encode() not in v for v in executor.redis.hvals("unacked")),
        60,
        f"the worker to acknowledge {tid}",
    )
    return failure


def test_a_message_with_callbacks_errbacks_a_chord_or_a_group_is_refused_and_followed_nowhere(
    executor, attacker, victim, cluster
):
    v = victim.job_id()
    mark = f"jobset:{v}:cancelled"  # a list LPUSHed there would be a durable cancel
    good = {"jobset_id": v, "index": 0, "experiments": 1, "version": PROTOCOL_VERSION}
    to_mark = attacker.signature("jobset.anything", queue=mark)
    crafted = {
        "errbacks": {"link_error": to_mark},
        "callbacks": {"link": attacker.signature("jobset.anything", queue=f"{mark}:0")},
        "chord": {"chord": to_mark, "group_id": "evil-group"},
        "replaced_task_nesting": {"replaced_task_nesting": 1},
        "group": {"group_id": "evil-group", "group_index": 0},
    }
    refusals = {}
    for field, options in crafted.items():
        tid = str(uuid.uuid4())
        attacker.send_task(
            RUN_SUB_JOB_TASK, kwargs=good, task_id=tid, queue=DEFAULT_QUEUE, **options
        )
        refusals[field] = (tid, _settled(executor, tid))
    for field, (_, failure) in refusals.items():
        assert failure.startswith("SecurityError") and field in failure, failure
    assert not executor.redis.exists(mark, f"{mark}:0")
    assert [k for k in executor.redis.scan_iter(match="*evil*", count=1000)] == []
    logs = "".join(p.read_text(errors="replace") for p in cluster.log_dir.glob("worker-*.log"))
    for tid, _ in refusals.values():
        assert logs.count(f"sub-job message {tid}: refused") == 1
    assert AerJobSet.retrieve(v, executor).status() is JobStatus.DONE


# --- the attacker is Flower: its Redis user from config/redis-users.acl ---------------

ACL_FILE = Path(__file__).resolve().parents[2] / "config" / "redis-users.acl"


def acl_lines(jobset_password: str, flower_password: str) -> list[str]:
    """config/redis-users.acl as compose fills it in; the default user may only PING (the
    server's start-up check), where compose switches it off."""
    text = ACL_FILE.read_text()
    text = text.replace("@JOBSET_REDIS_PASSWORD@", jobset_password)
    text = text.replace("@FLOWER_REDIS_PASSWORD@", flower_password)
    users = [line for line in text.splitlines() if line.startswith("user ")]
    assert users[0].split()[:3] == ["user", "default", "off"]
    return ["user default on nopass resetkeys -@all +ping", *users[1:]]


@pytest.fixture(scope="module")
def acl_cluster(cluster) -> Iterator[tuple[str, Settings]]:
    """A Redis with the deployment's users and one worker as ``jobset``; the flower URL."""
    jobset_pw, flower_pw = uuid.uuid4().hex, uuid.uuid4().hex
    with RedisServer(config=acl_lines(jobset_pw, flower_pw)) as server:
        settings = Settings(
            broker_url=f"redis://jobset:{jobset_pw}@127.0.0.1:{server.port}/0",
            secret_key=cluster.settings.secret_key,
        )
        with LocalCluster(workers=1, settings=settings):
            yield f"redis://flower:{flower_pw}@127.0.0.1:{server.port}/0", settings


def test_the_flower_user_can_neither_kill_pause_nor_script_nor_scan(acl_cluster):
    flower = redis.Redis.from_url(acl_cluster[0])
    try:
        refused = [
            ("CLIENT", "KILL", "TYPE", "normal"),
            ("CLIENT", "PAUSE", "10000"),
            ("CLIENT", "LIST"),
            ("EVAL", "while true do end", "0"),
            ("SCRIPT", "LOAD", "while true do end"),
            ("FUNCTION", "FLUSH"),
            ("KEYS", "*"),
            ("SCAN", "0"),
            ("SET", "celeryev.x", "1"),
            ("LPUSH", DEFAULT_QUEUE, "{}"),
            ("CONFIG", "GET", "*"),
        ]
        for command in refused:
            with pytest.raises(redis.exceptions.NoPermissionError):
                flower.execute_command(*command)
        assert flower.ping()
    finally:
        flower.close()


def test_workers_ignore_control_commands_from_flower_that_would_steer_them(acl_cluster):
    flower_url, settings = acl_cluster
    # A worker is seen (its heartbeat) only once kombu's scripts are loaded for Flower's user.
    flower = redis.Redis.from_url(flower_url)
    try:
        assert flower.script_exists(*(sha1(s.encode()).hexdigest() for s in KOMBU_SCRIPTS)) == [
            True
        ] * len(KOMBU_SCRIPTS)
    finally:
        flower.close()
    app = Celery("flower-attacker", broker=flower_url)
    try:
        control = app.control
        # A reply may miss one ping's window on a busy machine: ask until the worker answers.
        hosts = wait_until(
            lambda: list(control.inspect(timeout=5).ping() or {}), 120, "the worker's pong"
        )
        assert len(hosts) == 1
        replies = {
            "add_consumer": control.add_consumer("celeryev.evil", reply=True, timeout=5),
            "cancel_consumer": control.cancel_consumer(DEFAULT_QUEUE, reply=True, timeout=5),
            "pool_grow": control.pool_grow(4, reply=True, timeout=5),
            "rate_limit": control.rate_limit(RUN_SUB_JOB_TASK, "1/h", reply=True, timeout=5),
            "time_limit": control.time_limit(RUN_SUB_JOB_TASK, 1, 1, reply=True, timeout=5),
            "shutdown": control.broadcast("shutdown", reply=True, timeout=5),
        }
        for name, reply in replies.items():
            answers = [a for r in reply for a in r.values()]
            assert answers and all("error" in a for a in answers), (name, reply)
        queues = control.inspect(timeout=5).active_queues()
        assert [q["name"] for q in queues[hosts[0]]] == [DEFAULT_QUEUE]
        assert list(control.inspect(timeout=5).ping() or {}) == hosts  # still serving
        stats = control.inspect(timeout=5).stats()[hosts[0]]
        assert stats["pool"]["max-concurrency"] == 1
    finally:
        app.close()
    # A producer's set still runs there.
    with CeleryExecutor(settings) as ex:
        circuits = qv_circuits(1, name="acl")
        _exact(
            run(AerSimulator(), circuits, executor=ex, shots=16, seed_simulator=1),
            circuits,
            shots=16,
            seed_simulator=1,
        )


def test_a_wrong_type_record_or_a_rescored_or_removed_index_entry_neither_breaks_nor_hides(
    executor, cluster, victim
):
    """The index is unsigned: it may lie about which sets exist and when they were made."""
    broken = str(uuid.uuid4())
    client, v = executor.redis, victim.job_id()
    client.zadd(INDEX_KEY, {broken: 1e12})
    client.hset(record_key(broken), "x", "1")  # WRONGTYPE for GET
    client.expire(record_key(broken), 600)
    env = {**os.environ, **cluster.settings.to_env()}
    try:
        for tamper in (
            lambda: client.zadd(INDEX_KEY, {v: 0}),  # rescored: the next listing pruned it
            lambda: client.zadd(INDEX_KEY, {v: 1e12}),  # made to look newest
            lambda: client.zrem(INDEX_KEY, v),  # removed
        ):
            tamper()
            infos = AerJobSet.list_sets(executor)
            assert v in [i.job_id for i in infos]
            assert [i.created_at for i in infos] == sorted(i.created_at for i in infos)
            done = subprocess.run(
                [sys.executable, "-m", "jobset.cli", "ls"], env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            assert v in done.stdout
            lines = [line for line in done.stderr.splitlines() if "skipped" in line]
            assert len(lines) == 1 and broken in lines[0], done.stderr
    finally:
        client.zrem(INDEX_KEY, broken)
        client.delete(record_key(broken))


def test_a_message_for_an_invented_set_writes_no_key_for_it(executor, attacker):
    invented = str(uuid.uuid4())
    kwargs = {"jobset_id": invented, "index": 0, "experiments": 1, "version": PROTOCOL_VERSION}
    tid = _send(attacker, kwargs, tid=f"{invented}-0")
    failure = _settled(executor, tid)
    assert failure == f"SecurityError: refused: no set {invented} is stored in this Redis"
    assert list(executor.redis.scan_iter(match=f"jobset:{invented}*", count=1000)) == []
