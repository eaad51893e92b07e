"""What waits and what serves, per queue: read from the sets' tallies and the heartbeats.

A queue's backlog is counted from the job sets, not from the Redis list: with late
acknowledgement and prefetch a list hides what workers hold, and one message may be a
sub-job of one circuit or of a thousand.  For each live set (its record names the queues
its sub-jobs went to, and the estimated work of the whole set, from :mod:`jobset.cost`),
the tally says how many sub-jobs run and how many ended; the rest are queued.  A queued
sub-job's work is the set's mean per sub-job (the automatic split evens the work out), in
seconds of one worker slot at ``work_rate`` units a second.  Records are verified once
and kept; a set whose sub-jobs all ended, or that was cancelled, is not read again.

Workers are read from their heartbeats (``jobset:worker:*``): their queues, their slots
(concurrency) and how many sub-jobs they run now.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import protocol
from ..errors import JobSetError
from ..executors.celery import registry, tally
from ..executors.stored import JobSetRecord
from ..protocol import DEFAULT_QUEUE, base_queue, cancel_key

logger = logging.getLogger(__name__)

# Work units (jobset.cost) one worker slot (a pool process and its Aer threads) does in a
# second: a coarse figure from Aer on one thread here (GHZ-5, quantum volume 10 to 20:
# 0.7e7 to 7e7 a second); `jobset scale --work-rate` sets a site's own.
DEFAULT_WORK_RATE = 2e7
# A queued sub-job of a set with no estimate (work=None) counts this many seconds.
UNKNOWN_SUB_JOB_S = 1.0
_MAX_ACTIVE = 100_000


@dataclass(frozen=True)
class LiveWorker:
    """One live worker, from its heartbeat."""

    hostname: str
    host: str
    queues: tuple[str, ...]
    slots: int
    active: int | None  # sub-jobs it runs now (None: a worker too old to say)

    @classmethod
    def from_heartbeat(cls, record: Mapping[str, Any]) -> LiveWorker:
        """From a heartbeat; :class:`ValueError` for a field that is not what it must be."""
        hostname, host = record.get("hostname"), record.get("host", "")
        queues = record.get("queues") or [DEFAULT_QUEUE]
        slots, active = record.get("concurrency", 1), record.get("active")
        if not isinstance(hostname, str) or not isinstance(host, str):
            raise ValueError("a heartbeat's hostname and host must be text")
        if not isinstance(queues, list) or not all(isinstance(q, str) for q in queues):
            raise ValueError("a heartbeat's queues must be a list of names")
        if not _count(slots) or slots < 1:
            raise ValueError(f"a heartbeat's concurrency must be a positive count: {slots!r:.40}")
        if active is not None and not _count(active):
            raise ValueError(f"a heartbeat's active count is not a count: {active!r:.40}")
        return cls(hostname[:255], host[:255], tuple(queues), slots, active)

    def serves(self, queue: str) -> bool:
        return any(base_queue(q) == queue for q in self.queues)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_ACTIVE


@dataclass(frozen=True)
class QueueBacklog:
    """One queue (its owner queues folded in): what waits, what runs, who serves it."""

    queue: str
    queued: int = 0
    queued_work_s: float = 0.0
    running: int = 0
    workers: tuple[LiveWorker, ...] = ()

    @property
    def slots(self) -> int:
        return sum(w.slots for w in self.workers)

    def drain_s(self) -> float:
        """How long the queued work would take on the live slots (inf with none)."""
        if self.queued == 0:
            return 0.0
        return math.inf if self.slots == 0 else self.queued_work_s / self.slots


@dataclass
class _Tally:
    queued: int = 0
    running: int = 0
    work_s: float = 0.0


@dataclass
class BacklogReader:
    """Reads every queue's backlog from Redis, keeping what never changes between reads.

    ``executor`` is a :class:`~jobset.CeleryExecutor` (its Redis client, signed store and
    heartbeats).  Sets whose every sub-job ended, or that were cancelled, are remembered
    and skipped.
    """

    executor: Any
    work_rate: float = DEFAULT_WORK_RATE
    _records: dict[str, JobSetRecord] = field(default_factory=dict)
    _done: set[str] = field(default_factory=set)

    def workers(self) -> list[LiveWorker]:
        found = []
        for record in self.executor.heartbeats():
            try:
                found.append(LiveWorker.from_heartbeat(record))
            except ValueError as e:
                logger.warning("skipped a worker heartbeat: %s", e)
        return found

    def read(self, queues: Sequence[str] = (DEFAULT_QUEUE,)) -> dict[str, QueueBacklog]:
        """Backlog of each of ``queues`` and of every other queue a live set uses."""
        tallies: dict[str, _Tally] = {q: _Tally() for q in queues}
        redis = self.executor.redis
        ids = [i for i in registry.list_ids(redis) if i not in self._done]
        pipe = redis.pipeline(transaction=False)
        for jobset_id in ids:
            pipe.hgetall(protocol.counts_key(jobset_id))
            pipe.exists(cancel_key(jobset_id))
        replies = pipe.execute() if ids else []
        for k, jobset_id in enumerate(ids):
            counts, cancelled = replies[2 * k], replies[2 * k + 1]
            record = self._record(jobset_id)
            if record is None or cancelled:
                self._done.add(jobset_id)
                continue
            self._count(record, counts, tallies)
        workers = self.workers()
        return {
            q: QueueBacklog(
                q, t.queued, t.work_s, t.running, tuple(w for w in workers if w.serves(q))
            )
            for q, t in tallies.items()
        }

    def _record(self, jobset_id: str) -> JobSetRecord | None:
        record = self._records.get(jobset_id)
        if record is None:
            try:
                record = registry.load(self.executor.store, jobset_id)
            except JobSetError as e:  # expired, or not verifiable: not counted
                logger.warning("skipped job set %s: %s", jobset_id, str(e).splitlines()[0])
                return None
            self._records[jobset_id] = record
        return record

    def _count(
        self, record: JobSetRecord, counts: Mapping[Any, Any], tallies: dict[str, _Tally]
    ) -> None:
        by_letter = {_text(k): _int(v) for k, v in counts.items()}
        total = len(record.task_ids)
        ended = sum(by_letter.get(letter, 0) for letter in tally.FINAL_LETTERS)
        running = min(total, by_letter.get(tally.RUNNING, 0))
        queued = max(0, total - ended - running)
        if ended >= total:
            self._done.add(record.jobset_id)
            self._records.pop(record.jobset_id, None)
            return
        per_sub_job_s = (
            UNKNOWN_SUB_JOB_S
            if record.work is None or total == 0
            else record.work / total / self.work_rate
        )
        # Sub-jobs routed elsewhere (a large state) are few, and the tally does not say
        # which of them ended: while the set has queued sub-jobs they count as queued on
        # their own queue, the rest on the set's queue.
        queue = base_queue(record.dispatch.queue) if record.dispatch else DEFAULT_QUEUE
        elsewhere = record.dispatch.elsewhere if record.dispatch else {}
        moved = min(queued, len(elsewhere))
        for other in list(elsewhere.values())[:moved]:
            t = tallies.setdefault(base_queue(other), _Tally())
            t.queued += 1
            t.work_s += per_sub_job_s
        t = tallies.setdefault(queue, _Tally())
        t.queued += queued - moved
        t.work_s += (queued - moved) * per_sub_job_s
        t.running += running


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _int(value: object) -> int:
    try:
        return max(0, int(_text(value)))
    except ValueError:
        return 0
