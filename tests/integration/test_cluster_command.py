"""The local cluster command runs compose's topology here and stops all of it on Ctrl-C."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, Settings, run
from jobset.deadline import wait_for
from jobset.local import PROJECT_ROOT

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _get(url: str, auth: str | None = None) -> Any:
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        body = r.read().decode()
    return json.loads(body) if "/api/" in url else body


def _wait(predicate: Any, timeout_s: float, what: str) -> Any:
    return wait_for(predicate, timeout_s, what, error=AssertionError, pause_s=0.1)


@contextlib.contextmanager
def _cluster_command(
    tmp_path: Path, args: list[str], ready_s: float
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any], dict[str, str]]]:
    """``scripts/cluster``'s command with ``args``, once ready: the process, its
    ``cluster.json`` and the producer's variables from ``jobset.env``; stopped after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBSET_", "FLOWER_"))}
    log = (tmp_path / "command.log").open("wb")
    command = subprocess.Popen(
        [sys.executable, "-m", "jobset.local.command", *args, "--dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ready = tmp_path / "cluster.json"

        def started() -> bool:
            assert command.poll() is None, (tmp_path / "command.log").read_text()
            return ready.exists()

        _wait(started, ready_s, "the cluster to be ready")
        producer_env = dict(
            line.split("=", 1)
            for line in (tmp_path / "jobset.env").read_text().splitlines()
            if line and not line.startswith("#")
        )
        yield command, json.loads(ready.read_text()), producer_env
    finally:
        if command.poll() is None:  # the command stops what it started; then it goes
            command.send_signal(signal.SIGTERM)
            try:
                command.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(command.pid, signal.SIGKILL)
                command.wait()
        log.close()


def test_the_cluster_command_serves_a_set_with_flower_and_metrics_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    args = ["--workers", "1", "--concurrency", "2", "--flower-port", "0"]
    with _cluster_command(tmp_path, args, 60) as (command, info, producer_env):
        ready = tmp_path / "cluster.json"
        assert oct(ready.stat().st_mode & 0o777) == "0o600"
        assert oct((tmp_path / "jobset.env").stat().st_mode & 0o777) == "0o600"
        auth = (tmp_path / "flower-auth").read_text().strip()

        circuit = QuantumCircuit(1, name="coin")
        circuit.h(0)
        circuit.measure_all()
        with CeleryExecutor(Settings.from_env(producer_env)) as executor:
            job = run(
                AerSimulator(),
                [circuit] * 3,
                executor=executor,
                max_job_size=1,
                shots=50,
                seed_simulator=2,
            )
            assert sum(job.result(timeout=60).get_counts(0).values()) == 50

        (worker,) = info["workers"]

        def listed() -> bool:
            tasks = _get(f"{info['flower_url']}/api/tasks?search={job.job_id()}", auth)
            return sum(t["state"] == "SUCCESS" for t in tasks.values()) == 3

        _wait(listed, 20, "Flower to list the set")
        metrics = _get(worker["metrics_url"])
        line = (
            f'jobset_set_sub_jobs_total{{jobset="{job.job_id()}",state="succeeded",'
            f'worker="{worker["hostname"]}"}} 3.0'
        )
        assert line in metrics.splitlines()
        text = (tmp_path / "command.log").read_text()
        assert "Local cluster ready" in text and producer_env["JOBSET_SECRET_KEY"] not in text

        command.send_signal(signal.SIGINT)
        assert command.wait(timeout=60) == 0
        started_pids = [info["redis_pid"], info["flower_pid"], worker["pid"]]
        _wait(lambda: not any(_alive(p) for p in started_pids), 10, "every process to exit")
        assert not ready.exists() and not (tmp_path / "jobset.env").exists()
        aofs = list((tmp_path / "redis").rglob("*.aof"))
        assert aofs, "the AOF stays, as compose's volume"
        assert {oct(p.stat().st_mode & 0o777) for p in aofs} == {"0o600"}
        for sub in ("redis", "logs"):
            assert oct((tmp_path / sub).stat().st_mode & 0o777) == "0o700", sub


def test_the_cluster_command_with_ha_serves_a_set_through_sentinels_and_stops_them_all(
    tmp_path: Path,
) -> None:
    args = ["--ha", "--workers", "1", "--no-metrics", "--flower-port", "0"]
    with _cluster_command(tmp_path, args, 90) as (command, info, producer_env):
        assert producer_env["JOBSET_BROKER_URL"].startswith("sentinel://")
        assert producer_env["JOBSET_SENTINEL_MASTER"] and producer_env["JOBSET_SENTINEL_PASSWORD"]
        assert len(info["sentinel_ports"]) == 3 and len(info["redis_pids"]) == 2
        circuit = QuantumCircuit(1, name="coin")
        circuit.h(0)
        circuit.measure_all()
        auth = (tmp_path / "flower-auth").read_text().strip()

        def listed(job: Any) -> bool:
            tasks = _get(f"{info['flower_url']}/api/tasks?search={job.job_id()}", auth)
            return sum(t["state"] == "SUCCESS" for t in tasks.values()) == 2

        with CeleryExecutor(Settings.from_env(producer_env)) as executor:
            # Flower answers HTTP before its event consumer has found the primary through
            # the sentinels; a set that ran before then is never listed: run another.
            for attempt in range(4):
                job = run(AerSimulator(), [circuit] * 2, executor=executor, max_job_size=1)
                assert sum(job.result(timeout=60).get_counts(0).values()) == 1024
                try:
                    _wait(lambda job=job: listed(job), 15, "Flower to list the set")
                    break
                except AssertionError:
                    if attempt == 3:
                        raise
        text = (tmp_path / "command.log").read_text()
        assert producer_env["JOBSET_SENTINEL_PASSWORD"] not in text

        command.send_signal(signal.SIGINT)
        assert command.wait(timeout=60) == 0
        pids = [*info["redis_pids"], *info["sentinel_pids"], info["flower_pid"]]
        pids += [w["pid"] for w in info["workers"]]
        _wait(lambda: not any(_alive(p) for p in pids), 10, "every process to exit")
