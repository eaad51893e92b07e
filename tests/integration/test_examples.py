"""Every ``docs/examples/*.py`` runs on a real local cluster, the way its docstring says.

Each example is run as a user runs it: ``python EXAMPLE FOLDER`` in its own process, with
no ``JOBSET_*`` variable set, where ``FOLDER`` holds a ``jobset.env`` as
``jobset-cluster start --dir FOLDER`` writes one, naming the session's cluster.  An
example checks its own results (against ``AerSimulator.run`` or Aer's primitives) and
ends with a ``summary:`` line once they hold.  A new file in docs/examples is picked up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobset.local import LocalCluster

pytestmark = pytest.mark.integration

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "docs" / "examples").glob("*.py"))


@pytest.fixture(scope="module")
def cluster_folder(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like a running ``jobset-cluster``'s: its ``jobset.env`` names the cluster."""
    folder = tmp_path_factory.mktemp("cluster")
    lines = [f"{name}={value}" for name, value in sorted(cluster.settings.to_env().items())]
    (folder / "jobset.env").write_text("\n".join(lines) + "\n")
    folder.joinpath("jobset.env").chmod(0o600)
    return folder


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_the_example_runs_on_a_local_cluster_and_ends_with_its_summary(
    example: Path, cluster_folder: Path, tmp_path: Path
) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBSET_")}
    done = subprocess.run(
        [sys.executable, str(example), str(cluster_folder)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, output
    assert done.stdout.splitlines()[-1].startswith("summary: "), output
    assert "Warning" not in done.stderr, output  # an example a user copies runs clean
    assert "Traceback" not in done.stderr, output
