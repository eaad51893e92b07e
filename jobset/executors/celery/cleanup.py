"""Removing what cannot be read: records of another key, expired entries, forced deletes.

A set is normally deleted through its verified record (``AerJobSet.delete``), which names
every key it owns.  A record that fails verification (written by another deployment's
key, or altered) cannot be trusted to name anything, so these functions go by the set id
alone: every ``jobset:{id}:*`` key, the Celery metadata of its derived task ids
(``{id}-{index}``), its index entry, and its messages still queued.  The id is checked to
be a canonical UUID before any key or pattern is built from it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...errors import DecodeError, InvalidInputError, JobSetNotFoundError, SecurityError
from ...protocol import (
    INDEX_KEY,
    KEY_PREFIX,
    check_jobset_id,
    glob_escape,
    keys_ending_pattern,
    set_keys_pattern,
)
from . import registry
from .recovery import known_queues, purge_queued
from .store import SignedStore

UNVERIFIABLE = "written by another deployment's key (or altered)"
EXPIRED = "expired"
NOT_AN_ID = "not a job set id"


@dataclass(frozen=True)
class Removed:
    """One entry :func:`prune` removed: the id (or index member) and why."""

    job_id: str
    reason: str
    keys: int


def discard(redis: Any, broker: Any, jobset_id: str, *, meta_key_of: Any, batch: int = 1000) -> int:
    """Remove every key of ``jobset_id`` without reading its record; how many keys went.

    ``meta_key_of(task_id)`` is the result backend's key for a task id.  Queued messages
    of the set are dropped from every known queue (a worker would refuse them anyway).
    """
    check_jobset_id(jobset_id)
    meta = meta_key_of(f"{jobset_id}-")
    meta = meta.decode() if isinstance(meta, bytes) else str(meta)
    patterns = [set_keys_pattern(jobset_id), glob_escape(meta) + "*"]
    keys = [k for pattern in patterns for k in redis.scan_iter(match=pattern, count=1000)]
    pipe = redis.pipeline(transaction=False)
    for start in range(0, len(keys), batch):
        pipe.delete(*keys[start : start + batch])
    pipe.zrem(INDEX_KEY, jobset_id)
    pipe.execute()
    purge_queued(broker, known_queues(redis), [jobset_id])
    return len(keys)


def _record_ids(redis: Any) -> Iterable[str]:
    """Ids of every record key, indexed or not (anyone who can write to Redis can add one)."""
    suffix = ":record"
    for key in redis.scan_iter(match=keys_ending_pattern(suffix), count=1000):
        text = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
        middle = text[len(KEY_PREFIX) + 1 : -len(suffix)]
        try:
            yield check_jobset_id(middle)
        except InvalidInputError:
            continue


def prune(
    store: SignedStore, broker: Any, *, meta_key_of: Any, dry_run: bool = False
) -> list[Removed]:
    """Drop index entries that are not set ids or whose record expired, and every set whose
    record fails verification with this key; what was (or, dry, would be) removed."""
    redis = store.client
    removed: list[Removed] = []
    cutoff = time.time() - store.ttl_s
    members = redis.zrange(INDEX_KEY, 0, -1, withscores=True)
    candidates: dict[str, None] = {}
    for member, score in members:
        text = member.decode(errors="replace") if isinstance(member, bytes) else str(member)
        try:
            candidates[check_jobset_id(text)] = None
        except InvalidInputError:
            removed.append(Removed(text, NOT_AN_ID, 0))
            if not dry_run:
                redis.zrem(INDEX_KEY, member)
            continue
        if score < cutoff:
            removed.append(Removed(text, EXPIRED, 0))
            candidates.pop(text)
            if not dry_run:
                redis.zrem(INDEX_KEY, member)
    for jobset_id in _record_ids(redis):
        candidates.setdefault(jobset_id, None)
    for jobset_id in candidates:
        reason = _unreadable(store, jobset_id)
        if reason is None:
            continue
        keys = 0
        if not dry_run:
            keys = discard(redis, broker, jobset_id, meta_key_of=meta_key_of)
        removed.append(Removed(jobset_id, reason, keys))
    return removed


def _unreadable(store: SignedStore, jobset_id: str) -> str | None:
    """Why the record of ``jobset_id`` cannot be used; None when it reads."""
    try:
        registry.load(store, jobset_id)
    except JobSetNotFoundError:
        return EXPIRED
    except (SecurityError, DecodeError):
        return UNVERIFIABLE
    return None
