"""Workers as Slurm jobs, on a real single-node Slurm (:mod:`tests.integration.slurmkit`).

The producer's secrets reach the Slurm workers only as files (``*_FILE``); the lease of a
held sub-job is an hour here, so a sub-job that runs again within the test was given back
by its worker, not redelivered after its lease.  Light on the shared machine: one Slurm
worker of concurrency 1 at a time.  The times printed are the measured figures of
docs/slurm.md.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, run
from jobset.local import LocalCluster
from jobset.local.processes import free_port
from jobset.protocol import WORKER_KEY_PREFIX
from jobset.scaling.sbatch import job_id_of
from jobset.settings import Settings

from .faultkit import (
    ends,
    heavy_circuits,
    held,
    reference_result,
    starts,
    submit_exact,
    wait_started,
    wait_until,
)
from .slurmkit import PARTITION, SlurmCluster, slurm_cluster
from .workloads import assert_same_counts_and_memory, qv_circuits

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = "5" * 32
SHOTS = 64
SEED = 23
LEASE_S = 3600  # no sub-job runs again by its lease lapsing within a test
JOBSET = str(Path(sys.executable).with_name("jobset"))


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    yield from slurm_cluster()


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A private server (and no worker yet): the Slurm workers and any local one use it."""
    settings = Settings(secret_key=KEY, visibility_timeout_s=LEASE_S)
    with LocalCluster(workers=0, settings=settings, private_server=True) as local:
        yield local


@pytest.fixture(scope="module")
def executor(cluster: LocalCluster) -> Iterator[CeleryExecutor]:
    with CeleryExecutor(cluster.settings) as ex:
        yield ex


