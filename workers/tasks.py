"""The task that runs one sub-batch of a job set."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import redis
from celery import Task, states
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from celery.signals import task_postrun, task_revoked
from qiskit.result import Result

from jobset.codec import batch_digest
from jobset.cost import human_bytes
from jobset.errors import (
    RedeliveryLimitError,
    ResultTooLargeError,
    SecurityError,
    SimulationFailedError,
    SubJobTimeoutError,
    VersionMismatchError,
    timeout_message,
)
from jobset.executors.aer import run_sub_batch
from jobset.executors.celery import connect, evidence, tally
from jobset.executors.celery.store import SignedStore
from jobset.executors.versions import version_mismatch
from jobset.protocol import (
    RUN_SUB_JOB_TASK,
    Kind,
    SubJobRef,
    batch_key,
    cancel_key,
    ended_field,
    record_key,
    runs_key,
    sub_job_cancel_key,
)
from jobset.settings import ENV_MAX_RESULT_BYTES, ENV_MAX_WORKER_LOSSES, Settings

from . import steps, timeline
from . import tracing as trace_hooks
from .app import app
from .lifecycle import runtime

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A connection error that outlasts redis-py's own retries: store the result again (the
# simulation is not redone) with growing pauses, for about a minute in all.
STORE_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
TRANSIENT_ERRORS = (redis.ConnectionError, redis.TimeoutError)

# The backends this pool child already verified and decoded, by set.
_warm_backends = steps.WarmBackends()


class SubJobTask(Task):
    """A task whose messages are checked whole before a request is made of them, and whose
    requests turn time limits into clear errors (see ``workers.request``)."""

    Request = "workers.request:SubJobRequest"
    Strategy = "workers.request:sub_job_strategy"


def retry_io(action: Callable[[], T], what: str) -> T:
    """Run ``action``; on a connection error try again after each pause, then give up."""
    for delay in STORE_RETRY_DELAYS_S:
        try:
            return action()
        except TRANSIENT_ERRORS as e:
            logger.warning("%s failed (%s); retrying in %.1f s", what, e, delay)
            time.sleep(delay)
    return action()


def _stored_and_cancelled(client: Any, ref: SubJobRef) -> tuple[bool, bool]:
    """Whether the set has a record or this sub-job's batch, and whether it was cancelled,
    in one round trip.  A message for a set that was never stored (an invented id) writes
    nothing: no tally, no run count, no proof, each of which would live for days."""
    pipe = client.pipeline(transaction=False)
    pipe.exists(record_key(ref.jobset_id), batch_key(ref.jobset_id, ref.index))
    pipe.exists(cancel_key(ref.jobset_id), sub_job_cancel_key(ref.jobset_id, ref.index))
    stored, cancelled = pipe.execute()
    return bool(stored), bool(cancelled)


def _record_end(client: Any, ref: SubJobRef) -> None:
    try:
        client.hincrby(runs_key(ref.jobset_id), ended_field(ref.index), 1)
    except TRANSIENT_ERRORS:  # a missing end only counts against the cap, conservatively
        logger.warning("could not record the end of sub-job %d of %s", ref.index, ref.jobset_id)


@app.task(
    name=RUN_SUB_JOB_TASK,
    bind=True,
    base=SubJobTask,
    # Reading payloads or storing results can meet a broker that restarts: run again
    # later, with exponential back-off and jitter.  Nothing else is retried: a
    # simulation error is deterministic and would fail the same way.
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=5,
    # Its STARTED record is written with the other first steps (workers.steps.begin).
    track_started=False,
)
def run_sub_job(self: Task, **kwargs: Any) -> dict[str, Any]:
    """Run sub-job ``index`` of set ``jobset_id`` and store its signed Result in Redis.

    Checks the set's durable cancel mark first (a revoke broadcast is lost when no worker
    is online), then the producer's versions, then how often this sub-job already took
    its worker down (``JOBSET_MAX_WORKER_LOSSES``); every Redis step before the
    simulation is one round trip (:func:`workers.steps.begin`).  Storing under the
    sub-job's own key makes a second run of the same sub-job (a redelivery) overwrite,
    never add: the merge counts it once.
    """
    ref = SubJobRef.from_kwargs(kwargs)  # SecurityError for anything but the schema
    if self.request.id != ref.task_id:
        raise SecurityError(
            f"refused a sub-job message: its task id is not the one of sub-job {ref.index} "
            f"of {ref.jobset_id}"
        )
    settings: Settings = self.app.conf.jobset_settings
    client = self.app.backend.client
    mismatch = version_mismatch(dict(ref.versions), runtime.versions)
    if mismatch is not None:
        stored, cancelled = retry_io(
            lambda: _stored_and_cancelled(client, ref), f"reading the cancel marks of {ref.task_id}"
        )
        _require_stored(self, ref, stored)
        if cancelled:
            _skip_cancelled(self, client, ref, settings)
        raise VersionMismatchError(
            f"refused: this worker would give other results than the producer expects "
            f"({mismatch}); run workers with the producer's versions"
        )
    # Reads before the simulation ride out a lost Redis here: Celery's own retry would need
    # the broker to publish the retry, and a failed publish drops the message.
    warm = _warm_backends.get(ref.jobset_id)
    started = steps.started_record(self)
    with trace_hooks.phase("jobset.payload_read"):
        begun = retry_io(
            lambda: steps.begin(client, ref, settings, started, read_backend=warm is None),
            f"starting {ref.task_id}",
        )
    _require_stored(self, ref, begun.stored)
    if begun.cancelled:  # the durable mark: a revoke broadcast is lost with no worker online
        _skip_cancelled(self, client, ref, settings)
    lost = begun.lost
    if lost >= settings.max_worker_losses:
        raise RedeliveryLimitError(
            f"sub-job {ref.index} of {ref.jobset_id} was started {lost + 1} times and its "
            f"worker died {lost} times (killed, out of memory, or crashed); not trying again "
            f"({ENV_MAX_WORKER_LOSSES}={settings.max_worker_losses})"
        )
    if lost:
        trace_hooks.event("redelivered", worker_losses=lost)
        logger.warning(
            "sub-job %d of %s runs again: its worker died %d time(s)",
            ref.index,
            ref.jobset_id,
            lost,
        )
    end = steps.EndRecord()
    try:
        store = SignedStore(client, settings)
        done = _run(ref, settings, store, begun, warm, end)
        done.summary["worker"] = self.request.hostname  # where routing sent it (Flower shows it)
        _succeed(self, ref, settings, store, done, end)
        return done.summary
    except SoftTimeLimitExceeded as e:
        soft_s = (self.request.timelimit or (None, None))[1]
        raise SubJobTimeoutError(timeout_message(ref.index, ref.jobset_id, soft_s)) from e
    finally:
        if not end.written:
            _record_end(client, ref)


def _require_stored(task: Task, ref: SubJobRef, stored: bool) -> None:
    """Refuse a message for a set that was never stored (an invented id): it writes nothing,
    no tally, no run count, no proof, each of which would live for days."""
    if not stored:
        raise SecurityError(f"refused: no set {ref.jobset_id} is stored in this Redis")
    task.request.jobset_stored = True  # from here on its outcome is tallied


def _skip_cancelled(task: Task, client: Any, ref: SubJobRef, settings: Settings) -> NoReturn:
    logger.info("sub-job %d of %s skipped: cancelled", ref.index, ref.jobset_id)
    task.backend.mark_as_revoked(task.request.id, "job set cancelled", request=task.request)
    tally_move(client, ref, tally.CANCELLED, settings)  # after Celery's own record
    raise Ignore()


# Celery's state of a sub-job once its task returned -> its letter in the set's tally.
_FINAL_LETTERS = {
    "SUCCESS": tally.DONE,
    "FAILURE": tally.FAILED,
    "REVOKED": tally.CANCELLED,
    "RETRY": tally.RESET,
}


def tally_move(
    client: Any, ref: SubJobRef, letter: str, settings: Settings, *, start: bool = False
) -> None:
    # With the signed end record of a final letter (jobset.executors.celery.evidence):
    # what a status that reads final is checked against.
    evidence.record_move(client, settings, ref, letter, start=start)


@task_postrun.connect(sender=run_sub_job)
def _tally_outcome(
    task_id: str | None = None,
    task: Any = None,
    kwargs: Any = None,
    state: str | None = None,
    **_: Any,
) -> None:
    """After Celery stored the outcome (so the tally never runs ahead of Celery); only for
    a set that is stored here (see ``_require_stored``), and not for a success, which
    the task tallied with Celery's record (``_succeed``)."""
    request = getattr(task, "request", None)
    if not getattr(request, "jobset_stored", False) or getattr(request, "jobset_ended", False):
        return
    letter = _FINAL_LETTERS.get(state or "")
    ref = tally.ref_of(task_id, kwargs)
    if letter is not None and ref is not None:
        tally_move(app.backend.client, ref, letter, app.conf.jobset_settings)


