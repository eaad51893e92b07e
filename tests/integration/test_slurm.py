"""Workers as Slurm jobs, on a real single-node Slurm (:mod:`tests.integration.slurmkit`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .slurmkit import SlurmCluster, slurm_cluster


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    yield from slurm_cluster()


def test_the_test_slurm_runs_a_batch_job_to_completion(slurm, tmp_path):
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/bash\necho hello from $SLURM_JOB_ID\n")
    out = tmp_path / "hello.out"
    job_id = slurm.run("sbatch", "--parsable", "--wait", "-o", str(out), str(script)).strip()
    assert out.read_text() == f"hello from {job_id}\n"
