"""Names shared by producers and workers: tasks, queues, Redis keys, the message schema.

Both sides import this module and nothing else of each other, so a producer can publish
by task *name* without importing the worker code (arq's ``constants.py`` does the same).

A sub-job message carries only identifiers (``SubJobRef``); the payloads live in Redis
under the keys below, each signed (see :mod:`jobset.codec`) and each with a TTL:

``jobset:{id}:record``       the set's record: plan skeleton, task ids, tags (signed pickle)
``jobset:index``             a sorted set of known set ids, scored by creation time
``jobset:{id}:backend``      the simulator the set runs on (signed pickle), once per set
``jobset:{id}:batch:{k}``    sub-job ``k``'s circuits and run options (signed pickle)
``jobset:{id}:result:{k}``   sub-job ``k``'s ``qiskit.result.Result`` (signed pickle)
``jobset:{id}:cancelled``    the durable cancel mark, checked by workers before they run
``jobset:{id}:cancelled:{k}`` the same for sub-job ``k`` alone
``jobset:{id}:primitive``    a primitive job's layout: PUB shapes, observables, seeds (signed
                             pickle; only for sets made by :mod:`jobset.primitives`)
``jobset:{id}:runs``         how often each sub-job started and ended (a hash; the
                             redelivery cap counts starts that never ended)
``jobset:worker:{hostname}`` a live worker's capacity and versions, refreshed by a heartbeat
``jobset:owner-queues``      a sorted set of per-owner queues, scored by last publish time;
                             workers add a consumer for those of the queues they serve
``jobset:cache:{digest}``    a cached sub-job result (signed pickle), for ``cache_ttl_s`` sets

The broker's own keys (kombu's Redis transport) are read by the producer to tell a lost
sub-job from a queued one: the queue lists, and ``unacked`` / ``unacked_index``, where a
delivered message waits for its ack, scored by the time of its lease.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1

RUN_SUB_JOB_TASK = "jobset.run_sub_job"
DEFAULT_QUEUE = "jobset.cpu"
GPU_QUEUE = "jobset.gpu"
# Sub-jobs whose state is at least Settings.large_memory_mb, when a worker consumes it.
LARGE_QUEUE = "jobset.cpu.large"
BASE_QUEUES = (DEFAULT_QUEUE, LARGE_QUEUE, GPU_QUEUE)
# A set with an owner goes to ``{base}{OWNER_SEP}{owner}``; kombu's Redis transport
# rotates over the queues a worker consumes, so owners take turns.
OWNER_SEP = ".owner."
OWNER_QUEUES_POLL_S = 1.0
# A set's priority -> the message priority kombu's Redis transport files it under.  Its
# lists are taken in ascending order across every queue a worker consumes; None publishes
# without one (the plain queue list, taken first), so the default is the highest.
PRIORITIES: dict[str, int | None] = {"normal": None, "low": 3, "lowest": 6}

KEY_PREFIX = "jobset"
WORKER_KEY_PREFIX = f"{KEY_PREFIX}:worker:"
WORKER_HEARTBEAT_S = 10.0
WORKER_TTL_S = 30


INDEX_KEY = f"{KEY_PREFIX}:index"
OWNER_QUEUES_KEY = f"{KEY_PREFIX}:owner-queues"


def owner_queue(base: str, owner: str | None) -> str:
    """The queue of ``owner``'s sub-jobs of class ``base`` (``base`` itself for no owner)."""
    return f"{base}{OWNER_SEP}{owner}" if owner else base


def base_queue(queue: str) -> str:
    """The size-class queue an owner queue belongs to (the queue itself otherwise)."""
    return queue.partition(OWNER_SEP)[0]


def cache_key(digest: str) -> str:
    return f"{KEY_PREFIX}:cache:{digest}"


def record_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{jobset_id}:record"


def backend_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{jobset_id}:backend"


def batch_key(jobset_id: str, index: int) -> str:
    return f"{KEY_PREFIX}:{jobset_id}:batch:{index}"


