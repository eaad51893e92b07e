"""What a person sees from the `jobset` command: version, newest sets first, progress."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

import jobset
from jobset import run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(cluster) -> dict[str, str]:
    return dict(os.environ, **cluster.settings.to_env())


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobset.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _circuits(n: int) -> list[QuantumCircuit]:
    out = []
    for k in range(n):
        qc = QuantumCircuit(2, name=f"c{k}")
        qc.h(0)
        qc.cx(0, 1)
        qc.measure_all()
        out.append(qc)
    return out


def test_version_prints_the_installed_package_version():
    done = subprocess.run(
        [sys.executable, "-m", "jobset.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"jobset, version {jobset.__version__}"
    assert jobset.__version__[0].isdigit()


def test_ls_shows_the_newest_sets_first_and_only_as_many_as_the_limit(env, executor):
    ids = [
        run(AerSimulator(), _circuits(1), executor=executor, shots=10).job_id() for _ in range(3)
    ]
    listed = cli(env, "ls", "--limit", "2")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("ID")
    assert [line.split()[0] for line in lines[1:3]] == [ids[2], ids[1]]
    assert ids[0] not in listed.stdout
    assert lines[-1].startswith("... and ") and "older" in lines[-1]
    everything = cli(env, "ls", "--all")
    assert all(i in everything.stdout for i in ids) and "older" not in everything.stdout


def test_watch_piped_prints_plain_lines_without_carriage_returns(env, executor):
    job = run(AerSimulator(), _circuits(4), executor=executor, max_job_size=1, shots=10)
    watched = cli(env, "watch", job.job_id(), "--interval", "0.1")
    assert watched.returncode == 0, watched.stderr
    assert "\r" not in watched.stdout and "\x1b" not in watched.stdout
    progress = [line for line in watched.stdout.splitlines() if line.startswith("AerJobSet")]
    assert progress and "DONE 4" in progress[-1]
    assert f"{job.job_id()}: DONE" in watched.stdout


def test_watch_on_a_terminal_draws_a_bar_with_rate_and_eta(env, executor):
    job = run(AerSimulator(), _circuits(4), executor=executor, max_job_size=1, shots=10)
    primary, secondary = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "jobset.cli", "watch", job.job_id(), "--interval", "0.1"],
        env=env,
        stdout=secondary,
        stderr=subprocess.PIPE,
    ) as proc:
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the terminal closed: the command exited
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    os.close(primary)
    screen = b"".join(chunks).decode(errors="replace")
    assert "4/4" in screen and "sub-job/s" in screen  # tqdm's count and rate
    assert "\r" in screen  # redrawn in place
    assert f"{job.job_id()}: DONE" in screen
