"""Pure: how many workers a queue wants, and which idle ones to drain.

A queue wants enough worker slots for what runs now plus what would drain its queued work
within ``target_drain_s``: ``running + ceil(queued_work_s / target_drain_s)`` slots (at
most one per queued sub-job), in workers of ``slots_per_worker``, between ``min_workers``
and ``max_workers``.  Workers the backend started that are not live yet count as coming,
so a slow start is not answered with more submissions.  With nothing queued, a worker
that ran nothing for ``idle_grace_s`` is drained (it finishes what it holds and exits),
while more than the wanted number remain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import ConfigurationError
from .backlog import QueueBacklog


@dataclass(frozen=True)
class ScalePolicy:
    """The bounds and the pace of scaling one queue."""

    min_workers: int = 0
    max_workers: int = 1
    slots_per_worker: int = 1
    target_drain_s: float = 60.0
    idle_grace_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_workers <= self.max_workers:
            raise ConfigurationError("need 0 <= --min <= --max")
        if self.slots_per_worker < 1 or self.target_drain_s <= 0 or self.idle_grace_s < 0:
            raise ConfigurationError(
                "slots per worker and the drain target must be positive, the grace not negative"
            )


@dataclass(frozen=True)
class ScaledWorker:
    """A live worker of the backend: its id there (a Slurm job, a container) and its load."""

    backend_id: str
    hostname: str
    active: int | None


@dataclass(frozen=True)
class Decision:
    """What one reconcile does: start ``add`` workers, drain ``drain`` (backend ids)."""

    wanted: int
    add: int
    drain: tuple[str, ...]
    reason: str


def wanted_workers(backlog: QueueBacklog, policy: ScalePolicy) -> int:
    slots = backlog.running
    if backlog.queued:
        slots += min(
            backlog.queued, max(1, math.ceil(backlog.queued_work_s / policy.target_drain_s))
        )
    workers = math.ceil(slots / policy.slots_per_worker)
    return max(policy.min_workers, min(policy.max_workers, workers))


def decide(
    backlog: QueueBacklog,
    live: Sequence[ScaledWorker],
    coming: int,
    policy: ScalePolicy,
    *,
    idle_for_s: Mapping[str, float],
) -> Decision:
    """One reconcile of one queue.  ``idle_for_s``: backend id -> how long it ran nothing."""
    wanted = wanted_workers(backlog, policy)
    have = len(live) + coming
    summary = (
        f"queued {backlog.queued} ({backlog.queued_work_s:.3g} s of work), running "
        f"{backlog.running}, workers {len(live)} live + {coming} starting, wanted {wanted}"
    )
    if have < wanted:
        return Decision(wanted, wanted - have, (), f"{summary}: add {wanted - have}")
    if backlog.queued or have <= wanted:
        return Decision(wanted, 0, (), summary)
    idle = sorted(
        (
            w
            for w in live
            if w.active == 0 and idle_for_s.get(w.backend_id, 0.0) >= policy.idle_grace_s
        ),
        key=lambda w: -idle_for_s.get(w.backend_id, 0.0),
    )
    drain = tuple(w.backend_id for w in idle[: have - wanted])
    if not drain:
        return Decision(wanted, 0, (), summary)
    return Decision(wanted, 0, drain, f"{summary}: drain {len(drain)} idle ({', '.join(drain)})")
