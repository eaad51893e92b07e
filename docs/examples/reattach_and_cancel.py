"""Sets outlive the process that submitted them: re-attach by id, and cancel from elsewhere.

Three processes, as three terminals (or a notebook and two scripts) would be:

1. ``--submit`` queues a small seeded sweep and a long noisy one, prints their ids and
   exits without waiting;
2. ``--cancel ID`` re-attaches to the long set with ``AerJobSet.retrieve`` and cancels it:
   queued sub-jobs are dropped, running ones stopped;
3. ``--collect SWEEP_ID LONG_ID`` re-attaches to both: the sweep's result, checked against
   ``AerSimulator.run`` on this machine, and the long set's final state, CANCELLED.

Run the three steps by hand, or all of them, each in its own process, with::

    jobset-cluster start --detach --dir ~/jobset-cluster
    python docs/examples/reattach_and_cancel.py ~/jobset-cluster    # or JOBSET_* variables
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from qiskit import QuantumCircuit
from qiskit.circuit.library import quantum_volume
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error

from jobset import AerJobSet, CeleryExecutor, JobSetCancelledError, run

SEED = 5


def connect(folder: str | None) -> CeleryExecutor:
    """The cluster in ``folder``, else the one the JOBSET_* variables name."""
    return CeleryExecutor.from_cluster(folder) if folder else CeleryExecutor()


def sweep_circuits() -> list[QuantumCircuit]:
    """Twelve 8-qubit quantum-volume circuits: rebuilt from their seeds by any process."""
    return [quantum_volume(8, seed=s).measure_all(inplace=False) for s in range(12)]


def long_circuits() -> tuple[AerSimulator, list[QuantumCircuit]]:
    """Forty noisy 10-qubit circuits: one trajectory per shot, a second or so each."""
    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(depolarizing_error(0.01, 2), ["cx"])
    circuits = []
    for k in range(40):
        circuit = QuantumCircuit(10, name=f"long-{k}")
        circuit.h(0)
        for _ in range(4):
            for q in range(9):
                circuit.cx(q, q + 1)
        circuit.measure_all()
        circuits.append(circuit)
    return AerSimulator(method="statevector", noise_model=noise), circuits


def submit(folder: str | None) -> None:
    with connect(folder) as executor:
        sweep = run(
            AerSimulator(),
            sweep_circuits(),
            executor=executor,
            shots=1000,
            seed_simulator=SEED,
        )
        backend, circuits = long_circuits()
        long = run(backend, circuits, executor=executor, max_job_size=1, shots=1000)
    print(sweep.job_id(), long.job_id())  # the ids are all another process needs


def cancel(folder: str | None, job_id: str) -> None:
    with connect(folder) as executor:
        job = AerJobSet.retrieve(job_id, executor)
        print(f"re-attached to {job_id}: {job.status().name}, {job.progress()}")
        if job.cancel():
            print(f"cancelled {job_id}")
        else:
            print(f"{job_id} had already finished: {job.status().name}")


def collect(folder: str | None, sweep_id: str, long_id: str) -> int:
    with connect(folder) as executor:
        sweep = AerJobSet.retrieve(sweep_id, executor)
        result = sweep.result(timeout=300)
        long = AerJobSet.retrieve(long_id, executor)
        long.wait_for_final_state(timeout=300)
        try:
            long.result()
        except JobSetCancelledError as e:  # says how many sub-jobs had finished
            print(str(e).splitlines()[0])
        final = long.status()
        for job in (sweep, long):
            job.delete()  # record, payloads and results: nothing is left in Redis

    circuits = sweep_circuits()
    expected = AerSimulator().run(circuits, shots=1000, seed_simulator=SEED).result()
    if result.get_counts() != expected.get_counts():
        print("the sweep's counts differ from AerSimulator.run's", file=sys.stderr)
        return 1
    if final not in (JobStatus.CANCELLED, JobStatus.DONE):
        print(f"the long set ended {final.name}", file=sys.stderr)
        return 1
    print(
        f"summary: the sweep re-attached in a third process, counts equal to AerSimulator.run's "
        f"({len(circuits)} circuits); the long set, cancelled from a second, ended {final.name}"
    )
    return 0


def step(folder: str | None, *args: str) -> str:
    """Run this file again as a separate Python process; its standard output."""
    command = [sys.executable, __file__, *([folder] if folder else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}")
    print(f"$ python {Path(__file__).name} {' '.join(args)}\n{done.stdout}", end="")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="the local cluster's folder")
    steps = parser.add_mutually_exclusive_group()
    steps.add_argument("--submit", action="store_true", help="submit two sets, print their ids")
    steps.add_argument("--cancel", metavar="ID", help="re-attach to set ID and cancel it")
    steps.add_argument("--collect", nargs=2, metavar=("SWEEP_ID", "LONG_ID"))
    args = parser.parse_args()
    if args.submit:
        submit(args.folder)
    elif args.cancel:
        cancel(args.folder, args.cancel)
    elif args.collect:
        return collect(args.folder, *args.collect)
    else:
        sweep_id, long_id = step(args.folder, "--submit").split()
        step(args.folder, "--cancel", long_id)
        step(args.folder, "--collect", sweep_id, long_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
