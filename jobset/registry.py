"""Job-set records in Redis, so a set outlives the process that submitted it.

A record holds what rebuilding the set needs besides the payloads: the plan without its
circuits (the sub-batch layout, experiment names, shot chunks, the seed), the sub-jobs'
task ids in order, the creation time and the owner's tags.  It is a signed envelope like
every payload, written with the same TTL as results, and listed in a sorted set of set
ids.  The index is unsigned (anyone who can write to Redis can add, remove or rescore an
entry), so it is only where listing starts: a bounded SCAN of record keys finds sets whose
entry was removed, ordering and pruning go by the signed record (its ``created_at``, its
existence), never by the index's scores, and one set that cannot be read is skipped.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from qiskit.providers import JobStatus

from .errors import (
    DecodeError,
    InvalidInputError,
    JobSetError,
    JobSetNotFoundError,
    SecurityError,
)
from .plan import Plan
from .protocol import (
    INDEX_KEY,
    KEY_PREFIX,
    PROTOCOL_VERSION,
    Dispatch,
    Kind,
    check_jobset_id,
    glob_escape,
    record_key,
)
from .store import SignedStore
from .view import ListingRow, listing_html, listing_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSetRecord:
    """What is known of a submitted set without its circuits."""

    jobset_id: str
    created_at: float
    tags: tuple[str, ...]
    backend_name: str
    task_ids: tuple[str, ...]
    plan: Plan
    version: int = PROTOCOL_VERSION
    timeout_s: float | None = None
    # Where the sub-jobs were published (None: the backend's class queue, no priority).
    dispatch: Dispatch | None = None
    # The set's estimated work (jobset.cost units; None: not estimated), which the scaler
    # reads to tell how long a queue's backlog would take to drain.
    work: float | None = None

    @property
    def experiments(self) -> int:
        return len(self.plan.experiments)


def skeleton(plan: Plan) -> Plan:
    """The plan without circuits or binds: enough to merge, status and look up by name."""
    batches = tuple(
        dataclasses.replace(b, circuits=(), parameter_binds=None) for b in plan.sub_batches
    )
    return dataclasses.replace(plan, sub_batches=batches)


def make_record(
    jobset_id: str,
    backend: Any,
    plan: Plan,
    task_ids: Sequence[str],
    tags: Sequence[str],
    *,
    timeout_s: float | None = None,
    dispatch: Dispatch | None = None,
    work: float | None = None,
) -> JobSetRecord:
    return JobSetRecord(
        jobset_id=jobset_id,
        created_at=time.time(),
        tags=tuple(tags),
        backend_name=str(getattr(backend, "name", type(backend).__name__)),
        task_ids=tuple(task_ids),
        plan=skeleton(plan),
        timeout_s=timeout_s,
        dispatch=dispatch,
        work=work,
    )


def write(store: SignedStore, pipe: Any, record: JobSetRecord) -> None:
    """Queue the record's writes on a Redis pipeline (the caller executes it)."""
    ttl_s = store.ttl_s
    store.put(Kind.RECORD, record.jobset_id, record, pipe=pipe)
    pipe.zadd(INDEX_KEY, {record.jobset_id: record.created_at})
    pipe.expire(INDEX_KEY, ttl_s)


def load(store: SignedStore, jobset_id: str) -> JobSetRecord:
    """The verified record of ``jobset_id``.

    Raises :class:`JobSetNotFoundError` when there is none (or the id cannot be one), and
    :class:`SecurityError` when the stored record fails verification or names another set
    (a record copied from another key fails the first check already).
    """
    try:
        check_jobset_id(jobset_id)
    except InvalidInputError:
        raise JobSetNotFoundError(jobset_id) from None
    try:
        record = store.find(Kind.RECORD, jobset_id, expect=JobSetRecord)
    except SecurityError:
        raise SecurityError(foreign_message(jobset_id)) from None
    if record is None:
        raise JobSetNotFoundError(jobset_id)
    if record.jobset_id != jobset_id:
        raise SecurityError(f"the record stored for {jobset_id} names set {record.jobset_id}")
    return record


def foreign_message(jobset_id: str) -> str:
    """What a record that fails verification is, most likely, and how to remove it."""
    return (
        f"job set {jobset_id} was written by another deployment's key (another "
        "JOBSET_SECRET_KEY), or altered: its record fails verification with this key; "
        f"`jobset delete --force {jobset_id}` removes it"
    )


# The SCAN that finds records the index lost examines at most this many keys.
SCAN_COUNT = 1000
MAX_SCANNED_KEYS = 2_000_000
_RECORD_SUFFIX = ":record"


def _set_id(raw: object) -> str | None:
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    try:
        return check_jobset_id(text)
    except InvalidInputError:
        return None


