"""Reliability on the producer's side: reaching Redis, time limits, lost and rerun sub-jobs.

Telling a lost sub-job from a queued one: Celery reports an id it does not know as
PENDING, so a sub-job whose message Redis lost (a restart without persistence, a purged
queue) reads QUEUED forever.  A sub-job that is not final is *somewhere* while it can
still run: a worker holds it (kombu's ``unacked`` hash, until the ack: as many entries as
worker slots), or its message waits in a queue list.  Whether it waits in a list is known
without reading the lists: the set's pending bitmap (:mod:`jobset.tally`) has its bit set
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
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import compat, evidence, tally
from .compat import version_mismatch
from .connect import execute_replicated, redis_client
from .errors import (
    BrokerUnavailableError,
    ConfigurationError,
    EvictionPolicyWarning,
    JobSetStateError,
)
from .plan import SubBatch
from .protocol import (
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
from .publish import BulkPublisher, publish_chunk, queue_for
from .settings import Settings, redact_url
from .simulate import portable_backend
from .status import FINAL

if TYPE_CHECKING:
    from .celery_executor import CeleryExecutor
    from .celery_run import CeleryRun

# A sub-job in neither place must stay so this long to count as lost (a worker takes a
# message off its list and records it as unacked in two steps, milliseconds apart).
LOST_CONFIRM_S = 1.0

_LRANGE_CHUNK = 1000
_REPUBLISH_CHUNK = 1000
# Every size-class queue a producer publishes to; owner queues are recorded in Redis.
QUEUES = BASE_QUEUES


def _task_id(raw: Any) -> str | None:
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
        tid = _task_id(raw)
        if tid in wanted:
            found.add(tid)
    return found


# Removes, atomically, every message of a list that contains one of ARGV (a set id, or
# task ids in quotes): producers push and workers pop meanwhile, so the list is rewritten
# in one step.  Redis serves nothing else while it runs: about 0.1 s for 20 000 messages.
_PURGE = """
local removed = 0
for _, key in ipairs(KEYS) do
  local items = redis.call('LRANGE', key, 0, -1)
  local keep = {}
  for _, item in ipairs(items) do
    local hit = false
    for _, needle in ipairs(ARGV) do
      if string.find(item, needle, 1, true) then hit = true break end
    end
    if hit then removed = removed + 1 else keep[#keep + 1] = item end
  end
  if #keep < #items then
    redis.call('DEL', key)
    for i = 1, #keep, 4000 do
      redis.call('RPUSH', key, unpack(keep, i, math.min(i + 3999, #keep)))
    end
  end
end
return removed
"""


def purge_queued(broker: Any, queues: Iterable[str], needles: Sequence[str]) -> int:
    """Drop the queued messages that name any of ``needles`` from ``queues``; how many.

    A cancelled set's messages would otherwise wait in the queues, and every worker would
    pop them one by one only to skip them, while other sets queue behind.
    """
    keys = [name for queue in queues for name in queue_lists(queue)]
    if not keys or not needles:
        return 0
    return int(broker.eval(_PURGE, len(keys), *keys, *needles))


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


def _present(run: CeleryRun, candidates: Sequence[int], queues: Sequence[str]) -> set[int]:
    """Those of ``candidates`` (sub-jobs not final) held by a worker or waiting in a list."""
    broker, jobset_id = run.executor.broker, run.jobset_id
    ids = {run.task_ids[i]: i for i in candidates}
    held = {ids[t] for t in held_task_ids(broker, jobset_id, set(ids))}
    bitmap = tally.read_pending(run.executor.redis, jobset_id)
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


def find_lost(run: CeleryRun, *, confirm_s: float = LOST_CONFIRM_S) -> list[int]:
    """Sub-jobs of ``run`` that are not final, not queued and held by no worker.

    Reads the set's states and pending bitmap, the workers' unacked entries and the
    lengths of the set's queue lists (see the module doc); a queue's messages only where
    a list is shorter than what should wait in it, or for a set without a bitmap.  Only
    the queues the set was published to count (its record's dispatch); a set rebuilt
    without one counts every queue.
    """
    queues = sorted(run.dispatch.queues) if run.dispatch else known_queues(run.executor.redis)

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


def check_reachable(settings: Settings) -> None:
    """Ping the broker and the result backend once each, bounded by the connect timeout.

    redis-py 8 retries a refused connection with back-off by default, and kombu retries a
    publish: an unreachable Redis would take tens of seconds to surface.  One ping without
    retries says it at once, with the URL (password redacted) and the cause.
    """
    urls = [(settings.broker_url, "broker"), (settings.backend_url, "result backend")]
    if settings.broker_url == settings.backend_url:
        urls = [(settings.broker_url, "broker (and result backend)")]
    for url, what in urls:
        client = redis_client(
            url, settings, socket_timeout=settings.connect_timeout_s, retry=Retry(NoBackoff(), 0)
        )
        try:
            client.ping()
        except redis.AuthenticationError as e:
            raise ConfigurationError(
                f"the {what} at {redact_url(url)} refused the credentials: {e}"
            ) from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            raise BrokerUnavailableError(
                f"cannot reach the {what} at {redact_url(url)} within "
                f"{settings.connect_timeout_s} s: {e}"
            ) from None
        finally:
            client.close()


def warn_if_evicting(client: Any, url: str, *, stacklevel: int = 4) -> None:
    """Warn when Redis may evict keys: a result evicted reads as a failed sub-job then."""
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.RedisError:  # CONFIG refused (an ACL, a managed Redis): nothing to say
        return
    policy = reply.get("maxmemory-policy") if isinstance(reply, dict) else None
    if isinstance(policy, bytes):
        policy = policy.decode(errors="replace")
    if policy and policy != "noeviction":
        warnings.warn(
            f"Redis at {redact_url(url)} has maxmemory-policy {policy!r}: under memory "
            "pressure it may evict payloads and results, and their sub-jobs then fail; "
            "set maxmemory-policy noeviction (config/redis.conf does)",
            EvictionPolicyWarning,
            stacklevel=stacklevel,
        )


def version_skew(heartbeats: Iterable[Mapping[str, Any]]) -> str | None:
    """Why no live worker could run this producer's sub-jobs; None if one can (or none is up).

    ``heartbeats`` are the live workers' records (:meth:`CeleryExecutor.heartbeats`).
    """
    mine = dict(compat.producer_versions())
    seen: list[str] = []
    for record in heartbeats:
        versions = record.get("versions")
        if not isinstance(versions, dict):
            versions = {}
        # A heartbeat is input from whoever can write to Redis: strings only.
        versions = {k: v for k, v in versions.items() if isinstance(k, str) and isinstance(v, str)}
        problem = version_mismatch(mine, versions)
        if problem is None:
            return None
        seen.append(f"{str(record.get('hostname', '?'))[:255]}: {problem}")
    if not seen:
        return None
    return (
        f"no live worker runs this producer's versions, so its sub-jobs will be refused "
        f"until one does ({'; '.join(seen[:5])})"
    )


def republish(
    executor: CeleryExecutor,
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
    client, store = executor.redis, executor.store
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
            executor.app.backend.get_key_for_task(task_id(jobset_id, i)), result_key(jobset_id, i)
        )
        pipe.hdel(runs_key(jobset_id), started_field(i), ended_field(i))
        tally.move(pipe, jobset_id, i, tally.RESET, ttl_s=store.ttl_s)
    execute_replicated(pipe, executor.settings)
    if backend is None:
        backend = store.get(Kind.BACKEND, jobset_id)
    if dispatch is None:
        dispatch = Dispatch(queue_for(backend))
    with executor.app.producer_or_acquire() as producer:
        publisher = BulkPublisher(executor.app, producer, timeout_s=timeout_s)
        sub_jobs = [(i, len(batches[i].experiments)) for i in indices]
        for start in range(0, len(sub_jobs), _REPUBLISH_CHUNK):
            publish_chunk(
                publisher,
                client,
                executor.broker,
                jobset_id,
                sub_jobs[start : start + _REPUBLISH_CHUNK],
                dispatch=dispatch,
                ttl_s=store.ttl_s,
            )
