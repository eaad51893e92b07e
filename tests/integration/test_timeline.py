"""A set's timeline, recorded by real workers, read back and drawn by `jobset timeline`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from jobset import AerJobSet, run
from jobset.executors.celery.connect import redis_client
from jobset.protocol import timeline_key

pytestmark = pytest.mark.integration


def _circuits(n: int) -> list[QuantumCircuit]:
    out = []
    for k in range(n):
        qc = QuantumCircuit(3, name=f"t{k}")
        qc.h(0)
        qc.cx(0, 1)
        qc.ry(0.1 * k, 2)
        qc.measure_all()
        out.append(qc)
    return out


@pytest.fixture(scope="module")
def finished(executor):
    job = run(AerSimulator(), _circuits(6), executor=executor, max_job_size=1, shots=20)
    job.result(timeout=120)
    return job


def test_every_sub_job_run_is_recorded_with_its_worker_between_submit_and_merge(finished, cluster):
    recorded = finished.timeline()
    assert sorted(r.index for r in recorded.runs) == list(range(6))
    assert {r.worker for r in recorded.runs} <= set(cluster.worker_hostnames)
    assert {r.state for r in recorded.runs} == {"SUCCESS"}
    assert {r.queue for r in recorded.runs} == {"jobset.cpu"}
    assert recorded.created_at is not None and recorded.merged_at is not None
    for r in recorded.runs:
        assert recorded.created_at <= r.started_at <= r.ended_at <= recorded.merged_at


def test_a_retrieved_set_reads_the_same_timeline_and_skips_forged_entries(
    finished, executor, cluster
):
    client = redis_client(cluster.settings.backend_url, cluster.settings)
    client.rpush(timeline_key(finished.job_id()), b"<forged>", b'{"i": 99, "w": "x"}')
    again = AerJobSet.retrieve(finished.job_id(), executor).timeline()
    assert again.runs == finished.timeline().runs and len(again.runs) == 6
    assert again.merged_at == finished.timeline().merged_at


def test_the_command_prints_the_runs_and_draws_the_png(finished, cluster, tmp_path):
    env = dict(os.environ, **cluster.settings.to_env())
    cmd = [sys.executable, "-m", "jobset.cli", "timeline", finished.job_id()]
    text = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "6 run(s) of 6 of 6 sub-job(s)" in text.stdout and "merged" in text.stdout
    png = tmp_path / "timeline.png"
    drawn = subprocess.run(
        [*cmd, "--png", str(png)], env=env, capture_output=True, text=True, timeout=120
    )
    assert drawn.returncode == 0, drawn.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote the timeline of 6 run(s) to {png}" in drawn.stdout