def private_file(path: Path, text: str) -> str:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.fixture(scope="module")
def worker_env(
    slurm: SlurmCluster, cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The producer's environment: secrets as files only, and the test Slurm's config."""
    folder = tmp_path_factory.mktemp("secrets")
    env = {k: v for k, v in slurm.env().items() if not k.startswith("JOBSET_")}
    env["JOBSET_SECRET_KEY_FILE"] = private_file(folder / "key", KEY)
    env["JOBSET_BROKER_URL_FILE"] = private_file(folder / "broker", cluster.redis_url)
    env["JOBSET_VISIBILITY_TIMEOUT_S"] = str(LEASE_S)
    return env


def jobset_slurm(env: dict[str, str], out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            JOBSET, "slurm", "--partition", PARTITION, "--cpus", "1", "--concurrency", "1",
            "--mem", "1024", "--time", "10:00", "--workdir", str(ROOT),
            "--output", str(out / "worker-%j.out"), *args,
        ],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def slurm_workers(executor: CeleryExecutor) -> dict[str, dict[str, Any]]:
    """Slurm job id -> heartbeat of every live Slurm worker."""
    found = {}
    for key in executor.redis.scan_iter(match=f"{WORKER_KEY_PREFIX}slurm-*"):
        record = json.loads(executor.redis.get(key) or "{}")
        job_id = job_id_of(record.get("hostname", ""))
        if job_id is not None:
            found[job_id] = record
    return found


def test_jobset_slurm_refuses_a_secret_that_would_be_written_into_the_script(
    cluster, worker_env, tmp_path
):
    env = {k: v for k, v in worker_env.items() if k != "JOBSET_SECRET_KEY_FILE"}
    env["JOBSET_SECRET_KEY"] = KEY
    done = jobset_slurm(env, tmp_path)
    assert done.returncode == 2
    assert "JOBSET_SECRET_KEY_FILE" in done.stderr and KEY not in done.stderr
    shown = jobset_slurm(worker_env, tmp_path, "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert KEY not in shown.stdout and "JOBSET_SECRET_KEY_FILE=" in shown.stdout
    password = urlsplit(cluster.redis_url).password
    assert password and password not in shown.stdout and "JOBSET_BROKER_URL_FILE=" in shown.stdout


def test_a_set_submitted_with_no_worker_gets_a_slurm_worker_and_completes_exactly(
    slurm, executor, worker_env, tmp_path
):
    circuits = qv_circuits(3, name="slurm")
    submitted = time.monotonic()
    job = submit_exact(executor, circuits, shots=SHOTS, seed=SEED)
    assert job.status() is JobStatus.QUEUED

    done = jobset_slurm(worker_env, tmp_path)
    assert done.returncode == 0, done.stderr
    (job_id,) = done.stdout.split()
    wait_until(lambda: job_id in slurm_workers(executor), 120, "the Slurm worker's heartbeat")
    live_s = time.monotonic() - submitted
    result = job.result(timeout=120)
    done_s = time.monotonic() - submitted

    assert_same_counts_and_memory(result, reference_result(circuits, SHOTS, SEED))
    worker = slurm_workers(executor)[job_id]
    assert worker["concurrency"] == 1 and worker["aer_threads"] == 1
    print(f"\nsubmit -> Slurm worker live {live_s:.1f} s, -> set done {done_s:.1f} s")
    slurm.run("scancel", job_id)
    wait_until(lambda: job_id not in slurm.jobs(), 60, "the worker job to end")


def test_scancel_of_a_slurm_worker_mid_sub_job_gives_it_back_and_it_completes_elsewhere(
    slurm, cluster, executor, worker_env, tmp_path
):
    circuits = heavy_circuits(20, range(2))
    done = jobset_slurm(worker_env, tmp_path)
    assert done.returncode == 0, done.stderr
    (job_id,) = done.stdout.split()
    wait_until(lambda: job_id in slurm_workers(executor), 120, "the Slurm worker's heartbeat")
    job = run(  # one sub-job of every circuit
        AerSimulator(method="statevector"),
        circuits,
        executor=executor,
        max_job_size=len(circuits),
        shots=SHOTS,
        seed_simulator=SEED,
        memory=True,
    )
    # Held on the Slurm worker: still running when its job is cancelled, on any machine.
    with held(executor, job, 0, timeout_s=120) as first:
        assert job_id_of(first["hostname"]) == job_id
        elsewhere = cluster.add_worker()  # idle, on the same queue
        try:
            cancelled = time.monotonic()
            slurm.run("scancel", job_id)
            again = wait_started(executor, job, 0, times=2, timeout_s=120)
            rerun_s = time.monotonic() - cancelled
        except BaseException:
            cluster.stop_worker(elsewhere)
            raise
    try:
        result = job.result(timeout=300)
    finally:
        cluster.stop_worker(elsewhere)

    assert job_id_of(again["hostname"]) is None  # the local worker
    # The given-back run counts as ended, not as a worker that died of its sub-job.
    assert starts(executor, job, 0) == 2 and ends(executor, job, 0) == 2
    assert_same_counts_and_memory(result, reference_result(circuits, SHOTS, SEED))
    wait_until(lambda: job_id not in slurm.jobs(), 60, "the worker job to end")
    print(
        f"\nscancel -> sub-job running again elsewhere {rerun_s:.1f} s "
        f"(its lease: {LEASE_S} s; sub-job of {len(circuits)} 20-qubit circuits)"
    )


def metric(port: int, name: str, queue: str = "jobset.cpu") -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    match = re.search(rf'^{name}{{queue="{re.escape(queue)}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


def test_jobset_scale_starts_a_slurm_worker_for_a_backlog_and_releases_it_when_idle(
    slurm, executor, worker_env, tmp_path
):
    # A worker of an earlier test leaves its heartbeat until its TTL runs out.
    wait_until(lambda: not slurm_workers(executor) and not slurm.jobs(), 120, "no Slurm worker")
    circuits = qv_circuits(4, name="scaled")
    submitted = time.monotonic()
    job = submit_exact(executor, circuits, shots=SHOTS, seed=SEED)
    port = free_port()
    log = tmp_path / "scale.log"
    with log.open("wb") as out:
        scaler = subprocess.Popen(
            [
                JOBSET, "scale", "--backend", "slurm", "--min", "0", "--max", "1",
                "--interval", "1", "--idle-grace", "2", "--target-drain", "60",
                "--metrics-port", str(port), "--metrics-addr", "127.0.0.1",
                "--partition", PARTITION, "--cpus", "1", "--concurrency", "1", "--mem", "1024",
                "--time", "10:00", "--workdir", str(ROOT),
                "--output", str(tmp_path / "worker-%j.out"),
            ],
            env=worker_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        (job_id,) = wait_until(lambda: slurm_workers(executor), 120, "a Slurm worker")
        live_s = time.monotonic() - submitted
        result = job.result(timeout=120)
        assert_same_counts_and_memory(result, reference_result(circuits, SHOTS, SEED))

        wait_until(lambda: job_id not in slurm.jobs(), 120, "the idle worker to be released")
        released_s = time.monotonic() - submitted
        wait_until(lambda: metric(port, "jobset_queue_worker_slots") == 0, 30, "no slots")
        assert metric(port, "jobset_queue_sub_jobs_queued") == 0
        assert metric(port, "jobset_queue_sub_jobs_running") == 0
        assert metric(port, "jobset_scale_workers_wanted") == 0
    finally:
        scaler.send_signal(signal.SIGTERM)
        assert scaler.wait(timeout=30) == 0
    text = log.read_text()
    assert re.search(r"queued 4 \([\d.e+-]+ s of work\), running 0, workers 0 live.*: add 1", text)
    assert f"draining {job_id}" in text
    assert KEY not in text
    print(
        f"\njobset scale: submit -> Slurm worker live {live_s:.1f} s, "
        f"released when idle {released_s:.1f} s"
    )


def test_the_test_slurm_runs_a_batch_job_to_completion(slurm, tmp_path):
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/bash\necho hello from $SLURM_JOB_ID\n")
    out = tmp_path / "hello.out"
    job_id = slurm.run("sbatch", "--parsable", "--wait", "-o", str(out), str(script)).strip()
    assert out.read_text() == f"hello from {job_id}\n"
