"""Reliability on the producer's side: reaching Redis, time limits, lost and rerun sub-jobs.

Telling a lost sub-job from a queued one: Celery reports an id it does not know as
PENDING, so a sub-job whose message Redis lost (a restart without persistence, a purged
queue) reads QUEUED forever.  A sub-job that is not final is *somewhere* while it can
still run: a worker holds it (kombu's ``unacked`` hash, until the ack: as many entries as
worker slots), or its message waits in a queue list.  Whether it waits in a list is known
without reading the lists: the set's pending bitmap (:mod:`.tally`) has its bit set
from its publish until it ends, and the lists the set's pending sub-jobs wait in must be
at least as long as the number of them in each.  Only a list shorter than that (a purged
queue) is read, and only a set without a bitmap (Redis lost it, or an older producer
published the set) reads its queues in full, as before.  So a set waiting behind a
backlog of any length costs O(its size) to check.  One that is in no place twice, a moment
apart, is lost.  The moment apart matters: a worker takes a message off the list and
records it as unacked in two steps.

What the counting cannot see: a list that lost some of this set's messages and holds as
many of other sets' instead.  Redis loses whole keys or whole databases (a restart, an
eviction, a ``DEL`` of a queue), which the bitmap's absence or a short list shows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from ...errors import (
    JobSetStateError,
)
from ...plan import SubBatch
from ...protocol import (
    BASE_QUEUES,
    DEFAULT_QUEUE,
    OWNER_QUEUES_KEY,
    UNACKED_KEY,
    Dispatch,
    Kind,
    backend_key,
    batch_key,
    ended_field,
    queue_list,
    queue_lists,
    result_key,
    runs_key,
    started_field,
    task_id,
)
from ...status import FINAL
from ..aer import portable_backend
from ..base import SubJobState
from . import evidence, scripts, tally
from .clients import Clients
from .connect import execute_replicated
from .publish import BulkPublisher, publish_chunk, queue_for


class RunView(Protocol):
    """What recovery reads of a set's run (:class:`~.run.CeleryRun`)."""

    clients: Clients
    jobset_id: str
    task_ids: tuple[str, ...]
    dispatch: Dispatch | None

    def states(self, indices: Sequence[int] | None = None) -> list[SubJobState]: ...


# A sub-job in neither place must stay so this long to count as lost (a worker takes a
# message off its list and records it as unacked in two steps, milliseconds apart).
LOST_CONFIRM_S = 1.0

_LRANGE_CHUNK = 1000
_REPUBLISH_CHUNK = 1000
# Every size-class queue a producer publishes to; owner queues are recorded in Redis.
QUEUES = BASE_QUEUES


def task_id_of(raw: Any) -> str | None:
    try:
        message = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if isinstance(message, list) and message:  # an unacked entry: [message, exchange, key]
        message = message[0]
    if not isinstance(message, dict):
        return None
    headers = message.get("headers")
    found = headers.get("id") if isinstance(headers, dict) else None
    return found if isinstance(found, str) else None


def _matching(raws: Iterable[Any], needle: bytes, wanted: set[str]) -> set[str]:
    found = set()
    for raw in raws:
        # Most messages belong to other sets: skip them before parsing any JSON.
        if needle not in (raw if isinstance(raw, bytes) else str(raw).encode()):
            continue
        tid = task_id_of(raw)
        if tid in wanted:
            found.add(tid)
    return found


def purge_queued(broker: Any, queues: Iterable[str], needles: Sequence[str]) -> int:
    """Drop the queued messages that name any of ``needles`` from ``queues``; how many.

    A cancelled set's messages would otherwise wait in the queues, and every worker would
    pop them one by one only to skip them, while other sets queue behind.
    """
    keys = [name for queue in queues for name in queue_lists(queue)]
    if not keys or not needles:
        return 0
    return int(scripts.run(broker, "purge.lua", keys, needles))


def known_queues(client: Any) -> list[str]:
    """Every queue a producer may publish to: the size classes and the recorded owners'."""
    owners = [
        q.decode() if isinstance(q, bytes) else str(q)
        for q in client.zrange(OWNER_QUEUES_KEY, 0, -1)
    ]
    return [*QUEUES, *owners]


def present_task_ids(
    broker: Any, jobset_id: str, task_ids: Iterable[str], queues: Iterable[str] = QUEUES
) -> set[str]:
    """Those of ``task_ids`` whose message is queued or held by a worker, on ``broker``.

    Reads every message of ``queues``: the lost check does only where counting cannot
    tell (see the module doc).
    """
    wanted = set(task_ids)
    return held_task_ids(broker, jobset_id, wanted) | _scan_lists(
        broker, jobset_id, wanted, [name for queue in queues for name in queue_lists(queue)]
    )


def held_task_ids(broker: Any, jobset_id: str, wanted: set[str]) -> set[str]:
    """Those of ``wanted`` that a worker holds (delivered, not acknowledged yet)."""
    return _matching(broker.hvals(UNACKED_KEY), jobset_id.encode(), wanted)


def _scan_lists(broker: Any, jobset_id: str, wanted: set[str], lists: Iterable[str]) -> set[str]:
    needle = jobset_id.encode()
    found: set[str] = set()
    for name in lists:
        start = 0
        while True:
            chunk = broker.lrange(name, start, start + _LRANGE_CHUNK - 1)
            found |= _matching(chunk, needle, wanted)
            if len(chunk) < _LRANGE_CHUNK:
                break
            start += _LRANGE_CHUNK
    return found


