"""Per-set tallies of sub-job states: what makes ``status()`` cost the same for any size.

Workers record each sub-job's progress in two small Redis hashes per set:
``jobset:{id}:states`` (index -> one letter) and ``jobset:{id}:counts`` (letter -> how
many).  One Lua script moves a sub-job from its old letter to its new one and adjusts both
counts, atomically and idempotently, so a redelivered sub-job is counted once.  A
producer then reads the aggregate status and the progress from ``counts`` alone: O(1)
however many sub-jobs the set has.  Celery's own record of each sub-job stays the truth
for ``status(k)`` and failure messages; the tally is written after it (from Celery's
``task_postrun``, ``task_revoked`` and time-limit hooks), so whatever the tally calls
final, Celery does too.  Each move is announced on a channel named after the counts key,
which a producer's wait subscribes to.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from qiskit.providers import JobStatus

from .errors import JobSetError
from .protocol import KEY_PREFIX, SubJobRef, check_index, check_jobset_id

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

# KEYS: states, counts.  ARGV: index, new letter (RESET: none), TTL, "start" or "".
# A start moves only a sub-job with no letter yet, so a duplicate delivery of a finished
# sub-job does not make the set read RUNNING again.
_TRANSITION = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local new = ARGV[2]
if old == new or (old and ARGV[4] == 'start') then return 0 end
if old then redis.call('HINCRBY', KEYS[2], old, -1) end
if new == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], new)
  redis.call('HINCRBY', KEYS[2], new, 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', KEYS[2], new)
return 1
"""


def states_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:states"


def counts_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:counts"


def move(
    client: Any, jobset_id: str, index: int, letter: str, *, ttl_s: int, start: bool = False
) -> None:
    """Record that sub-job ``index`` of ``jobset_id`` is now ``letter`` (see module doc)."""
    keys = (states_key(jobset_id), counts_key(jobset_id))
    client.eval(
        _TRANSITION, 2, *keys, str(check_index(index)), letter, ttl_s, "start" if start else ""
    )


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
    states, which its waits read from time to time (see ``jobset.executors``).
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
