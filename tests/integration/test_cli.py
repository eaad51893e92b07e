"""The `jobset` command line, end to end through subprocesses against real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qiskit import QuantumCircuit, qpy
from qiskit_aer import AerSimulator

from jobset import Settings
from jobset.local import RedisServer

pytestmark = pytest.mark.integration

CIRCUITS_PY = """
from qiskit import QuantumCircuit
from qiskit_aer.noise import NoiseModel, depolarizing_error

circuits = []
for k in range(5):
    qc = QuantumCircuit(3, name=f"point{k}")
    qc.h(0)
    qc.cx(0, 1)
    qc.ry(0.3 * k, 2)
    qc.measure_all()
    circuits.append(qc)
noise_model = NoiseModel()
noise_model.add_all_qubit_quantum_error(depolarizing_error(0.05, 2), ["cx"])
"""


def _circuits_from(path: Path) -> tuple[list[QuantumCircuit], object]:
    namespace: dict[str, object] = {}
    exec(path.read_text(), namespace)
    return namespace["circuits"], namespace["noise_model"]  # type: ignore[return-value]


def jobset_cli(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobset.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def env(cluster) -> dict[str, str]:
    return dict(os.environ, **cluster.settings.to_env())


def test_submit_watch_result_ls_and_delete_work_end_to_end(env, tmp_path):
    source = tmp_path / "sweep.py"
    source.write_text(CIRCUITS_PY)
    submitted = jobset_cli(
        env,
        "submit",
        str(source),
        "--shots",
        "300",
        "--seed",
        "5",
        "--max-job-size",
        "2",
        "--tag",
        "cli-test",
        "--memory",
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().splitlines()[-1]

    watched = jobset_cli(env, "watch", job_id, "--interval", "0.1")
    assert watched.returncode == 0, watched.stderr
    assert f"{job_id}: DONE" in watched.stdout

    status = jobset_cli(env, "status", job_id)
    assert status.returncode == 0 and "DONE 3" in status.stdout

    out = tmp_path / "result.json"
    fetched = jobset_cli(env, "result", job_id, "--output", str(out))
    assert fetched.returncode == 0, fetched.stderr
    document = json.loads(out.read_text())
    circuits, noise = _circuits_from(source)
    want = AerSimulator(noise_model=noise).run(circuits, shots=300, seed_simulator=5).result()
    assert [e["name"] for e in document["experiments"]] == [f"point{k}" for k in range(5)]
    for i, entry in enumerate(document["experiments"]):
        assert entry["counts"] == want.get_counts(i)

    listed = jobset_cli(env, "ls")
    assert job_id in listed.stdout and "cli-test" in listed.stdout

    assert jobset_cli(env, "delete", job_id).returncode == 0
    gone = jobset_cli(env, "status", job_id)
    assert gone.returncode == 2
    assert gone.stderr.strip().splitlines() == [
        f"error: no job set {job_id!r}: it never ran here, expired, or was deleted"
    ]


def test_a_qpy_file_is_accepted_and_result_prints_json_in_input_order(env, tmp_path):
    circuits = []
    for k in range(3):
        qc = QuantumCircuit(2, name=f"q{k}")
        qc.h(0)
        qc.rx(0.5 * k, 1)
        qc.measure_all()
        circuits.append(qc)
    path = tmp_path / "circuits.qpy"
    with path.open("wb") as f:
        qpy.dump(circuits, f)
    submitted = jobset_cli(
        env,
        "submit",
        str(path),
        "--shots",
        "100",
        "--seed",
        "1",
        "--max-shot-size",
        "30",
        "--method",
        "statevector",
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().splitlines()[-1]
    fetched = jobset_cli(env, "result", job_id, "--timeout", "120")
    assert fetched.returncode == 0, fetched.stderr
    document = json.loads(fetched.stdout)
    assert [e["name"] for e in document["experiments"]] == ["q0", "q1", "q2"]
    assert all(
        sum(e["counts"].values()) == 100 and e["shots"] == 100 for e in document["experiments"]
    )


def test_cancel_from_the_command_line_and_watch_exits_non_zero(tmp_path):
    with RedisServer() as server:
        env = dict(os.environ, JOBSET_BROKER_URL=server.url, JOBSET_SECRET_KEY="c" * 32)
        source = tmp_path / "sweep.py"
        source.write_text(CIRCUITS_PY)
        submitted = jobset_cli(env, "submit", str(source))
        job_id = submitted.stdout.strip().splitlines()[-1]
        cancelled = jobset_cli(env, "cancel", job_id)
        assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
        watched = jobset_cli(env, "watch", job_id)
        assert watched.returncode == 1
        assert f"{job_id}: CANCELLED" in watched.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "no-such-set"], "error: no job set 'no-such-set'"),
        (["submit", "/nonexistent/file.py"], "error: /nonexistent/file.py: no such file"),
        (["submit", "README.md"], "expected a .qpy or a .py file"),
    ],
)
def test_user_errors_print_one_line_and_exit_non_zero(env, args, message):
    done = jobset_cli(env, *args, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_python_file_that_fails_or_defines_no_circuits_is_one_line(env, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('bad sweep')\n")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    for path, message in ((broken, "ValueError: bad sweep"), (empty, "defines no `circuits`")):
        done = jobset_cli(env, "submit", str(path))
        assert done.returncode == 2 and message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_an_unreachable_redis_is_a_one_line_error_within_seconds():
    env = dict(os.environ, JOBSET_BROKER_URL="redis://127.0.0.1:9/0", JOBSET_SECRET_KEY="x" * 32)
    # What starting the command costs on this machine now, apart from reaching Redis.
    start = time.monotonic()
    assert jobset_cli(env, "--help", timeout=120).returncode == 0
    startup_s = time.monotonic() - start
    start = time.monotonic()
    done = jobset_cli(env, "ls", timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot reach Redis at redis://127.0.0.1:9/0")
    assert len(done.stderr.strip().splitlines()) == 1
    # Refused tries are retried for 2 x the connect timeout (5 s by default), and the call
    # fails within 3 x it, the documented bound: not the minutes of a retry loop.
    connect_timeout_s = Settings(secret_key="x" * 32).connect_timeout_s
    assert time.monotonic() - start - startup_s < 3 * connect_timeout_s
