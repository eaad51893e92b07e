"""Per-set tallies of sub-job states: what makes ``status()`` cost the same for any size.

Workers record each sub-job's progress in two small Redis hashes per set:
``jobset:{id}:states`` (index -> one letter) and ``jobset:{id}:counts`` (letter -> how
many).  One Lua script (``lua/transition.lua``) moves a sub-job from its old
letter to its new one and adjusts both counts, atomically and idempotently, so a
redelivered sub-job is counted once.  A producer then reads the aggregate status and the
progress from ``counts`` alone: O(1) however many sub-jobs the set has.  Celery's own
record of each sub-job stays the truth for ``status(k)`` and failure messages; the tally
is written after it (a success in the same script as Celery's record, ``end.lua``; the
rest from Celery's ``task_postrun``, ``task_revoked`` and time-limit hooks), so whatever
the tally calls final, Celery does too.  Each move is announced on a
channel named after the counts key, which a producer's wait subscribes to.

Two more keys follow the same moves, for the reads that must not cost O(queue) or
O(set) per poll: ``jobset:{id}:pending``, a bitmap with bit k set while sub-job k was
published and is not final (set at publish and when a sub-job goes back to its queue,
cleared when it ends), which lets the lost-sub-job check know what should be in a queue
without reading the queues (:mod:`.recovery`); and ``jobset:{id}:ended``, a list of
the indices in the order they ended, which ``as_completed()`` reads from where it left off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from qiskit.providers import JobStatus

from ...errors import JobSetError
from ...protocol import (
    SubJobRef,
    check_index,
    counts_key,
    ended_key,
    pending_key,
    states_key,
)
from . import scripts

logger = logging.getLogger(__name__)

RUNNING = "R"
DONE = "D"
FAILED = "F"
CANCELLED = "C"
_LETTER_STATUS = {
    RUNNING: JobStatus.RUNNING,
    DONE: JobStatus.DONE,
    FAILED: JobStatus.ERROR,
    CANCELLED: JobStatus.CANCELLED,
}
# Back to "not started": a retry waiting for its turn, or a sub-job published again.
RESET = ""

FINAL_LETTERS = frozenset({DONE, FAILED, CANCELLED})

# Indices of the ended log read per call.
ENDED_CHUNK = 1000


def move(
    client: Any, jobset_id: str, index: int, letter: str, *, ttl_s: int, start: bool = False
) -> None:
    """Record that sub-job ``index`` of ``jobset_id`` is now ``letter`` (see module doc)."""
    keys = (
        states_key(jobset_id),
        counts_key(jobset_id),
        pending_key(jobset_id),
        ended_key(jobset_id),
    )
    args = (str(check_index(index)), letter, ttl_s, "start" if start else "")
    scripts.run(client, "move.lua", keys, args)


def mark_pending(pipe: Any, jobset_id: str, indices: Sequence[int], *, ttl_s: int) -> None:
    """Set the pending bits of ``indices`` (sub-jobs about to be published), on ``pipe``."""
    if not indices:
        return
    key = pending_key(jobset_id)
    pipe.execute_command("BITFIELD", key, *_set_bits(sorted({check_index(i) for i in indices})))
    pipe.expire(key, ttl_s)


_WORD = 32
_ONES = (1 << _WORD) - 1


def _set_bits(indices: Sequence[int]) -> list[Any]:
    """BITFIELD operations that set the bits of ``indices`` (sorted): a whole aligned
    32-bit word in one operation, so a chunk of consecutive sub-jobs takes a few."""
    ops: list[Any] = []
    pos, count = 0, len(indices)
    while pos < count:
        start = end = indices[pos]
        while pos + 1 < count and indices[pos + 1] == end + 1:
            pos, end = pos + 1, end + 1
        pos += 1
        bit = start
        while bit <= end:
            if bit % _WORD == 0 and bit + _WORD - 1 <= end:
                ops += ("SET", f"u{_WORD}", f"#{bit // _WORD}", _ONES)
                bit += _WORD
            else:
                ops += ("SET", "u1", bit, 1)
                bit += 1
    return ops


def read_pending(client: Any, jobset_id: str) -> bytes | None:
    """The set's pending bitmap (:func:`is_pending` reads it); None when Redis has none."""
    raw = client.get(pending_key(jobset_id))
    return raw if isinstance(raw, bytes) else None


def is_pending(bitmap: bytes, index: int) -> bool:
    """Bit ``index`` of a bitmap as Redis numbers bits: the first byte's highest bit is 0."""
    byte = index >> 3
    return byte < len(bitmap) and bool(bitmap[byte] & (0x80 >> (index & 7)))


def read_ended(client: Any, jobset_id: str, start: int, *, total: int) -> tuple[list[int], int]:
    """Indices that ended, read from position ``start`` of the set's log (at most
    :data:`ENDED_CHUNK`), and the position after them.  Entries are input from whoever
    can write to Redis: one that is not an index below ``total`` is skipped."""
    raw = client.lrange(ended_key(jobset_id), start, start + ENDED_CHUNK - 1)
    found = []
    for item in raw:
        try:
            index = int(item)
        except (TypeError, ValueError):
            continue
        if 0 <= index < total:
            found.append(index)
    return found, start + len(raw)


def ref_of(task_id: object, kwargs: object) -> SubJobRef | None:
    """The sub-job a message named, if it was a valid one (None: nothing to tally)."""
    try:
        ref = SubJobRef.from_kwargs(kwargs)  # type: ignore[arg-type]
    except JobSetError:
        return None
    return ref if task_id == ref.task_id else None


def move_quietly(
    client: Any, ref: SubJobRef, letter: str, *, ttl_s: int, start: bool = False
) -> None:
    """:func:`move`, where a failure must not fail the sub-job: it is logged instead.

    A producer that misses a final letter still sees the sub-job final through Celery's
    states, which its waits read from time to time (see ``jobset.executors.base``).
    """
    try:
        move(client, ref.jobset_id, ref.index, letter, ttl_s=ttl_s, start=start)
    except Exception:
        logger.warning("could not tally sub-job %d of %s", ref.index, ref.jobset_id, exc_info=True)


def counts(raw: Mapping[Any, Any]) -> dict[JobStatus, int]:
    """``HGETALL counts`` as a count per ``JobStatus`` (not-started ones not included).

    Whoever can write to Redis can write this hash too: a field that is not a known letter
    with an integer count is ignored rather than failing the read.
    """
    out: dict[JobStatus, int] = {}
    for letter, value in raw.items():
        name = letter.decode(errors="replace") if isinstance(letter, bytes) else str(letter)
        status = _LETTER_STATUS.get(name)
        try:
            count = int(value)
        except (TypeError, ValueError):
            continue
        if status is not None:
            out[status] = out.get(status, 0) + max(0, count)
    return out


def progress(tallied: Mapping[JobStatus, int], total: int, *, cancelled: bool) -> dict[str, int]:
    """Sub-jobs per state name, as ``AerJobSet.progress()`` reports them."""
    out = {s.name: n for s, n in tallied.items() if n}
    rest = total - sum(tallied.values())
    if rest > 0:
        waiting = JobStatus.CANCELLED if cancelled else JobStatus.QUEUED
        out[waiting.name] = out.get(waiting.name, 0) + rest
    return out