def result_key(jobset_id: str, index: int) -> str:
    return f"{KEY_PREFIX}:{jobset_id}:result:{index}"


def cancel_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{jobset_id}:cancelled"


def sub_job_cancel_key(jobset_id: str, index: int) -> str:
    return f"{KEY_PREFIX}:{jobset_id}:cancelled:{index}"


def primitive_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{jobset_id}:primitive"


def runs_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{jobset_id}:runs"


def started_field(index: int) -> str:
    return f"started:{index}"


def ended_field(index: int) -> str:
    return f"ended:{index}"


# kombu's Redis transport: a delivered, unacknowledged message lives in UNACKED_KEY (tag ->
# [message, exchange, routing key]) and UNACKED_INDEX_KEY (tag -> delivery time); a sweep
# puts back in the queue every tag older than the visibility timeout.  Live workers renew
# the score of what they hold (their lease).  Queues with priorities are extra lists
# named queue + PRIORITY_SEP + step.
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


def queue_lists(queue: str) -> list[str]:
    """Every Redis list that holds messages of ``queue``, one per priority step."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


def worker_key(hostname: str) -> str:
    return f"{WORKER_KEY_PREFIX}{hostname}"


def glob_escape(text: str) -> str:
    """``text`` with Redis glob characters escaped, for SCAN and PSUBSCRIBE patterns."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


@dataclass(frozen=True)
class Dispatch:
    """Where a set's sub-jobs are published: most to ``queue``, some elsewhere, at a priority.

    Kept in the set's record, so a sub-job published again (lost-sub-job recovery) goes
    where it went the first time.
    """

    queue: str = DEFAULT_QUEUE
    elsewhere: Mapping[int, str] = field(default_factory=dict)
    priority: str = "normal"

    @classmethod
    def from_routes(cls, routes: Mapping[int, str], *, queue: str, priority: str) -> Dispatch:
        """From each sub-job's queue; the commonest one is stored once."""
        if routes:
            queue = Counter(routes.values()).most_common(1)[0][0]
        return cls(queue, {i: q for i, q in routes.items() if q != queue}, priority)

    def queue_of(self, index: int) -> str:
        return self.elsewhere.get(index, self.queue)

    @property
    def queues(self) -> set[str]:
        return {self.queue, *self.elsewhere.values()}

    @property
    def broker_priority(self) -> int | None:
        return PRIORITIES[self.priority]


def task_id(jobset_id: str, index: int) -> str:
    """The Celery task id of sub-job ``index``: derived, so any process can find it."""
    return f"{jobset_id}-{index}"


@dataclass(frozen=True)
class SubJobRef:
    """What a sub-job message carries: short, no payload, no secret (Flower shows it)."""

    jobset_id: str
    index: int
    experiments: int
    version: int = PROTOCOL_VERSION
    # The producer's qiskit, qiskit-aer and project versions: a worker whose versions
    # would give other results refuses the sub-job (see jobset.compat).
    versions: tuple[tuple[str, str], ...] = ()
    # Opt-in result cache: the digest of (circuits, options, seed, shots) and how long a
    # result stays reusable; empty / 0 when the set does not use the cache.
    cache_digest: str = ""
    cache_ttl_s: int = 0

    def to_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "jobset_id": self.jobset_id,
            "index": self.index,
            "experiments": self.experiments,
            "version": self.version,
        }
        if self.versions:
            kwargs["versions"] = dict(self.versions)
        if self.cache_digest:
            kwargs["cache_digest"] = self.cache_digest
            kwargs["cache_ttl_s"] = self.cache_ttl_s
        return kwargs

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> SubJobRef:
        return cls(
            jobset_id=str(kwargs["jobset_id"]),
            index=int(kwargs["index"]),
            experiments=int(kwargs["experiments"]),
            version=int(kwargs.get("version", PROTOCOL_VERSION)),
            versions=tuple(sorted((str(k), str(v)) for k, v in kwargs.get("versions", {}).items())),
            cache_digest=str(kwargs.get("cache_digest", "")),
            cache_ttl_s=int(kwargs.get("cache_ttl_s", 0)),
        )