def _present(run: RunView, candidates: Sequence[int], queues: Sequence[str]) -> set[int]:
    """Those of ``candidates`` (sub-jobs not final) held by a worker or waiting in a list."""
    broker, jobset_id = run.clients.broker, run.jobset_id
    ids = {run.task_ids[i]: i for i in candidates}
    held = {ids[t] for t in held_task_ids(broker, jobset_id, set(ids))}
    bitmap = tally.read_pending(run.clients.redis, jobset_id)
    if bitmap is None:  # not tracked: read the queues themselves
        lists = [name for queue in queues for name in queue_lists(queue)]
        return held | {ids[t] for t in _scan_lists(broker, jobset_id, set(ids), lists)}
    dispatch = run.dispatch or Dispatch(DEFAULT_QUEUE)
    waiting: dict[str, list[int]] = {}
    for i in candidates:
        if i not in held and tally.is_pending(bitmap, i):
            waiting.setdefault(
                queue_list(dispatch.queue_of(i), dispatch.broker_priority), []
            ).append(i)
    pipe = broker.pipeline(transaction=False)
    for name in waiting:
        pipe.llen(name)
    lengths = dict(zip(waiting, pipe.execute(), strict=True))
    present = set(held)
    short: list[int] = []
    for name, indices in waiting.items():
        if lengths[name] >= len(indices):
            present.update(indices)
        else:
            short.extend(indices)
    if short:  # a list lost messages: find which (wherever a redelivery may have put them)
        wanted = {run.task_ids[i] for i in short}
        lists = [name for queue in queues for name in queue_lists(queue)]
        present |= {ids[t] for t in _scan_lists(broker, jobset_id, wanted, lists)}
    return present


def find_lost(run: RunView, *, confirm_s: float = LOST_CONFIRM_S) -> list[int]:
    """Sub-jobs of ``run`` that are not final, not queued and held by no worker.

    Reads the set's states and pending bitmap, the workers' unacked entries and the
    lengths of the set's queue lists (see the module doc); a queue's messages only where
    a list is shorter than what should wait in it, or for a set without a bitmap.  Only
    the queues the set was published to count (its record's dispatch); a set rebuilt
    without one counts every queue.
    """
    queues = sorted(run.dispatch.queues) if run.dispatch else known_queues(run.clients.redis)

    def missing(candidates: Sequence[int]) -> list[int]:
        present = _present(run, candidates, queues)
        gone = [i for i in candidates if i not in present]
        # Read after the presence: one that finished meanwhile left the broker for good.
        states = run.states(gone) if gone else []
        return [i for i, s in zip(gone, states, strict=True) if s.status not in FINAL]

    states = run.states()
    candidates = missing([i for i, s in enumerate(states) if s.status not in FINAL])
    if candidates:
        time.sleep(confirm_s)
        candidates = missing(candidates)
    return candidates


def republish(
    clients: Clients,
    jobset_id: str,
    indices: Sequence[int],
    batches: Sequence[SubBatch],
    *,
    backend: Any,
    timeout_s: float | None,
    dispatch: Dispatch | None = None,
) -> None:
    """Publish sub-jobs ``indices`` again, as new: their old state, result and run counts go.

    Each goes where ``dispatch`` sent it the first time (default: the backend's class
    queue, no priority).

    A payload Redis no longer has (lost with the rest) is stored again from ``backend``
    and ``batches`` when they carry it; a set rebuilt from its record has no circuits, so
    then only the process that submitted the set can publish it again.
    """
    client, store = clients.redis, clients.store
    bkey = backend_key(jobset_id)
    keys = [bkey, *(batch_key(jobset_id, i) for i in indices)]
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.exists(k)
    have_backend, *have_batches = pipe.execute()
    missing = [i for i, have in zip(indices, have_batches, strict=True) if not have]
    if (not have_backend and backend is None) or any(not batches[i].circuits for i in missing):
        raise JobSetStateError(
            f"job set {jobset_id}: Redis no longer holds the payloads of sub-jobs "
            f"{missing[:10]}, and this process does not have their circuits; resubmit "
            "from the process that submitted the set"
        )
    pipe = client.pipeline(transaction=False)
    if not have_backend:
        store.put(Kind.BACKEND, jobset_id, portable_backend(backend), pipe=pipe)
    for i in missing:
        store.put(Kind.BATCH, (jobset_id, i), batches[i], pipe=pipe)
    evidence.forget_ends(pipe, jobset_id, indices)  # they have not ended any more
    for i in indices:
        pipe.delete(
            clients.app.backend.get_key_for_task(task_id(jobset_id, i)), result_key(jobset_id, i)
        )
        pipe.hdel(runs_key(jobset_id), started_field(i), ended_field(i))
        tally.move(pipe, jobset_id, i, tally.RESET, ttl_s=store.ttl_s)
    execute_replicated(pipe, clients.settings)
    if backend is None:
        backend = store.get(Kind.BACKEND, jobset_id)
    if dispatch is None:
        dispatch = Dispatch(queue_for(backend))
    with clients.app.producer_or_acquire() as producer:
        publisher = BulkPublisher(clients.app, producer, timeout_s=timeout_s)
        sub_jobs = [(i, len(batches[i].experiments)) for i in indices]
        for start in range(0, len(sub_jobs), _REPUBLISH_CHUNK):
            publish_chunk(
                publisher,
                client,
                clients.broker,
                jobset_id,
                sub_jobs[start : start + _REPUBLISH_CHUNK],
                dispatch=dispatch,
                ttl_s=store.ttl_s,
            )
