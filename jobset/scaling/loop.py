"""The reconcile loop of ``jobset scale``: read, decide, act, log, export.

Each round reads every queue's backlog (:mod:`.backlog`), exports it as Prometheus gauges
(per queue: queued sub-jobs, their estimated work in seconds, running sub-jobs, live
worker slots; and the workers the scaler wants), decides for the scaled queue
(:mod:`.reconcile`) and asks the backend to add or drain workers.  Every decision that
changes something is logged with its reasons; so is every change of the numbers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from ..errors import JobSetError
from .backends import Backend
from .backlog import BacklogReader, QueueBacklog
from .reconcile import Decision, ScaledWorker, ScalePolicy, decide

logger = logging.getLogger("jobset.scale")


class ScaleMetrics:
    """The gauges, on a registry of their own (served by :meth:`serve`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["queue"]
        self.queued = Gauge(
            "jobset_queue_sub_jobs_queued", "Sub-jobs published and not started",
            labels, registry=self.registry,
        )  # fmt: skip
        self.queued_work = Gauge(
            "jobset_queue_work_queued_seconds",
            "Estimated work of the queued sub-jobs, seconds of one worker slot",
            labels, registry=self.registry,
        )  # fmt: skip
        self.running = Gauge(
            "jobset_queue_sub_jobs_running", "Sub-jobs running now", labels,
            registry=self.registry,
        )  # fmt: skip
        self.slots = Gauge(
            "jobset_queue_worker_slots", "Pool processes of the live workers consuming the queue",
            labels, registry=self.registry,
        )  # fmt: skip
        self.wanted = Gauge(
            "jobset_scale_workers_wanted", "Workers the scaler wants for the queue", labels,
            registry=self.registry,
        )  # fmt: skip

    def update(self, backlogs: dict[str, QueueBacklog]) -> None:
        for queue, b in backlogs.items():
            self.queued.labels(queue).set(b.queued)
            self.queued_work.labels(queue).set(b.queued_work_s)
            self.running.labels(queue).set(b.running)
            self.slots.labels(queue).set(b.slots)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)


@dataclass
class Scaler:
    """Scales ``backend``'s workers on ``queue`` by ``policy``; one :meth:`reconcile` a round."""

    reader: BacklogReader
    backend: Backend | None  # None: export the gauges, scale nothing (KEDA, the HPA)
    policy: ScalePolicy
    queue: str
    metrics: ScaleMetrics = field(default_factory=ScaleMetrics)
    clock: Callable[[], float] = time.monotonic
    _idle_since: dict[str, float] = field(default_factory=dict)
    _draining: set[str] = field(default_factory=set)
    _last: str = ""

    def reconcile(self) -> Decision | None:
        backlogs = self.reader.read([self.queue])
        self.metrics.update(backlogs)
        if self.backend is None:
            return None
        backlog = backlogs[self.queue]
        members = self.backend.members()
        now = self.clock()
        live = []
        for worker in backlog.workers:
            member = self.backend.member_of(worker)
            if member is None or member not in members or member in self._draining:
                continue
            live.append(ScaledWorker(member, worker.hostname, worker.active))
            if worker.active == 0:
                self._idle_since.setdefault(member, now)
            else:
                self._idle_since.pop(member, None)
        seen = {w.backend_id for w in live}
        self._draining &= set(members)
        # Started and not live yet (pending, or running with no heartbeat so far).
        coming = sum(1 for m in members if m not in seen and m not in self._draining)
        idle_for = {m: now - t for m, t in self._idle_since.items() if m in seen}
        decision = decide(backlog, live, coming, self.policy, idle_for_s=idle_for)
        self.metrics.wanted.labels(self.queue).set(decision.wanted)
        self._act(decision)
        return decision

    def _act(self, decision: Decision) -> None:
        assert self.backend is not None
        if decision.add or decision.drain or decision.reason != self._last:
            logger.info("%s %s: %s", self.backend.name, self.queue, decision.reason)
        self._last = decision.reason
        if decision.add:
            started = self.backend.add(decision.add)
            logger.info("%s: started %s", self.backend.name, ", ".join(started) or "(none)")
        for member in decision.drain:
            self.backend.drain(member)
            self._draining.add(member)
            self._idle_since.pop(member, None)
            logger.info("%s: draining %s", self.backend.name, member)

    def run(self, *, interval_s: float, stop: threading.Event, once: bool = False) -> None:
        """Reconcile every ``interval_s`` until ``stop`` is set; errors are logged, not fatal."""
        while not stop.is_set():
            try:
                self.reconcile()
            except (JobSetError, OSError, redis.RedisError) as e:
                logger.warning("reconcile failed: %s", str(e).splitlines()[0])
            if once:
                return
            stop.wait(interval_s)