@task_revoked.connect
def _tally_revoked(request: Any = None, **_: Any) -> None:
    """In the main process: a sub-job revoked on arrival, or killed while it ran."""
    if getattr(request, "task", None) != RUN_SUB_JOB_TASK:
        return
    ref = tally.ref_of(getattr(request, "id", None), getattr(request, "kwargs", None))
    if ref is not None:
        tally_move(app.backend.client, ref, tally.CANCELLED, app.conf.jobset_settings)


@dataclass
class Succeeded:
    """A sub-job's signed result, still to be stored, and the summary its task returns."""

    key: str
    blob: bytes
    summary: dict[str, Any]


def _succeed(
    task: Task,
    ref: SubJobRef,
    settings: Settings,
    store: SignedStore,
    done: Succeeded,
    end: steps.EndRecord,
) -> None:
    """Store the result and everything that says the sub-job succeeded, Celery's SUCCESS
    record included, in one round trip (:func:`workers.steps.end`).

    On a replicated Redis the result is written first and waited for
    (:meth:`SignedStore.write_replicated`): a replica holds it before anything announces
    it.  Celery's tracer would then write the same record again (a read and a write):
    this request is told its result is taken care of, which only that write reads.
    """
    record = steps.celery_record(task, states.SUCCESS, done.summary)
    entry = timeline.run_entry_of(task, ref, states.SUCCESS)
    replicated = connect.replicated(settings)
    where = f"storing the result of sub-job {ref.index} of {ref.jobset_id}"
    with trace_hooks.phase("jobset.store_result", result_bytes=len(done.blob)):
        if replicated:
            retry_io(lambda: store.write_replicated(done.key, done.blob), where)
        retry_io(
            lambda: steps.end(
                store.client,
                ref,
                settings,
                result_blob=None if replicated else done.blob,
                record=record,
                timeline_entry=entry,
            ),
            where,
        )
    end.written = True
    task.request.ignore_result = True  # Celery's record is written (see the docstring)
    task.request.jobset_ended = True  # and so are the tally and the timeline


