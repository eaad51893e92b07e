"""A set published to Celery, read back: states, tally, results, waits, cancel, reruns.

Every read is one pipelined round trip; a whole-set status reads the workers' tally
(:mod:`.tally`), not one key per sub-job.  The tally and Celery's records are
unsigned, so a final state read from them is believed only once the signed proofs of
:mod:`.evidence` confirm it, checked when the tally first says final.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, NoReturn

import redis
from qiskit.providers import JobStatus
from qiskit.result import Result

from ... import protocol
from ...deadline import Deadline, Pause, poll
from ...errors import JobSetTimeoutError, SubJobsLostError, timeout_message
from ...observe import timeline, tracing
from ...plan import SubBatch
from ...protocol import (
    DEFAULT_QUEUE,
    Dispatch,
    Kind,
    cancel_key,
    glob_escape,
    result_key,
    sub_job_cancel_key,
)
from ...status import FINAL, aggregate_counts, aggregate_status, celery_to_job_status
from ..base import Outage, SubJobState, Submission, not_final_error
from . import evidence, recovery, registry, tally
from .boundary import mapped_errors, maps_errors
from .clients import Clients

logger = logging.getLogger(__name__)

# Longest pause between status reads while subscribed: a safety net for a lost notice.
_NOTICE_WAIT_S = 1.0
# Least time between two status reads that notices woke, once notices come faster than
# the reads (the last wake found _DENSE_BURST or more): a set of small sub-jobs ends
# several every millisecond, and a read per end would take a core from the workers.  A
# set whose sub-jobs end one by one is read at each end, without delay.
_NOTICE_MIN_GAP_S = 0.05
_DENSE_BURST = 3
# A wait that sees no sub-job finish for this long checks whether any were lost, then
# waits twice as long before the next check, up to the maximum.
_LOST_CHECK_START_S = 10.0
_LOST_CHECK_MAX_S = 300.0
# A tally that has not moved for this long is checked against Celery's own states.
_TALLY_FALLBACK_S = 5.0
# A wait whose subscription broke subscribes again this long after, once Redis answers.
_RESUBSCRIBE_S = 5.0
# Results read per MGET.
_RESULT_CHUNK = 500
_SUCCEEDED = SubJobState(JobStatus.DONE)


def _hold_off(last_read: float, remaining: float | None) -> None:
    """Sleep out what is left of :data:`_NOTICE_MIN_GAP_S` since the last read (within
    ``remaining``), so notices that arrive meanwhile are coalesced into the next read."""
    gap = _NOTICE_MIN_GAP_S - (time.monotonic() - last_read)
    if remaining is not None:
        gap = min(gap, remaining)
    if gap > 0:
        time.sleep(gap)


def _failure(meta: dict[str, Any], index: int, jobset_id: str, timeout_s: Any) -> tuple[str, str]:
    """The error type and the message of a failed sub-job, from its Celery record."""
    result = meta.get("result")
    if isinstance(result, dict) and "exc_type" in result:
        message = result.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = " ".join(str(m) for m in message)
        error_type = str(result["exc_type"])
        if error_type == "TimeLimitExceeded":
            # The worker words it as SubJobTimeoutError too, but Celery's own store of the
            # hard limit can land after that one: word it the same here.
            soft_s = timeout_s if timeout_s is not None else message
            error_type, message = "SubJobTimeoutError", timeout_message(index, jobset_id, soft_s)
        return error_type, f"{error_type}: {message}"
    return "", str(result) if result else str(meta.get("status", ""))


class CeleryRun(Submission):
    """A set published to Celery; every read is one pipelined round trip.

    Its public methods raise the errors of :mod:`jobset.errors` only (:mod:`.boundary`);
    a Redis that is gone or does not answer fails each within the bound of
    :func:`~.connect.call_bound_s`, and a wait within :func:`~.connect.wait_bound_s`.
    """

    cancel_when_final = True

    def __init__(
        self,
        clients: Clients,
        jobset_id: str,
        task_ids: Sequence[str],
        *,
        timeout_s: float | None = None,
        dispatch: Dispatch | None = None,
    ):
        self.clients = clients
        self.jobset_id = jobset_id
        self.task_ids = tuple(task_ids)
        self.meta_keys = [clients.app.backend.get_key_for_task(t) for t in self.task_ids]
        self.timeout_s = timeout_s
        self.dispatch = dispatch
        self._cancelled = False
        self._progress: tuple[int, float, float] | None = None  # finals, since, check after
        self._tally_seen: tuple[dict[JobStatus, int], float] | None = None
        # The last final claim checked against the proofs, when, and what it was taken for.
        self._checked: tuple[object, float, JobStatus] | None = None

    @property
    @maps_errors
    def cancelled(self) -> bool:
        if not self._cancelled:
            self._cancelled = bool(self.clients.redis.exists(cancel_key(self.jobset_id)))
        return self._cancelled

    def _metas(self, indices: Sequence[int] | None) -> list[dict[str, Any]]:
        keys = self.meta_keys if indices is None else [self.meta_keys[i] for i in indices]
        pipe = self.clients.redis.pipeline(transaction=False)
        pipe.exists(cancel_key(self.jobset_id))
        pipe.mget(keys)
        set_cancelled, raw = pipe.execute()
        self._cancelled = self._cancelled or bool(set_cancelled)
        return [json.loads(r) if r else {"status": "PENDING"} for r in raw]

    @maps_errors
    def tallied(self) -> dict[JobStatus, int]:
        """The workers' tally of this set's sub-jobs (:mod:`.tally`): O(1) to read."""
        pipe = self.clients.redis.pipeline(transaction=False)
        pipe.exists(cancel_key(self.jobset_id))
        pipe.hgetall(protocol.counts_key(self.jobset_id))
        set_cancelled, raw = pipe.execute()
        self._cancelled = self._cancelled or bool(set_cancelled)
        return tally.counts(raw)

    @maps_errors
    def newly_final(self, pending: Collection[int], cursor: Any) -> tuple[list[int], Any]:
        """From the workers' log of ended sub-jobs (:mod:`.tally`), read on from where
        the last call stopped, and checked against Celery's records: each poll reads at
        most a chunk of the log and of states, however big the set.  Where the log cannot
        tell (a cancelled set's queued sub-jobs end by its mark; a tally that stalled may
        have missed one), a window of pending sub-jobs is read too, the next one each time.
        """
        position, window, sweeping = cursor if cursor is not None else (0, 0, False)
        total = len(self.task_ids)
        logged, position = tally.read_ended(
            self.clients.redis, self.jobset_id, position, total=total
        )
        candidates = dict.fromkeys(k for k in logged if k in pending)
        counted = self.tallied()
        swept: list[int] = []
        # A window that found some is followed by the next one at once (a set whose log
        # missed many, say one submitted before there was a log, is read a chunk a poll).
        if sweeping or self._cancelled or self._tally_stalled(counted):
            window = window if window < len(pending) else 0
            swept = list(itertools.islice(pending, window, window + _RESULT_CHUNK))
            candidates.update(dict.fromkeys(swept))
        indices = list(candidates)
        states = self.states(indices) if indices else []
        final = [k for k, s in zip(indices, states, strict=True) if s.status in FINAL]
        ended = set(final).intersection(swept)
        # The caller drops the ended ones from ``pending``: the next window starts after
        # the swept sub-jobs that stay.
        return final, (position, window + len(swept) - len(ended), bool(ended))

    @maps_errors
    def finished_count(self) -> int | None:
        counted = self.tallied()
        # A cancelled set's queued sub-jobs turn final by the mark, not the tally; a tally
        # that stalled may have missed one: read the states then.
        if self._cancelled or self._tally_stalled(counted):
            return None
        return sum(n for status, n in counted.items() if status in FINAL)

    @maps_errors
    def aggregate(self) -> JobStatus:
        """From the tally; from Celery's states when the tally has not moved for a while.

        A worker that died between Celery's record and the tally's would otherwise leave
        a final sub-job counted as running for good.
        """
        counted = self.tallied()
        status = aggregate_counts(counted, len(self.task_ids), cancelled=self._cancelled)
        if status in FINAL:
            return self._proven(status, frozenset(counted.items()))
        if not self._tally_stalled(counted):
            return status
        return self._claim_of(self.states())

    def _claim_of(self, states: Sequence[SubJobState]) -> JobStatus:
        """The aggregate of Celery's states, a final one only as far as the proofs go."""
        status = aggregate_status((s.status for s in states), cancelled=self._cancelled)
        seen = frozenset(Counter(s.status for s in states).items())
        return self._proven(status, ("states", seen)) if status in FINAL else status

    def _proven(self, claimed: JobStatus, seen: object) -> JobStatus:
        """``claimed`` (final) as the proofs of :mod:`.evidence` give it, read once
        per claim: a claim no proof backs reads RUNNING (QUEUED when no end is proven)
        and is checked again when it changes, or ``_TALLY_FALLBACK_S`` later."""
        now, seen = time.monotonic(), (claimed, seen)
        if self._checked is not None and self._checked[0] == seen:
            proven = self._checked[2]
            if proven in FINAL or now - self._checked[1] < _TALLY_FALLBACK_S:
                return proven
        status, ended = evidence.proven_status(
            self.clients.store, self.jobset_id, len(self.task_ids)
        )
        if status is None:
            status = JobStatus.RUNNING if ended else JobStatus.QUEUED
            logger.warning(
                "job set %s reads %s, but only %d of its %d sub-jobs have a signed proof of "
                "their end: taken as %s",
                self.jobset_id,
                claimed.name,
                ended,
                len(self.task_ids),
                status.name,
            )
        self._checked = (seen, now, status)
        return status

    @maps_errors
    def progress(self) -> dict[str, int]:
        counted = self.tallied()
        if self._tally_stalled(counted):
            return super().progress()
        return tally.progress(counted, len(self.task_ids), cancelled=self._cancelled)

    def _tally_stalled(self, counted: dict[JobStatus, int]) -> bool:
        """True when the tally has not changed for ``_TALLY_FALLBACK_S`` (then once again
        that long later, and so on)."""
        now = time.monotonic()
        if self._tally_seen is None or self._tally_seen[0] != counted:
            self._tally_seen = (counted, now)
            return False
        if now - self._tally_seen[1] < _TALLY_FALLBACK_S:
            return False
        self._tally_seen = (counted, now)
        return True

    @maps_errors
    def wait(self, indices: Sequence[int], deadline: Deadline) -> list[SubJobState]:
        """Like :meth:`Submission.wait`, but a wait for the whole set polls the tally and
        reads every sub-job's state only when the tally says the set is final (or has not
        moved for a while), so a long wait on a big set costs O(1) a poll.

        Redis away for longer than the client's own retries (a slow failover, a restart)
        is waited through once (:class:`~jobset.executors.base.Outage`): a read that
        fails again in a row raises :class:`~jobset.errors.BrokerUnavailableError`, so
        the wait ends within :func:`~.connect.wait_bound_s` of Redis going away, or at
        its deadline if that comes first."""
        whole = len(indices) == len(self.task_ids)
        outage = Outage(self.jobset_id)
        states: list[SubJobState] | None = None

        def read() -> list[SubJobState] | None:
            nonlocal states
            states = None
            if not whole:
                states = self.states()
                self._watch(states)
                return states if all(states[i].status in FINAL for i in indices) else None
            counted = self.tallied()
            final = aggregate_counts(counted, len(self.task_ids), cancelled=self._cancelled)
            if final is JobStatus.DONE and self._proven(final, frozenset(counted.items())) is (
                JobStatus.DONE
            ):
                # Every sub-job's signed end record says it succeeded: Celery's records,
                # one per sub-job, could add nothing.
                states = [_SUCCEEDED] * len(self.task_ids)
                return states
            # At the deadline every state is read once more: the tally may lag behind.
            if final in FINAL or self._tally_stalled(counted) or deadline.passed():
                states = self.states()
                self._watch(states)
                if self._claim_of(states) in FINAL:
                    return states
            return None

        def ready() -> list[SubJobState] | None:
            def mapped() -> list[SubJobState] | None:
                with mapped_errors(self.clients.settings):
                    return read()

            return outage.read(mapped)

        def timed_out() -> NoReturn:
            if outage.failing:
                raise JobSetTimeoutError(
                    f"timed out while Redis was unreachable ({self.jobset_id})"
                )
            last = self.states() if states is None else states
            raise not_final_error([i for i in indices if last[i].status not in FINAL])

        with self.pauses(reachable=lambda: not outage.failing) as pause:
            return poll(ready, deadline, timed_out, pause=pause)

    @maps_errors
    def states(self, indices: Sequence[int] | None = None) -> list[SubJobState]:
        """States of every sub-job, or of ``indices`` only: one round trip either way."""
        states = []
        which = range(len(self.task_ids)) if indices is None else indices
        for index, meta in zip(which, self._metas(indices), strict=True):
            status = celery_to_job_status(meta.get("status"), cancelled=self._cancelled)
            message = error_type = ""
            if status is JobStatus.ERROR:
                error_type, message = _failure(meta, index, self.jobset_id, self.timeout_s)
            elif status is JobStatus.CANCELLED:
                message = "cancelled"
            states.append(SubJobState(status, message, error_type))
        return states

    @contextlib.contextmanager
    def pauses(self, *, reachable: Callable[[], bool] | None = None) -> Iterator[Pause]:
        """Pause until the result backend announces a change of this set, or a second.

        Celery's Redis backend publishes every task record on a channel named after its
        key; subscribing to this set's channels wakes a wait the moment a sub-job ends,
        instead of a poll interval later.  Without the subscription (the broker went away)
        it falls back to sleeping, inside the same deadline, and subscribes again (at most
        every :data:`_RESUBSCRIBE_S`) while ``reachable()`` says the last read got through.
        """
        prefix = self.clients.app.backend.task_keyprefix
        prefix = prefix.decode() if isinstance(prefix, bytes) else str(prefix)
        pubsub = self.clients.redis.pubsub(ignore_subscribe_messages=True)

        def subscribe() -> bool:
            try:
                pubsub.psubscribe(f"{prefix}{glob_escape(self.jobset_id)}-*")
                pubsub.subscribe(protocol.counts_key(self.jobset_id))  # workers tally after
            except (redis.ConnectionError, redis.TimeoutError):
                return False
            return True

        with super().pauses() as sleep:
            subscribed = subscribe()
            resubscribe_at = time.monotonic() + _RESUBSCRIBE_S
            last_read, burst = time.monotonic(), 0

            def pause(remaining: float | None) -> None:
                nonlocal subscribed, resubscribe_at, last_read, burst
                now = time.monotonic()
                if not subscribed and now >= resubscribe_at and reachable and reachable():
                    resubscribe_at = now + _RESUBSCRIBE_S
                    subscribed = subscribe()
                if subscribed:
                    timeout = _NOTICE_WAIT_S if remaining is None else remaining
                    try:
                        notice = pubsub.get_message(timeout=max(0.0, min(_NOTICE_WAIT_S, timeout)))
                        if notice is not None and burst >= _DENSE_BURST:
                            _hold_off(last_read, remaining)
                        burst = 0
                        while notice is not None:  # coalesce a burst into one status read
                            burst += 1
                            notice = pubsub.get_message(timeout=0.0)
                        last_read = time.monotonic()
                        return
                    except (redis.ConnectionError, redis.TimeoutError):
                        subscribed = False
                sleep(remaining)
                last_read = time.monotonic()

            try:
                yield pause
            finally:
                pubsub.close()

    @maps_errors
    def lost(self) -> list[int]:
        """Sub-jobs neither queued nor held by a worker nor final: Redis lost them."""
        return recovery.find_lost(self)

    @maps_errors
    def without_result(self, indices: Sequence[int]) -> list[int]:
        """One pipelined EXISTS per sub-job: no result is read."""
        pipe = self.clients.redis.pipeline(transaction=False)
        for i in indices:
            pipe.exists(result_key(self.jobset_id, i))
        return [i for i, found in zip(indices, pipe.execute(), strict=True) if not found]

    @maps_errors
    def rerun(self, indices: Sequence[int], batches: Sequence[SubBatch], *, backend: Any) -> None:
        recovery.republish(
            self.clients,
            self.jobset_id,
            indices,
            batches,
            backend=backend,
            timeout_s=self.timeout_s,
            dispatch=self.dispatch,
        )
        self._progress = None
        self._checked = None

    def _watch(self, states: Sequence[SubJobState]) -> None:
        """Raise :class:`SubJobsLostError` when a stalled set turns out to have lost sub-jobs.

        A lost sub-job reads QUEUED forever, so a wait without a deadline would never
        end.  Only a set where nothing finished for a while is checked (the check scans
        the queues), and each check that finds nothing doubles the pause to the next.
        """
        now = time.monotonic()
        finals = sum(s.status in FINAL for s in states)
        if finals == len(states):
            return
        if self._progress is None or self._progress[0] != finals:
            self._progress = (finals, now, _LOST_CHECK_START_S)
            return
        _, since, pause = self._progress
        if now - since < pause:
            return
        self._progress = (finals, now, min(2 * pause, _LOST_CHECK_MAX_S))
        lost = self.lost()
        if lost:
            raise SubJobsLostError(self.jobset_id, lost)

    @maps_errors
    def timeline_entries(self) -> list[Any]:
        key = protocol.timeline_key(self.jobset_id)
        entries: list[Any] = self.clients.redis.lrange(key, 0, timeline.MAX_ENTRIES - 1)
        return entries

    @maps_errors
    def trace_parent(self) -> str | None:
        """The set's traceparent from Redis (read only when this process traces)."""
        if not tracing.enabled():
            return None
        found = tracing.parse_carrier(self.clients.redis.get(protocol.trace_key(self.jobset_id)))
        return None if found is None else found[0]

    @maps_errors
    def note_merged(self, at: float) -> None:
        try:
            key = protocol.timeline_key(self.jobset_id)
            pipe = self.clients.redis.pipeline(transaction=False)
            pipe.rpush(key, timeline.merged_entry(at))
            pipe.expire(key, self.clients.settings.result_ttl_s)
            pipe.execute()
        except redis.RedisError:  # a picture's detail: never the result's failure
            logger.warning("could not record the merge of %s", self.jobset_id, exc_info=True)

    @maps_errors
    def finished_at(self) -> float | None:
        """Unix time at which the last sub-job finished, from the workers' records."""
        done = [m.get("date_done") for m in self._metas(None)]
        if not done or any(d is None for d in done):
            return None
        return max(datetime.fromisoformat(str(d)).timestamp() for d in done)

    @maps_errors
    def results(self, indices: Iterable[int]) -> dict[int, Result]:
        """The stored results, read and decoded a chunk at a time: Redis's reply buffer and
        this process never hold every signed blob of a big set at once."""
        wanted = list(indices)
        out: dict[int, Result] = {}
        for start in range(0, len(wanted), _RESULT_CHUNK):
            chunk = wanted[start : start + _RESULT_CHUNK]
            found = self.clients.store.get_many(
                Kind.RESULT, [(self.jobset_id, i) for i in chunk], expect=Result
            )
            out.update((i, r) for i, r in zip(chunk, found, strict=True) if r is not None)
        return out

    @maps_errors
    def cancel(self, indices: Sequence[int] | None = None) -> None:
        """Record the cancel in Redis (durable), drop the queued messages, stop the running.

        The durable mark is what every worker checks before it runs a sub-job, so the
        cancel holds even for a message a worker already holds or a revoke that no worker
        heard.  The queued messages are removed from the queue lists, so other sets do not
        wait behind them; only the running sub-jobs are revoked (a revoke of every id
        would make each worker look up every one of them).
        """
        redis_client, settings = self.clients.redis, self.clients.settings
        ttl = settings.result_ttl_s
        if indices is None:
            mark = evidence.cancel_token(settings.secret_key, self.jobset_id)
            redis_client.set(cancel_key(self.jobset_id), mark, ex=ttl)
            self._cancelled = True
            targets = list(range(len(self.task_ids)))
            needles = [self.jobset_id]
        else:
            targets = list(indices)
            pipe = redis_client.pipeline(transaction=False)
            for i in targets:
                pipe.set(sub_job_cancel_key(self.jobset_id, i), "1", ex=ttl)
            pipe.execute()
            # Each task id as it stands, quoted, in its message's headers.
            needles = [f'"{self.task_ids[i]}"' for i in targets]
        broker_answers = self._purge(needles)
        states = self.states()
        running = [self.task_ids[i] for i in targets if states[i].status is JobStatus.RUNNING]
        try:
            # SIGKILL: Aer runs in C++ and would finish its circuit before a SIGTERM landed.
            if running and broker_answers:
                self.clients.app.control.revoke(running, terminate=True, signal="SIGKILL")
        except Exception:  # the broker may be away; the durable mark still holds
            logger.warning("revoke broadcast for %s failed", self.jobset_id, exc_info=True)
        if indices is not None:
            # A queued sub-job cancelled alone reads CANCELLED at once, like the set's.
            queued = [i for i in targets if states[i].status is JobStatus.QUEUED]
            for i in queued:
                self.clients.app.backend.mark_as_revoked(self.task_ids[i], "cancelled")
            pipe = redis_client.pipeline(transaction=False)
            for i in queued:
                evidence.write_end(pipe, settings, self.jobset_id, i, tally.CANCELLED)
                tally.move(pipe, self.jobset_id, i, tally.CANCELLED, ttl_s=ttl)
            pipe.execute()

    @maps_errors
    def delete(self) -> None:
        """Remove the set's record, payloads and results from Redis (cancelling it first)."""
        if self.aggregate() not in FINAL:
            self.cancel()
        record = registry.load(self.clients.store, self.jobset_id)
        registry.delete(self.clients.redis, record, self.meta_keys)

    def _purge(self, needles: Sequence[str]) -> bool:
        """Drop the queued messages that name one of ``needles``; False when the broker
        did not answer (the durable mark still holds: workers skip them).

        On a broker that is also the results' server the error is raised: the reads that
        follow would fail the same way, and the call must end within one call's bound.
        """
        queues = (self.dispatch or Dispatch(DEFAULT_QUEUE)).queues
        try:
            recovery.purge_queued(self.clients.broker, queues, needles)
        except (redis.ConnectionError, redis.TimeoutError):
            if self.clients.broker is self.clients.redis:
                raise
            logger.warning(
                "the broker did not answer: the queued messages of %s stay queued (workers "
                "skip them by the durable mark)",
                self.jobset_id,
            )
            return False
        except redis.RedisError:  # workers still skip them by the durable mark
            logger.warning("could not drop the queued messages of %s", self.jobset_id)
        return True