def list_ids(client: Any) -> list[str]:
    """Ids of the sets that may have a record: those a bounded SCAN of record keys finds
    outside the index (an entry removed from the index hides nothing), then the index's
    entries in its order, oldest first.  The order is a hint only (the index is unsigned):
    listings sort by the signed records; a listing cut to its newest reads the sets found
    outside the index last.  Entries that are not set ids are skipped; entries whose
    record is gone are pruned."""
    indexed = [i for i in map(_set_id, client.zrange(INDEX_KEY, 0, -1)) if i is not None]
    found = dict.fromkeys(indexed)
    cursor, scanned = 0, 0
    pattern = f"{KEY_PREFIX}:*{_RECORD_SUFFIX}"
    while scanned < MAX_SCANNED_KEYS:
        cursor, keys = client.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)
        scanned += SCAN_COUNT
        for key in keys:
            text = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
            found.setdefault(_set_id(text[len(KEY_PREFIX) + 1 : -len(_RECORD_SUFFIX)]) or "")
        if not cursor:
            break
    else:
        logger.warning("listing stopped its scan for records after %d keys", scanned)
    found.pop("", None)
    _prune(client, indexed)
    listed = set(indexed)
    return [i for i in found if i not in listed] + indexed


def _prune(client: Any, indexed: Sequence[str]) -> None:
    """Drop the index entries whose record is gone (expired or deleted)."""
    pipe = client.pipeline(transaction=False)
    for jobset_id in indexed:
        pipe.exists(record_key(jobset_id))
    gone = [i for i, there in zip(indexed, pipe.execute(), strict=True) if not there]
    if gone:
        client.zrem(INDEX_KEY, *gone)


def delete(redis: Any, record: JobSetRecord, celery_meta_keys: Sequence[Any]) -> None:
    """Remove every key of the set (``jobset:{id}:*``), its Celery metadata and index entry."""
    pattern = f"{KEY_PREFIX}:{glob_escape(check_jobset_id(record.jobset_id))}:*"
    keys = [*redis.scan_iter(match=pattern, count=1000), *celery_meta_keys]
    pipe = redis.pipeline(transaction=False)
    for start in range(0, len(keys), 1000):
        pipe.delete(*keys[start : start + 1000])
    pipe.zrem(INDEX_KEY, record.jobset_id)
    pipe.execute()


@dataclass(frozen=True)
class JobSetInfo:
    """One line of ``AerJobSet.list_sets``: a known set and its aggregate status."""

    job_id: str
    created_at: float
    tags: tuple[str, ...]
    backend_name: str
    sub_jobs: int
    experiments: int
    status: JobStatus


class JobSetListing(list[JobSetInfo]):
    """A list of :class:`JobSetInfo` that shows itself as a table (Jupyter, IPython)."""

    def rows(self) -> list[ListingRow]:
        return [
            ListingRow(
                job_id=i.job_id,
                created_at=i.created_at,
                status=i.status.name,
                sub_jobs=i.sub_jobs,
                experiments=i.experiments,
                backend_name=i.backend_name,
                tags=i.tags,
            )
            for i in self
        ]

    def _repr_html_(self) -> str:
        return listing_html(self.rows())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(listing_text(self.rows()))


def list_sets(
    target: Any,
    *,
    on_skip: Callable[[str, JobSetError], None] | None = None,
    newest_first: bool = False,
    limit: int | None = None,
) -> JobSetListing:
    """Every set ``target`` (an executor that stores sets) knows of, oldest first.

    Oldest first (newest first with ``newest_first``) by the signed records' creation
    times; ``limit`` reads at most that many records, taken in the index's order.  A set
    that cannot be read (a record that fails verification, any Redis error on one of its
    keys) is skipped:
    ``on_skip(job_id, error)`` is called for each, and without it one warning is logged
    for all of them.
    """
    infos, skipped = JobSetListing(), []
    ids = target.stored_ids()
    if newest_first:
        ids.reverse()
    if limit is not None:
        ids = ids[: max(0, limit)]  # only these records are read
    for job_id in ids:
        try:
            stored = target.stored_set(job_id)
            record = stored.record
            info = JobSetInfo(
                job_id=job_id,
                created_at=record.created_at,
                tags=record.tags,
                backend_name=record.backend_name,
                sub_jobs=len(record.task_ids),
                experiments=record.experiments,
                status=stored.submission.aggregate(),
            )
        except JobSetNotFoundError:
            continue
        except (JobSetError, redis.RedisError) as e:
            skipped.append(job_id)
            if on_skip is not None:
                on_skip(job_id, e if isinstance(e, JobSetError) else DecodeError(str(e)))
            continue
        infos.append(info)
    # Which records a limit reads follows the index; their order is the signed times'.
    infos.sort(key=lambda info: info.created_at, reverse=newest_first)
    if skipped and on_skip is None:
        logger.warning(
            "skipped %d job set(s) that could not be read or verified (written by another "
            "deployment's key, or altered): %s",
            len(skipped),
            ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""),
        )
    return infos
