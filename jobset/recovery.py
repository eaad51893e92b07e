"""Reliability on the producer's side: reaching Redis, time limits, lost and rerun sub-jobs.

Telling a lost sub-job from a queued one, by reading the broker's own keys: Celery
reports an id it does not know as PENDING, so a sub-job whose message Redis lost
(a restart without persistence, a purged queue) reads QUEUED forever.  A sub-job that is
not final is *somewhere* while it can still run: its message waits in a queue list, or a
worker holds it (kombu's ``unacked`` hash, until the ack).  One that is in neither place,
twice a moment apart, is lost.  The moment apart matters: a worker takes a message off the
list and records it as unacked in two steps.
"""

from __future__ import annotations

import functools
import json
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .compat import runtime_versions, version_mismatch
from .errors import (
    BrokerUnavailableError,
    ConfigurationError,
    EvictionPolicyWarning,
    JobSetStateError,
)
from .execute import portable_backend
from .plan import SubBatch
from .protocol import (
    BASE_QUEUES,
    DEFAULT_QUEUE,
    GPU_QUEUE,
    OWNER_QUEUES_KEY,
    RUN_SUB_JOB_TASK,
    UNACKED_KEY,
    WORKER_KEY_PREFIX,
    Dispatch,
    Kind,
    SubJobRef,
    backend_key,
    batch_key,
    ended_field,
    queue_lists,
    result_key,
    runs_key,
    started_field,
    task_id,
)
from .settings import Settings, redact_url
from .status import FINAL

if TYPE_CHECKING:
    from .executors import CeleryExecutor, CeleryRun

# A sub-job in neither place must stay so this long to count as lost (a worker takes a
# message off its list and records it as unacked in two steps, milliseconds apart).
LOST_CONFIRM_S = 1.0
# The hard limit follows the soft one by this much, or 5 % of the limit if that is more.
# Aer holds the GIL while it simulates, so the soft limit cannot interrupt a simulation:
# the hard limit (SIGKILL of the pool child) is what stops it (see workers.request).
HARD_LIMIT_GRACE_S = 1.0

_LRANGE_CHUNK = 1000
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
    """Those of ``task_ids`` whose message is queued or held by a worker, on ``broker``."""
    wanted = set(task_ids)
    needle = jobset_id.encode()
    found = _matching(broker.hvals(UNACKED_KEY), needle, wanted)
    for queue in queues:
        for name in queue_lists(queue):
            start = 0
            while True:
                chunk = broker.lrange(name, start, start + _LRANGE_CHUNK - 1)
                found |= _matching(chunk, needle, wanted)
                if len(chunk) < _LRANGE_CHUNK:
                    break
                start += _LRANGE_CHUNK
    return found


def find_lost(run: CeleryRun, *, confirm_s: float = LOST_CONFIRM_S) -> list[int]:
    """Sub-jobs of ``run`` that are not final, not queued and held by no worker."""
    broker = run.executor.broker
    queues = known_queues(run.executor.redis)

    def missing(candidates: Sequence[int]) -> list[int]:
        present = present_task_ids(
            broker, run.jobset_id, (run.task_ids[i] for i in candidates), queues
        )
        gone = [i for i in candidates if run.task_ids[i] not in present]
        # Read after the scan: one that finished meanwhile left the broker for good.
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
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=settings.connect_timeout_s,
            socket_timeout=settings.connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
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


@functools.cache
def producer_versions() -> tuple[tuple[str, str], ...]:
    return tuple(sorted(runtime_versions().items()))


def version_skew(client: Any) -> str | None:
    """Why no live worker could run this producer's sub-jobs; None if one can (or none is up)."""
    mine = dict(producer_versions())
    seen: list[str] = []
    for key in client.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=500):
        raw = client.get(key)
        try:
            record = json.loads(raw) if raw else None
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        versions = record.get("versions")
        if not isinstance(versions, dict):
            versions = {}
        # A heartbeat is input from whoever can write to Redis: strings only.
        versions = {k: v for k, v in versions.items() if isinstance(k, str) and isinstance(v, str)}
        problem = version_mismatch(mine, versions)
        if problem is None:
            return None
        seen.append(f"{record.get('hostname', key)}: {problem}")
    if not seen:
        return None
    return (
        f"no live worker runs this producer's versions, so its sub-jobs will be refused "
        f"until one does ({'; '.join(seen[:5])})"
    )


def queue_for(backend: Any) -> str:
    return GPU_QUEUE if backend.options.get("device", "CPU") == "GPU" else DEFAULT_QUEUE


def time_limits(timeout_s: float | None) -> dict[str, float]:
    """Celery's soft and hard limits for a set's ``timeout_s`` (nothing when it is None)."""
    if timeout_s is None:
        return {}
    return {
        "soft_time_limit": timeout_s,
        "time_limit": timeout_s + max(HARD_LIMIT_GRACE_S, 0.05 * timeout_s),
    }


def send_sub_job(
    executor: CeleryExecutor,
    producer: Any,
    jobset_id: str,
    batch: SubBatch,
    *,
    queue: str,
    timeout_s: float | None,
    priority: int | None = None,
) -> None:
    """Publish sub-job ``batch.index``'s message: its ids, the producer's versions, limits.

    ``priority`` is the broker's message priority (:class:`jobset.protocol.Dispatch`);
    None publishes without one.
    """
    ref = SubJobRef(
        jobset_id,
        batch.index,
        len(batch.experiments),
        versions=producer_versions(),
    )
    kwargs = ref.to_kwargs()
    executor.app.send_task(
        RUN_SUB_JOB_TASK,
        kwargs=kwargs,
        # What Flower shows; Celery's own saferepr of it costs more than the rest.
        argsrepr="()",
        kwargsrepr=repr(kwargs),
        task_id=task_id(jobset_id, batch.index),
        queue=queue,
        producer=producer,
        **time_limits(timeout_s),
        **({} if priority is None else {"priority": priority}),
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
    for i in indices:
        pipe.delete(
            executor.app.backend.get_key_for_task(task_id(jobset_id, i)), result_key(jobset_id, i)
        )
        pipe.hdel(runs_key(jobset_id), started_field(i), ended_field(i))
    pipe.execute()
    if backend is None:
        backend = store.get(Kind.BACKEND, jobset_id)
    if dispatch is None:
        dispatch = Dispatch(queue_for(backend))
    with executor.app.producer_or_acquire() as producer, producer.batch(max_size=4096):
        for i in indices:
            send_sub_job(
                executor,
                producer,
                jobset_id,
                batches[i],
                queue=dispatch.queue_of(i),
                priority=dispatch.broker_priority,
                timeout_s=timeout_s,
            )
