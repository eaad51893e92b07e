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

import logging
from collections.abc import Sequence
from typing import Any

from ...errors import (
    InvalidInputError,
    JobSetNotFoundError,
    SecurityError,
)
from ...protocol import (
    INDEX_KEY,
    KEY_PREFIX,
    Kind,
    check_jobset_id,
    keys_ending_pattern,
    record_key,
    set_keys_pattern,
)
from ..stored import JobSetRecord
from .store import SignedStore

logger = logging.getLogger(__name__)


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
    pattern = keys_ending_pattern(_RECORD_SUFFIX)
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
    pattern = set_keys_pattern(record.jobset_id)
    keys = [*redis.scan_iter(match=pattern, count=1000), *celery_meta_keys]
    pipe = redis.pipeline(transaction=False)
    for start in range(0, len(keys), 1000):
        pipe.delete(*keys[start : start + 1000])
    pipe.zrem(INDEX_KEY, record.jobset_id)
    pipe.execute()
