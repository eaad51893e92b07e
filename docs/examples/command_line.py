"""The ``jobset`` command, as a shell session: submit, watch, status, result, ls, cancel, delete.

Every command reads the ``JOBSET_*`` variables; a local cluster's folder has them in its
``jobset.env`` (a shell says ``set -a; . ~/jobset-cluster/jobset.env; set +a``).  This file
runs the session below, printing each command and what it answered, and checks the
counts ``jobset result`` wrote against ``AerSimulator.run`` with the same seed::

    $ jobset submit sweep.py --shots 1000 --seed 3 --tag example
    $ jobset watch ID          # exit 0 once DONE
    $ jobset status ID
    $ jobset result ID --output counts.json
    $ jobset ls --limit 5
    $ jobset submit long.py --method statevector --max-job-size 1
    $ jobset cancel LONG_ID
    $ jobset watch LONG_ID     # exit 1: CANCELLED
    $ jobset delete ID         # and LONG_ID; then `jobset status ID` is an error (exit 2)

Run it with::

    jobset-cluster start --detach --dir ~/jobset-cluster
    python docs/examples/command_line.py ~/jobset-cluster    # or JOBSET_* variables
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qiskit_aer import AerSimulator

SWEEP_PY = """\
from qiskit import QuantumCircuit

circuits = []
for k in range(6):
    circuit = QuantumCircuit(3, name=f"point-{k}")
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.ry(0.5 * k, 2)
    circuit.cx(1, 2)
    circuit.measure_all()
    circuits.append(circuit)
"""

LONG_PY = """\
from qiskit import QuantumCircuit
from qiskit_aer.noise import NoiseModel, depolarizing_error

# Noisy 10-qubit circuits on the statevector method: one trajectory per shot.
noise_model = NoiseModel()
noise_model.add_all_qubit_quantum_error(depolarizing_error(0.01, 2), ["cx"])
circuits = []
for k in range(30):
    circuit = QuantumCircuit(10, name=f"long-{k}")
    circuit.h(0)
    for _ in range(4):
        for q in range(9):
            circuit.cx(q, q + 1)
    circuit.measure_all()
    circuits.append(circuit)
"""


def cluster_env(folder: str | None) -> dict[str, str]:
    """This environment plus the JOBSET_* variables of the cluster in ``folder``, if given."""
    env = dict(os.environ)
    if folder:
        for line in (Path(folder).expanduser() / "jobset.env").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, value = line.partition("=")
                env[name.strip()] = value.strip()
    return env


def jobset(env: dict[str, str], *args: str, expect: tuple[int, ...] = (0,)) -> str:
    """Run ``jobset ARGS`` like a shell would; print the command and its output."""
    command = shutil.which("jobset", path=os.path.dirname(sys.executable)) or "jobset"
    print(f"$ jobset {' '.join(args)}")
    done = subprocess.run([command, *args], env=env, capture_output=True, text=True, check=False)
    print(done.stdout + done.stderr, end="")
    if done.returncode not in expect:
        raise SystemExit(f"jobset {args[0]} exited {done.returncode}")
    return done.stdout


def main() -> int:
    env = cluster_env(sys.argv[1] if len(sys.argv) > 1 else None)
    with tempfile.TemporaryDirectory() as tmp:
        sweep_py, long_py = Path(tmp, "sweep.py"), Path(tmp, "long.py")
        sweep_py.write_text(SWEEP_PY)
        long_py.write_text(LONG_PY)
        counts_json = Path(tmp, "counts.json")

        args = ("--shots", "1000", "--seed", "3", "--tag", "example")
        job_id = jobset(env, "submit", str(sweep_py), *args).split()[-1]
        jobset(env, "watch", job_id)
        jobset(env, "status", job_id)
        jobset(env, "result", job_id, "--output", str(counts_json))
        jobset(env, "ls", "--limit", "5")

        long_args = ("--method", "statevector", "--max-job-size", "1", "--shots", "1000")
        long_id = jobset(env, "submit", str(long_py), *long_args).split()[-1]
        jobset(env, "cancel", long_id)
        # Exit 1 once cancelled; 0 if a large cluster finished it before the cancel came.
        watched = jobset(env, "watch", long_id, expect=(0, 1))

        for set_id in (job_id, long_id):
            jobset(env, "delete", set_id)
        jobset(env, "status", job_id, expect=(2,))  # gone: one `error:` line

        document = json.loads(counts_json.read_text())
        circuits = runpy.run_path(str(sweep_py))["circuits"]

    expected = AerSimulator().run(circuits, shots=1000, seed_simulator=3).result().get_counts()
    counts = [experiment["counts"] for experiment in document["experiments"]]
    if counts != expected:
        print("`jobset result` differs from AerSimulator.run", file=sys.stderr)
        return 1
    final = [line for line in watched.splitlines() if line.startswith(f"{long_id}: ")]
    ended = final[-1].split(": ")[1]  # watch's last word: "LONG_ID: CANCELLED"
    print(
        f"summary: {len(counts)} experiments through the command line, counts equal to "
        f"AerSimulator.run's; the long set, cancelled, ended {ended}; both deleted"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
