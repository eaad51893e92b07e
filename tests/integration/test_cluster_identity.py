"""The local cluster keeps its key and port: a restart serves every set written before it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from qiskit import QuantumCircuit
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from jobset import AerJobSet, CeleryExecutor, Settings, run
from jobset.deadline import wait_for
from jobset.executors.celery.cluster_env import read_env_file
from jobset.local import PROJECT_ROOT

pytestmark = pytest.mark.integration

_QUIET = ["--no-flower", "--no-metrics"]
_COMMAND = [sys.executable, "-m", "jobset.local.command"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("JOBSET_", "FLOWER_"))}


def _command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_COMMAND, *args],
        cwd=PROJECT_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def _coins(n: int) -> list[QuantumCircuit]:
    circuits = []
    for i in range(n):
        circuit = QuantumCircuit(2, name=f"coin-{i}")
        circuit.h(0)
        circuit.cx(0, 1)
        circuit.rx(0.3 * i, 1)
        circuit.measure_all()
        circuits.append(circuit)
    return circuits


def test_a_restarted_cluster_serves_its_earlier_sets_and_runs_their_queued_sub_jobs(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "cluster"
    circuits = _coins(3)
    # First run in the foreground with no worker, so the set's sub-jobs are surely queued
    # when Ctrl-C comes.
    log_path = tmp_path / "first.log"
    with log_path.open("wb") as log:
        first = subprocess.Popen(
            [*_COMMAND, "--workers", "0", *_QUIET, "--dir", str(folder)],
            cwd=PROJECT_ROOT,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            assert first.poll() is None, log_path.read_text()
            return (folder / "cluster.json").exists()

        wait_for(ready, 120, "the cluster to be ready", error=AssertionError, pause_s=0.1)
        assert _mode(folder) == "0o700"
        for name in ("identity.json", "cluster.pid", "jobset.env", "cluster.json"):
            assert _mode(folder / name) == "0o600", name
        env_before = read_env_file(folder / "jobset.env")
        with CeleryExecutor.from_cluster(folder) as executor:
            job = run(
                AerSimulator(),
                circuits,
                executor=executor,
                max_job_size=1,
                shots=64,
                seed_simulator=11,
            )
            assert job.status() is JobStatus.QUEUED
        other_key = Settings(broker_url=env_before["JOBSET_BROKER_URL"], secret_key="o" * 32)
        with CeleryExecutor(other_key) as wrong:  # a producer with someone else's key
            foreign = run(AerSimulator(), circuits[:1], executor=wrong, shots=8).job_id()
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=60) == 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    said = log_path.read_text()
    assert f"1 job set(s) unfinished:\n  {job.job_id()}  QUEUED" in said, said
    assert "resume on the next start" in said
    assert not (folder / "jobset.env").exists() and not (folder / "cluster.pid").exists()
    stopped = _command("status", "--dir", str(folder))
    assert stopped.returncode == 3 and "its sets are kept there" in stopped.stdout

    again = _command("start", "--detach", "--workers", "1", *_QUIET, "--dir", str(folder))
    try:
        assert again.returncode == 0, again.stderr + again.stdout
        assert "Local cluster ready" in again.stdout and job.job_id() in again.stdout
        named = [line for line in again.stdout.splitlines() if foreign in line]
        assert len(named) == 1 and "written by another deployment's key" in named[0]
        env_after = read_env_file(folder / "jobset.env")
        for name in ("JOBSET_BROKER_URL", "JOBSET_SECRET_KEY"):  # same port, same key
            assert env_after[name] == env_before[name]
        status = _command("status", "--dir", str(folder))
        assert status.returncode == 0 and "running (pid" in status.stdout, status.stdout
        with CeleryExecutor.from_cluster(folder) as executor:
            old = AerJobSet.retrieve(job.job_id(), executor)
            merged = old.result(timeout=120)
        expected = AerSimulator().run(circuits, shots=64, seed_simulator=11).result()
        assert [merged.get_counts(i) for i in range(3)] == [
            expected.get_counts(i) for i in range(3)
        ]
        cli = subprocess.run(
            [sys.executable, "-m", "jobset.cli", "status", job.job_id()],
            env={**_env(), **env_before},
            capture_output=True,
            text=True,
        )
        assert cli.returncode == 0 and f"{job.job_id()}: DONE" in cli.stdout, cli.stderr
    finally:
        stop = _command("stop", "--dir", str(folder))
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stdout + stop.stderr
    assert _command("status", "--dir", str(folder)).returncode == 3
