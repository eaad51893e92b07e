"""The local cluster starts real processes, reports them ready, and leaves none behind."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobset import CeleryExecutor
from jobset.deadline import wait_for
from jobset.errors import ConfigurationError
from jobset.local import RESERVED_PORT, LocalCluster, RedisServer
from jobset.protocol import GPU_QUEUE, WORKERS_INDEX_KEY, worker_key
from jobset.settings import Settings

pytestmark = pytest.mark.integration


def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    return wait_for(predicate, timeout_s, "the processes", error=AssertionError)


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")  # a zombie has exited


def group_members(pgid: int) -> set[int]:
    """Live processes in process group ``pgid``: a worker and its prefork pool children."""
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.add(int(entry.name))
    return members


def heartbeat(client: redis.Redis, hostname: str) -> dict[str, object] | None:
    raw = client.get(worker_key(hostname))
    return json.loads(raw) if raw else None


def test_the_cluster_starts_the_requested_workers_and_each_advertises_a_heartbeat(
    cluster: LocalCluster,
) -> None:
    assert len(cluster.worker_pids) == 2
    assert len(set(cluster.worker_hostnames)) == 2
    client = redis.Redis.from_url(cluster.settings.backend_url)
    try:
        for pid, hostname in zip(cluster.worker_pids, cluster.worker_hostnames, strict=True):
            record = heartbeat(client, hostname)
            assert record is not None
            assert record["hostname"] == hostname
            assert record["pid"] == pid
            assert record["concurrency"] == 1
            assert record["aer_threads"] == cluster.settings.aer_threads
    finally:
        client.close()


def test_the_cluster_server_listens_on_a_private_port_with_a_password(
    cluster: LocalCluster,
) -> None:
    assert cluster.server is not None
    assert cluster.server.port != RESERVED_PORT
    # No retry: redis-py retries a refused AUTH with back-off for seconds.
    anonymous = redis.Redis(host="127.0.0.1", port=cluster.server.port, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
    finally:
        anonymous.close()


def test_stop_leaves_none_of_the_started_processes_alive() -> None:
    local = LocalCluster(workers=2).start()
    assert local.server is not None and local.server.pid is not None
    server_pid = local.server.pid
    workers = local.worker_pids
    # Each worker forks its pool child; wait for it so that it is counted too.
    assert wait_until(lambda: all(len(group_members(pid)) >= 2 for pid in workers))
    started = {server_pid}.union(*(group_members(pid) for pid in workers))

    local.stop()
    local.stop()  # idempotent

    assert wait_until(lambda: not any(alive(pid) for pid in started)), [
        pid for pid in started if alive(pid)
    ]
    assert local.worker_pids == []


def test_kill_worker_takes_its_pool_children_and_an_added_worker_serves_its_queues() -> None:
    with LocalCluster(workers=1) as local:
        handle = local.add_worker(queues=[GPU_QUEUE])
        assert handle.hostname is not None
        client = redis.Redis.from_url(local.settings.backend_url)
        try:
            record = heartbeat(client, handle.hostname)
        finally:
            client.close()
        assert record is not None and record["queues"] == [GPU_QUEUE]
        assert wait_until(lambda: len(group_members(handle.pid)) >= 2)
        members = group_members(handle.pid)

        local.kill_worker(handle.index)

        assert wait_until(lambda: not any(alive(pid) for pid in members))
        assert local.worker_pids == [local.workers[0].pid]


def test_stop_worker_warm_shuts_down_one_worker_and_removes_its_heartbeat() -> None:
    with LocalCluster(workers=2) as local:
        first = local.workers[0]
        assert first.hostname is not None
        local.stop_worker(0, signal.SIGTERM, timeout_s=20.0)
        assert first.process.returncode == 0
        client = redis.Redis.from_url(local.settings.backend_url)
        try:
            assert heartbeat(client, first.hostname) is None
            assert client.zscore(WORKERS_INDEX_KEY, first.hostname) is None
            assert client.zscore(WORKERS_INDEX_KEY, local.workers[1].hostname) is not None
        finally:
            client.close()
        assert local.worker_pids == [local.workers[1].pid]


def test_the_producer_reads_the_workers_from_their_index_not_from_a_scan_of_every_key(
    cluster: LocalCluster,
) -> None:
    """A heartbeat key no index entry names is not read; a name that is not a worker's
    name is not made into a key; the live workers are all found."""
    with CeleryExecutor(cluster.settings) as executor:
        client = executor.redis
        stray = {"hostname": "stray@nowhere", "concurrency": 64}
        client.set(worker_key("stray@nowhere"), json.dumps(stray), ex=60)
        client.zadd(WORKERS_INDEX_KEY, {"../../x*": time.time(), "gone@nowhere": time.time()})
        try:
            names = sorted(record["hostname"] for record in executor.heartbeats())
            assert names == sorted(cluster.worker_hostnames)
            assert executor.slots() == 2
        finally:
            client.delete(worker_key("stray@nowhere"))
            client.zrem(WORKERS_INDEX_KEY, "../../x*", "gone@nowhere")


def test_every_worker_runs_with_exactly_the_settings_the_cluster_reports() -> None:
    given = Settings(secret_key="w" * 32, visibility_timeout_s=17, max_worker_losses=5)
    with LocalCluster(workers=1, settings=given, private_server=True) as local:
        other = dataclasses.replace(local.settings, worker_memory_mb=64)
        added = local.add_worker(settings=other)
        settings = local.settings
        assert settings.broker_url == local.redis_url != given.broker_url
        assert dataclasses.replace(settings, broker_url=given.broker_url, aer_threads=None) == given
        for handle, expected in ((local.workers[0], settings), (added, other)):
            raw = Path(f"/proc/{handle.pid}/environ").read_bytes().split(b"\0")
            env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
            jobset_env = {k: v for k, v in env.items() if k.startswith("JOBSET_")}
            assert jobset_env == expected.to_env()
            assert handle.settings == expected


def test_a_worker_that_cannot_start_fails_the_cluster_fast_with_its_log(tmp_path: Path) -> None:
    # A failed start keeps its logs (the error names them): put them where pytest cleans up.
    local = LocalCluster(workers=1, extra_env={"JOBSET_METRICS_PORT": "zero"}, log_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match="JOBSET_METRICS_PORT must be an integer"):
        local.start()
    assert time.monotonic() - started < local.startup_timeout_s
    assert all(not w.running() for w in local.workers)
    assert local.server is None


def test_a_server_with_appendonly_keeps_its_data_across_a_restart() -> None:
    with RedisServer(appendonly=True, requirepass="s3cret/:@") as server:
        client = server.client()
        try:
            client.set("k", "v")
            port, old_pid = server.port, server.pid
            server.restart()
            assert server.port == port
            assert server.pid != old_pid
            assert client.get("k") == b"v"  # redis-py reconnects on the next command
        finally:
            client.close()
    assert old_pid is not None and not alive(old_pid)
    assert not server.data_dir.exists()
