"""Worker start-up and liveness: Aer threads per task, warm-up, heartbeat in Redis."""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any

from celery import bootsteps
from celery.signals import celeryd_after_setup, worker_process_init

from jobset.execute import available_cores
from jobset.protocol import DEFAULT_QUEUE, WORKER_HEARTBEAT_S, WORKER_TTL_S, worker_key

logger = logging.getLogger(__name__)


class _Runtime:
    """What a pool child needs to know about its worker; set in the parent before fork."""

    concurrency = 1
    aer_threads = 1


runtime = _Runtime()


def aer_threads_for(concurrency: int, configured: int | None) -> int:
    """OpenMP threads per task so that concurrency x threads never exceeds the cores."""
    if configured is not None:
        return configured
    return max(1, available_cores() // max(1, concurrency))


@celeryd_after_setup.connect
def _record_concurrency(sender: str, instance: Any, conf: Any, **kwargs: Any) -> None:
    runtime.concurrency = int(instance.concurrency or 1)
    runtime.aer_threads = aer_threads_for(runtime.concurrency, conf.jobset_settings.aer_threads)
    os.environ["OMP_NUM_THREADS"] = str(runtime.aer_threads)
    logger.info(
        "jobset worker %s: concurrency %d, %d Aer thread(s) per task, %d core(s)",
        sender,
        runtime.concurrency,
        runtime.aer_threads,
        available_cores(),
    )


@worker_process_init.connect
def _warm_up(**kwargs: Any) -> None:
    """Load Aer and run one tiny circuit in the child, so the first sub-job pays no start-up."""
    from qiskit import QuantumCircuit
    from qiskit_aer import AerSimulator

    circuit = QuantumCircuit(1, 1)
    circuit.h(0)
    circuit.measure(0, 0)
    AerSimulator().run(circuit, shots=1, max_parallel_threads=1).result()


class Heartbeat(bootsteps.StartStopStep):
    """Advertise this worker's capacity in Redis; the key expires when the worker dies."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        self._beat(worker)
        self.tref = worker.timer.call_repeatedly(WORKER_HEARTBEAT_S, self._beat, (worker,))

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
        try:
            worker.app.backend.client.delete(worker_key(worker.hostname))
        except Exception:  # the broker may already be gone at shutdown
            logger.debug("could not remove heartbeat key", exc_info=True)

    def _beat(self, worker: Any) -> None:
        queues = [q.name for q in worker.app.amqp.queues.consume_from.values()] or [DEFAULT_QUEUE]
        record = {
            "hostname": worker.hostname,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": runtime.concurrency,
            "aer_threads": runtime.aer_threads,
            "cores": available_cores(),
            "queues": queues,
        }
        try:
            worker.app.backend.client.set(
                worker_key(worker.hostname), json.dumps(record), ex=WORKER_TTL_S
            )
        except Exception:
            logger.warning("heartbeat to Redis failed; will retry", exc_info=True)
