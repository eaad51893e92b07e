"""The Redis steps around one sub-job's simulation, each one round trip.

Before: :func:`begin` runs the Celery executor's ``begin.lua``, which checks both cancel marks,
writes Celery's STARTED record (the task runs with ``track_started=False``, so Celery
does not write it again in two round trips of its own), counts the start against the
cap on worker losses, moves the tally to RUNNING and reads
the signed batch (and the signed backend, when this pool child does not hold the set's
backend yet), all at once.  After a success: :func:`end` runs ``end.lua``, which writes
the signed result, records the end of the run, writes Celery's SUCCESS record (so
Celery's tracer does not write it again in two round trips of its own: see
``workers.tasks``), the signed end record, the tally's move to done and the timeline's
entry.  After a failure the result is written in the same pipeline that records the end
(:func:`end_on`), and Celery's own record and the final tally move follow from Celery's
hooks (``workers.tasks``).

Each pool child keeps the backends of the last few sets it ran (:class:`WarmBackends`),
verified once when first read: a set's backend never changes once published, so the
next sub-jobs of the set neither read nor unpickle it again, and Aer runs on the same
simulator object.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from celery import states

from jobset import protocol
from jobset.errors import DecodeError
from jobset.executors.celery import evidence, scripts, tally
from jobset.protocol import (
    Kind,
    SubJobRef,
    cancel_key,
    ended_field,
    record_key,
    runs_key,
    signed_key,
    started_field,
    sub_job_cancel_key,
)
from jobset.settings import Settings

# Sets whose backend a pool child keeps (a worker serves a few sets at a time).
WARM_SETS = 4


@dataclass(frozen=True)
class Begun:
    """What :func:`begin` found: a set not stored here, cancelled, or the earlier lost runs
    and the payload."""

    stored: bool
    cancelled: bool = False
    lost: int = 0
    batch_blob: bytes | None = None
    backend_blob: bytes | None = None


@dataclass(frozen=True)
class CeleryRecord:
    """Celery's record of a task in its result backend: its key, its JSON and its TTL."""

    key: str
    value: str
    ttl_s: int


def celery_record(task: Any, state: str, result: Any) -> CeleryRecord:
    """The record Celery's Redis backend stores for ``task`` in ``state`` with ``result``
    (what ``backend.store_result`` would write, field for field)."""
    backend, request = task.backend, task.request
    meta = backend._get_result_meta(result=result, state=state, traceback=None, request=request)
    meta["task_id"] = request.id
    key = backend.get_key_for_task(request.id)
    expires = backend.expires
    return CeleryRecord(
        key.decode() if isinstance(key, bytes) else str(key),
        backend.encode(meta),
        int(expires.total_seconds() if hasattr(expires, "total_seconds") else expires or 0),
    )


def started_record(task: Any) -> CeleryRecord:
    """The record Celery's tracer stores when a tracked task starts (``{pid, hostname}``)."""
    result = {"pid": os.getpid(), "hostname": task.request.hostname}
    return celery_record(task, states.STARTED, result)


def begin(
    client: Any,
    ref: SubJobRef,
    settings: Settings,
    started: CeleryRecord,
    *,
    read_backend: bool,
) -> Begun:
    """Check that the set is stored here and the cancel marks, write Celery's STARTED
    record, count the start, tally RUNNING, read the payload: one round trip."""
    j, k = ref.jobset_id, ref.index
    keys = (
        cancel_key(j),
        sub_job_cancel_key(j, k),
        runs_key(j),
        protocol.states_key(j),
        protocol.counts_key(j),
        protocol.pending_key(j),
        protocol.ended_key(j),
        signed_key(Kind.BATCH, (j, k)),
        signed_key(Kind.BACKEND, j),
        started.key,
        record_key(j),
    )
    args = (
        str(k),
        settings.result_ttl_s,
        started_field(k),
        ended_field(k),
        settings.max_worker_losses,
        "1" if read_backend else "",
        started.value,
        started.ttl_s,
    )
    reply = scripts.run(client, "begin.lua", keys, args)
    if not isinstance(reply, list) or not reply:
        raise DecodeError(f"unexpected reply to the start of sub-job {k} of {j}")
    if int(reply[0]) == 2:
        return Begun(stored=False)
    if int(reply[0]):
        return Begun(stored=True, cancelled=True)
    _, lost, batch_blob, backend_blob = reply
    return Begun(True, False, int(lost), batch_blob, backend_blob)


@dataclass
class EndRecord:
    """Whether this run's end is recorded (with its result) or still to be."""

    written: bool = False


def end_on(pipe: Any, ref: SubJobRef) -> None:
    """Record, on ``pipe``, that this run of the sub-job ended (see ``begin.lua``)."""
    pipe.hincrby(runs_key(ref.jobset_id), ended_field(ref.index), 1)


def end(
    client: Any,
    ref: SubJobRef,
    settings: Settings,
    *,
    result_blob: bytes | None,
    record: CeleryRecord,
    timeline_entry: str | None,
) -> None:
    """Record a success: the signed result (None: written already), the end of the run,
    Celery's SUCCESS ``record``, the signed end record, the tally's move to done and the
    timeline's entry, in one round trip (``end.lua``)."""
    j, k = ref.jobset_id, ref.index
    keys = (
        signed_key(Kind.RESULT, (j, k)),
        runs_key(j),
        record.key,
        protocol.ends_key(j),
        protocol.states_key(j),
        protocol.counts_key(j),
        protocol.pending_key(j),
        protocol.ended_key(j),
        protocol.timeline_key(j),
    )
    args = (
        result_blob or b"",
        settings.result_ttl_s,
        ended_field(k),
        record.value,
        record.ttl_s,
        str(k),
        evidence.end_token(settings.secret_key, j, k, tally.DONE),
        timeline_entry or "",
    )
    scripts.run(client, "end.lua", keys, args)


class WarmBackends:
    """The decoded backends of the last :data:`WARM_SETS` sets this process ran."""

    def __init__(self, size: int = WARM_SETS) -> None:
        self._size = size
        self._held: OrderedDict[str, Any] = OrderedDict()

    def get(self, jobset_id: str) -> Any | None:
        backend = self._held.get(jobset_id)
        if backend is not None:
            self._held.move_to_end(jobset_id)
        return backend

    def keep(self, jobset_id: str, backend: Any) -> None:
        self._held[jobset_id] = backend
        self._held.move_to_end(jobset_id)
        while len(self._held) > self._size:
            self._held.popitem(last=False)
