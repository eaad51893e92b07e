"""The Celery tasks the throughput benchmark compares a job set with (benchmarks/throughput.py).

``celery -A baseline_tasks worker`` (from ``benchmarks/``, ``BASELINE_BROKER_URL`` set):
the plainest Celery app on the same Redis with the job set's reliability flags (acks late,
reject on worker lost, prefetch 1, JSON).  ``noop`` is the queue's own cost per task;
``simulate`` is the minimal task that does a job set's work for one circuit: QPY in (base64
in the JSON message), ``AerSimulator.run`` on a simulator made once per pool child, counts
out.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready

QUEUE = "bench.baseline"

app = Celery("baseline_tasks")
app.conf.update(
    broker_url=os.environ["BASELINE_BROKER_URL"],
    result_backend=os.environ["BASELINE_BROKER_URL"],
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
)

_simulator: Any = None


@worker_process_init.connect
def _warm(**_: Any) -> None:
    """Aer is loaded and run once in each pool child, never in the prefork parent."""
    global _simulator
    from qiskit import QuantumCircuit
    from qiskit_aer import AerSimulator

    _simulator = AerSimulator(max_parallel_threads=1)
    circuit = QuantumCircuit(1, 1)
    circuit.measure(0, 0)
    _simulator.run(circuit, shots=1).result()


@worker_ready.connect
def _ready(sender: Any = None, **_: Any) -> None:
    """Tell the benchmark this worker consumes (a file, so no log level has to say it)."""
    directory = os.environ.get("BASELINE_READY_DIR")
    if directory:
        with open(os.path.join(directory, f"{os.getpid()}.ready"), "w"):
            pass


@app.task(name="bench.noop")
def noop(circuit_qpy: str) -> None:
    return None


@app.task(name="bench.simulate")
def simulate(circuit_qpy: str, shots: int, seed: int) -> dict[str, int]:
    from qiskit import qpy

    (circuit,) = qpy.load(io.BytesIO(base64.b64decode(circuit_qpy)))
    result = _simulator.run(circuit, shots=shots, seed_simulator=seed).result()
    return dict(result.get_counts(0))
