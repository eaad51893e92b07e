"""High availability with real servers: a Sentinel failover, a partitioned worker.

The failover runs a primary, a replica and three sentinels (``jobset.local.ha``) on loopback and
SIGKILLs the primary while two workers run a set.  The partition puts one worker in a
network namespace of its own, joined to this one by a veth pair, and takes the link down
while that worker simulates.  Every check compares the set with one undisturbed
``AerSimulator.run``; every wait polls for its event with a deadline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from qiskit import QuantumCircuit
from qiskit.providers import JobStatus

from jobset import CeleryExecutor, JobSetFailedError, Settings, SubJobsLostError
from jobset.errors import ConfigurationError
from jobset.local import LocalCluster, RedisServer
from jobset.local.ha import SentinelCluster
from jobset.local.processes import spawn_logged
from jobset.protocol import WORKER_KEY_PREFIX, task_id

from .faultkit import (
    heavy_circuits,
    held,
    reference_result,
    starts,
    submit_exact,
    task_meta,
    wait_started,
    wait_until,
)
from .workloads import assert_same_counts_and_memory

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

SEED = 17
SHOTS = 64
SECRET = "h" * 32


def settings_for(url: str, **more: object) -> Settings:
    """A short visibility timeout: a sub-job held by a worker cut off from Redis comes back
    in seconds; a short connect timeout: a worker notices the cut as fast."""
    return Settings(
        broker_url=url, secret_key=SECRET, visibility_timeout_s=3, connect_timeout_s=2, **more
    )


def tiny_circuits(n: int) -> list[QuantumCircuit]:
    """Circuits of a few milliseconds each, every one with its own counts."""
    out = []
    for i in range(n):
        qc = QuantumCircuit(4, name=f"tiny{i}")
        qc.h(0)
        for q in range(3):
            qc.cx(q, q + 1)
        qc.rx(0.07 * (i + 1), 3)
        qc.ry(0.05 * (i + 1), 2)
        qc.measure_all()
        out.append(qc)
    return out


def vanished(failure) -> bool:
    """A failure that only says a write vanished in a failover: a result recorded done on
    the new primary but stored on the old one, or a message restored to the new primary
    whose payload never left the old one."""
    return failure.error_type == "ResultGone" or (
        failure.error_type == "DecodeError" and "no payload stored" in failure.message
    )


def finish(job, timeout_s: float):
    """The set's result, covering what a failover can lose as the docs say: sub-jobs whose
    message vanished are published again (``resubmit_lost``), and those whose result
    vanished after they were recorded done run again (``retry_failed``)."""
    deadline = time.monotonic() + timeout_s
    republished: list[int] = []
    while True:
        try:
            return job.result(timeout=max(1.0, deadline - time.monotonic())), republished
        except SubJobsLostError:
            republished += job.resubmit_lost()
        except JobSetFailedError as e:
            if not all(vanished(f) for f in e.failures):
                raise
            republished += job.retry_failed()


@pytest.fixture
def sentinels() -> Iterator[SentinelCluster]:
    try:
        cluster = SentinelCluster(down_after_ms=1000, failover_timeout_ms=3000).start()
    except ConfigurationError as e:
        pytest.skip(f"no server here runs as a sentinel: {e}")
    try:
        yield cluster
    finally:
        cluster.stop()


def test_a_set_survives_the_loss_of_the_redis_primary_and_counts_exactly(sentinels):
    circuits = tiny_circuits(40)
    with (
        LocalCluster(
            workers=2,
            settings=settings_for(
                sentinels.url,
                sentinel_master=sentinels.master_name,
                sentinel_password=sentinels.sentinel_password,
            ),
            loglevel="INFO",
        ) as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        job = submit_exact(executor, circuits, shots=SHOTS, seed=SEED)
        wait_until(lambda: job.progress().get("DONE", 0) >= 3, 60, "a few sub-jobs done")
        old = sentinels.primary_port()
        assert old is not None
        killed_at = time.monotonic()
        dead = sentinels.kill_primary()
        new = sentinels.wait_failover(old, timeout_s=30)
        failover_s = time.monotonic() - killed_at
        sentinels.rejoin(dead)  # the old primary back, as a replica of the new one

        result, republished = finish(job, timeout_s=90)
        total_s = time.monotonic() - killed_at
        assert job.status() is JobStatus.DONE
        assert_same_counts_and_memory(result, reference_result(circuits, SHOTS, SEED))
        reruns = sum(starts(executor, job, i) for i in range(40)) - 40
        logger.warning(
            "failover %d -> %d in %.1f s; set done %.1f s after the kill; %d sub-job(s) "
            "started again, %d republished",
            old,
            new,
            failover_s,
            total_s,
            reruns,
            len(republished),
        )
        logs = "".join(p.read_text(errors="replace") for p in cluster.log_dir.glob("*.log"))
        assert "Connected to sentinel://" in logs
        assert sentinels.password not in logs and sentinels.sentinel_password not in logs
        # The workers serve on, on the new primary: a second set needs no help.
        again = submit_exact(executor, circuits[:6], shots=SHOTS, seed=SEED)
        assert_same_counts_and_memory(
            again.result(timeout=60), reference_result(circuits[:6], SHOTS, SEED)
        )


# --------------------------------------------------------------------------- partition


class Link:
    """A network namespace joined to this one by a veth pair, on addresses of its own."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.namespace = f"jobset-{tag}"
        self.host_dev, self.inner_dev = f"jsh{tag}", f"jsn{tag}"
        octet = int(tag[:2], 16) % 250 + 1
        self.host_ip, self.inner_ip = f"10.213.{octet}.1", f"10.213.{octet}.2"

    def up(self) -> Link:
        ns, host, inner = self.namespace, self.host_dev, self.inner_dev
        for argv in (
            ["ip", "netns", "add", ns],
            ["ip", "link", "add", host, "type", "veth", "peer", "name", inner],
            ["ip", "link", "set", inner, "netns", ns],
            ["ip", "addr", "add", f"{self.host_ip}/30", "dev", host],
            ["ip", "link", "set", host, "up"],
            ["ip", "-n", ns, "addr", "add", f"{self.inner_ip}/30", "dev", inner],
            ["ip", "-n", ns, "link", "set", inner, "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        return self

    def cut(self) -> None:
        subprocess.run(["ip", "link", "set", self.host_dev, "down"], check=True)

    def heal(self) -> None:
        subprocess.run(["ip", "link", "set", self.host_dev, "up"], check=True)

    def down(self) -> None:
        # Deleting one end of a veth pair deletes both; the namespace goes last.
        subprocess.run(["ip", "link", "del", self.host_dev], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)


@pytest.fixture
def link() -> Iterator[Link]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("a partition needs root and iproute2's ip (network namespaces)")
    made = Link()
    try:
        made.up()
    except subprocess.CalledProcessError as e:
        made.down()
        pytest.skip(f"cannot make a network namespace here: {e.stderr.decode(errors='replace')}")
    try:
        yield made
    finally:
        made.down()


def test_a_partitioned_worker_loses_its_sub_job_to_another_and_its_late_store_does_no_harm(
    link,
):
    circuits = heavy_circuits(20, range(1), name="cut") + tiny_circuits(5)
    with (
        RedisServer(requirepass="part", bind=("127.0.0.1", link.host_ip)) as server,
        # No worker on this side yet: the first sub-job goes to the one behind the link.
        LocalCluster(workers=0, settings=settings_for(server.url)) as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        inner = _spawn_inner_worker(cluster, link, server.port)
        try:
            wait_until(
                lambda: any(executor.redis.scan_iter(f"{WORKER_KEY_PREFIX}inner*")),
                60,
                "the partitioned worker's heartbeat",
            )
            job = submit_exact(executor, circuits, shots=SHOTS, seed=SEED)
            # Held until the link is cut: the sub-job is still running behind it on any machine.
            with held(executor, job, 0) as first:
                assert first["hostname"].startswith("inner")
                link.cut()
                cut_at = time.monotonic()
            cluster.add_worker()  # on this side of the cut
            again = wait_started(executor, job, 0, times=2, timeout_s=60)
            rerun_after_s = time.monotonic() - cut_at
            assert not again["hostname"].startswith("inner")
            # The producer reads and waits through all of it.
            result = job.result(timeout=120)
            link.heal()
            healed_at = time.monotonic()

            # The old worker finishes its run, stores the same seeded result and acks:
            # the set stays exact and counted once.
            late = f"run_sub_job[{task_id(job.job_id(), 0)}] succeeded"
            wait_until(lambda: late in inner_log(cluster), 90, "the partitioned worker's store")
            assert_same_counts_and_memory(result, reference_result(circuits, SHOTS, SEED))
            assert job.progress() == {"DONE": len(circuits)}
            assert_same_counts_and_memory(
                job.result(timeout=30), reference_result(circuits, SHOTS, SEED)
            )
            logger.warning(
                "partition: sub-job 0 ran again %.1f s after the cut; healed %.1f s later",
                rerun_after_s,
                healed_at - cut_at,
            )
            # It serves on: with the other worker gone, a new set runs on it alone.
            cluster.stop_worker(cluster.workers[-1])
            tail = submit_exact(executor, circuits[1:], shots=SHOTS, seed=SEED)
            assert_same_counts_and_memory(
                tail.result(timeout=90), reference_result(circuits[1:], SHOTS, SEED)
            )
            ran_on = {task_meta(executor, tail, i)["result"]["worker"] for i in range(5)}
            assert all(name.startswith("inner") for name in ran_on)
        finally:
            _stop(inner)


def inner_log(cluster: LocalCluster) -> str:
    return (cluster.log_dir / "worker-inner.log").read_text(errors="replace")


def _spawn_inner_worker(cluster: LocalCluster, link: Link, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSET_")}
    url = f"redis://:part@{link.host_ip}:{port}/0"
    env.update(dataclasses.replace(cluster.settings, broker_url=url, result_backend=None).to_env())
    argv = [
        "ip", "netns", "exec", link.namespace,
        sys.executable, "-m", "celery", "-A", "workers.app", "worker",
        "--concurrency", "1", "--pool", "prefork", "--loglevel", "INFO",
        "--hostname", f"inner-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    return spawn_logged(argv, log_path=cluster.log_dir / "worker-inner.log", env=env)


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_a_producer_rides_out_redis_gone_longer_than_its_client_retries_inside_its_deadline(
    caplog,
):
    circuits = tiny_circuits(12)
    with (
        RedisServer(appendonly=True, requirepass="away") as server,
        LocalCluster(workers=1, settings=settings_for(server.url)) as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        job = submit_exact(executor, circuits, shots=SHOTS, seed=SEED)
        wait_until(lambda: job.progress().get("DONE", 0) >= 1, 60, "a first sub-job done")
        caplog.set_level(logging.WARNING, logger="jobset.executors.base")
        server.down()
        gone_at = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(job.result, timeout=120)

            def gave_up() -> bool:
                # The warning comes once the redis-py client gave up after its own retries.
                return any("Redis unreachable" in r.getMessage() for r in caplog.records)

            wait_until(gave_up, 60, "the producer's client to give up")
            away_s = time.monotonic() - gone_at
            server.up()
            result = waiting.result(timeout=120)
        assert away_s > 5
        assert_same_counts_and_memory(result, reference_result(circuits, SHOTS, SEED))
        logger.warning("the producer waited through %.1f s without Redis", away_s)


def test_neither_password_appears_in_inspect_stats_conf_or_report(sentinels):
    """Flower's user may ask workers anything on the control channel: no secret answers."""
    settings = settings_for(
        sentinels.url,
        sentinel_master=sentinels.master_name,
        sentinel_password=sentinels.sentinel_password,
    )
    with (
        LocalCluster(workers=1, settings=settings) as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        inspect = executor.app.control.inspect(timeout=5)
        # A reply may miss one request's window (a worker just started, a busy machine): ask
        # until the worker answers each.
        asks = {
            "stats": inspect.stats,
            "conf": lambda: inspect.conf(with_defaults=True),
            "report": inspect.report,
        }
        replies = [wait_until(ask, 120, f"the worker's {name}") for name, ask in asks.items()]
        text = json.dumps(replies, default=repr)
        assert "sentinel_kwargs" in text  # the options are there, their secret is not
        assert sentinels.sentinel_password not in text
        assert sentinels.password not in text
        assert executor.redis.ping()  # and the password still reaches the sentinels
