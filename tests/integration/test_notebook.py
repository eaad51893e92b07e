"""The notebook view, in a real notebook executed by nbclient against real workers.

The notebook's kernel is a separate process that reaches the session cluster through the
``JOBSET_*`` variables, as a researcher's would.  The saved outputs are what a person sees:
each must carry ``text/html`` with the right contents.
"""

from __future__ import annotations

import html
import re

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.integration

SETUP = """
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator
import warnings
from jobset import AerJobSet, CeleryExecutor, PerformanceWarning, Settings, run

warnings.simplefilter("ignore", PerformanceWarning)  # sets split small on purpose, to watch

executor = CeleryExecutor(Settings.from_env())
circuits = []
for k in range(6):
    qc = QuantumCircuit(3, name=f"p{k}")
    qc.h(0); qc.cx(0, 1); qc.ry(0.2 * k, 2); qc.measure_all()
    circuits.append(qc)
"""

WATCH = """
job = run(AerSimulator(), circuits, executor=executor, max_job_size=2, shots=100,
          seed_simulator=3, tags=["nb-<b>view</b>"])
final = job.watch(timeout=120, interval_s=0.1)
print("final:", final.name)
"""

FAILING = """
big = QuantumCircuit(40, name="too-big")
big.h(range(40)); big.measure_all()
bad = run(AerSimulator(method="statevector"), [circuits[0], big], executor=executor,
          max_job_size=1, shots=10, seed_simulator=1)
bad.wait_for_final_state(timeout=120, wait=0.1)
bad
"""

SAMPLER = """
from jobset.primitives import SamplerV2
sampled = SamplerV2(executor=executor, seed=7).run([circuits[1]], shots=50)
sampled.result()
sampled
"""


def _html(output: dict) -> str | None:
    return output.get("data", {}).get("text/html")


def _shown(cell: nbformat.NotebookNode) -> dict:
    """The cell's value as the notebook shows it (beside it, warnings may be printed)."""
    (output,) = [o for o in cell.outputs if o["output_type"] == "execute_result"]
    return output


@pytest.fixture(scope="module")
def notebook(cluster, tmp_path_factory, monkeypatch_module) -> nbformat.NotebookNode:
    for name, value in cluster.settings.to_env().items():
        monkeypatch_module.setenv(name, value)
    cells = [
        SETUP,
        WATCH,
        "job",
        FAILING,
        "AerJobSet.list_sets(executor, newest_first=True)",
        SAMPLER,
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path = tmp_path_factory.mktemp("notebook")
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path)}}
    ).execute()
    nbformat.write(nb, path / "view.ipynb")  # what a person would open
    return nb


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_watch_updates_one_output_in_place_and_ends_showing_the_set_done(notebook):
    outputs = notebook.cells[1].outputs
    shown = [o for o in outputs if o["output_type"] == "display_data"]
    assert len(shown) == 1  # updated in place, not one output per poll
    view = _html(shown[0])
    assert view is not None and 'class="jobset-view"' in view
    assert ">DONE<" in view and "done 3" in view
    assert any("final: DONE" in o.get("text", "") for o in outputs if o["output_type"] == "stream")
    assert not [o for o in outputs if o.get("name") == "stderr"]  # no fallback bar, no warning


def test_a_job_set_renders_as_html_with_id_state_progress_dates_and_escaped_tags(notebook):
    output = _shown(notebook.cells[2])
    view = _html(output)
    assert view is not None
    job_id = re.search(r'data-jobset-id="([0-9a-f-]{36})"', view).group(1)
    assert f"<code>{job_id}</code>" in view
    assert ">DONE<" in view and 'class="jobset-progress"' in view
    assert "3 (6 experiments)" in view
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", view)  # a date, not a float
    assert re.search(r"<td>\d+\.\d s</td>", view)  # elapsed
    assert "<b>view</b>" not in view and html.escape("nb-<b>view</b>") in view
    assert "AerJobSet" in output["data"]["text/plain"] and "DONE" in output["data"]["text/plain"]


def test_a_failed_set_shows_its_failures_with_the_workers_message(notebook):
    output = _shown(notebook.cells[3])
    view = _html(output)
    assert view is not None
    assert ">ERROR<" in view and "done 1" in view and "error 1" in view
    assert "1 failed or cancelled" in view
    assert "sub-job 1 (<code>" in view and "Insufficient memory" in view


def test_the_listing_is_a_table_newest_first_with_dates(notebook):
    output = _shown(notebook.cells[4])
    table = _html(output)
    assert table is not None and table.startswith('<table class="jobset-listing">')
    ids = re.findall(r"<tr><td><code>([0-9a-f-]{36})</code></td><td>(\d{4}-[^<]+ UTC)</td>", table)
    watched = re.search(r'data-jobset-id="([0-9a-f-]{36})"', _html(_shown(notebook.cells[2])))
    failing = re.search(r'data-jobset-id="([0-9a-f-]{36})"', _html(_shown(notebook.cells[3])))
    order = [i for i, _ in ids]
    assert order.index(failing.group(1)) < order.index(watched.group(1))  # newest first
    assert "JobStatus." not in table and ">ERROR<" in table


def test_a_primitive_job_renders_as_its_job_set_named_after_the_primitive(notebook):
    output = _shown(notebook.cells[5])
    view = _html(output)
    assert view is not None and "<b>sampler job</b>" in view and ">DONE<" in view
    assert output["data"]["text/plain"].startswith("sampler job ")