def _from_cache(ref: SubJobRef, store: SignedStore, digest: str) -> Succeeded | None:
    """Reuse the cached result of equal inputs as this sub-job's result, if there is one."""
    result = store.find(Kind.CACHE, digest, expect=Result)
    if result is None:
        return None
    key, blob = store.encode(Kind.RESULT, (ref.jobset_id, ref.index), result)
    logger.info("sub-job %d of %s: result reused from the cache", ref.index, ref.jobset_id)
    shots = sum(int(getattr(e, "shots", 0) or 0) for e in result.results)
    summary = {"experiments": len(result.results), "shots": shots, "success": True, "cached": True}
    return Succeeded(key, blob, summary)


def _run(
    ref: SubJobRef,
    settings: Settings,
    store: SignedStore,
    begun: steps.Begun,
    backend: Any,
    end: steps.EndRecord,
) -> Succeeded:
    if backend is None:  # verified once per set in this process (steps.WarmBackends)
        backend = store.decode(Kind.BACKEND, ref.jobset_id, begun.backend_blob)
        _warm_backends.keep(ref.jobset_id, backend)
    signed = store.decode(Kind.BATCH, (ref.jobset_id, ref.index), begun.batch_blob)
    batch = signed.batch
    if batch.index != ref.index or len(batch.experiments) != ref.experiments:
        raise SecurityError(
            f"refused: the message names sub-job {ref.index} with {ref.experiments} "
            f"experiment(s), its signed batch is sub-job {batch.index} with "
            f"{len(batch.experiments)}"
        )
    # The cache key is computed here, from what was verified, never taken from a message.
    digest = ""
    if signed.cache_ttl_s > 0:
        options = dict(backend.options.items())
        versions = tuple(sorted(runtime.versions.items()))
        digest = batch_digest(options, batch, versions, circuits_qpy=signed.circuits_qpy)
        cached = _from_cache(ref, store, digest)
        if cached is not None:
            return cached

    started = time.monotonic()
    logger.debug("sub-job %d of %s: simulating", ref.index, ref.jobset_id)
    with trace_hooks.phase("jobset.simulate", shots=batch.shots):
        result = run_sub_batch(backend, batch, threads=runtime.aer_threads)
    logger.info(
        "sub-job %d of %s simulated in %.2f s; storing its result",
        ref.index,
        ref.jobset_id,
        time.monotonic() - started,
    )

    rkey, blob = store.encode(Kind.RESULT, (ref.jobset_id, ref.index), result)
    if len(blob) > settings.max_result_bytes:
        raise ResultTooLargeError(
            f"the result of sub-job {ref.index} is {human_bytes(len(blob))} ({len(blob)} "
            f"bytes, signed), over {ENV_MAX_RESULT_BYTES}={settings.max_result_bytes} "
            f"({human_bytes(settings.max_result_bytes)}); split the set into smaller "
            "sub-jobs (max_job_size) or save less data per experiment"
        )
    if not result.success:
        # Stored for partial results, replicated before Celery's record says it failed
        # (see SignedStore.write_replicated); the end of this run in the same round trip.
        with trace_hooks.phase("jobset.store_result", result_bytes=len(blob)):
            retry_io(
                lambda: store.write_replicated(rkey, blob, also=lambda p: steps.end_on(p, ref)),
                f"storing the result of sub-job {ref.index} of {ref.jobset_id}",
            )
        end.written = True
        failed = [
            f"experiment {batch.experiments[i]}: {exp.status}"
            for i, exp in enumerate(result.results)
            if not exp.success
        ]
        raise SimulationFailedError("; ".join(failed) or str(result.status))
    if digest:
        retry_io(
            lambda: store.put(Kind.CACHE, digest, result, ttl_s=max(1, signed.cache_ttl_s)),
            f"caching the result of sub-job {ref.index} of {ref.jobset_id}",
        )
    # workers.metrics counts experiments and shots from this summary (Flower shows it too).
    summary = {
        "experiments": len(result.results),
        "shots": batch.shots * len(result.results),
        "success": True,
    }
    return Succeeded(rkey, blob, summary)
