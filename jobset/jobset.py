"""``AerJobSet``: a set of sub-jobs that reads as one ``qiskit.providers.JobV1``.

It keeps qiskit-aer 0.14's constructor and methods, and fixes what that one got wrong:
``status()`` with no argument is the aggregate (so ``done()``, ``running()``,
``wait_for_final_state()`` work), ``worker()`` gives the sub-job index, ``worker_results``
takes an int, failed experiments count as failures, one deadline covers a whole wait,
and split shots keep their remainder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn

from qiskit.providers import JobStatus, JobV1
from qiskit.result import Result

from .deadline import Deadline, poll
from .errors import (
    InvalidInputError,
    JobSetCancelledError,
    JobSetError,
    JobSetFailedError,
    JobSetStateError,
    JobSetTimeoutError,
    SubJobFailure,
)
from .executors.base import Outage, SetRequest, SubJobState, Submission, SubmitOptions
from .executors.pools import as_executor, default_executor
from .executors.stored import JobSetListing, list_sets
from .merge import bulk_allocation, merge_results
from .observe import live, tracing
from .observe.timeline import Timeline
from .observe.timeline import parse as parse_timeline
from .observe.view import SHOWN_FAILURES, SetView, failure_lines, set_html, text_line
from .plan import Plan, SubBatch, plan_from_sub_batches
from .status import FINAL
from .subjob import SubJob

logger = logging.getLogger(__name__)


class AerJobSet(JobV1):
    """A job set: ``experiments`` (the planner's sub-batches) run by ``fn`` on ``executor``.

    ``executor`` is a :class:`~jobset.CeleryExecutor`, or any
    ``concurrent.futures.Executor`` or ``dask.distributed.Client`` (then ``fn(sub_batch)``
    runs each sub-batch there, each sub-job gets a uuid of its own, and ``cancel()`` can
    only drop sub-jobs that have not started: a pool cannot stop a running function).
    Without one it runs on a one-thread pool, as in qiskit-aer 0.14.  With Celery, the
    worker task named in :mod:`jobset.protocol` does the work and ``cancel()`` also stops
    running sub-jobs.
    """

    version = 1

    def __init__(
        self,
        backend: Any,
        job_id: str,
        fn: Callable[[SubBatch], Result] | None,
        experiments: Sequence[SubBatch],
        executor: Any = None,
        *,
        plan: Plan | None = None,
        options: SubmitOptions | None = None,
    ) -> None:
        super().__init__(backend, job_id)
        self._options = SubmitOptions() if options is None else options
        self._fn = fn
        self._sub_batches = list(experiments)
        # As in qiskit-aer 0.14: without an executor the set runs on a one-thread pool.  An
        # executor handed down by run() is adapted already (as_executor returns it as is).
        self._target = as_executor(default_executor() if executor is None else executor)
        self._executor = self._target.given
        self._plan = plan if plan is not None else plan_from_sub_batches(self._sub_batches)
        self._submission: Submission | None = None
        self._submitted_at: float | None = None
        self._finished_at: float | None = None
        self._created_at: float | None = None  # Unix time, for a set retrieved by id
        self._submitted_wall: float | None = None  # Unix time of submit, in this process
        self._merged_at: float | None = None  # Unix time result() first merged, here
        self._trace_parent: str | None = None  # the set's trace (jobset.observe.tracing), if traced
        # What a view of the final set read once (dropped when sub-jobs run again).
        self._view_failures: list[SubJobFailure] | None = None
        self._view_finished: float | None = None

    # ------------------------------------------------------------------ submission

    @property
    def fn(self) -> Callable[[SubBatch], Result] | None:
        """What a local executor runs for each sub-batch (Celery workers run their task)."""
        return self._fn

    def submit(self) -> None:
        """Publish every sub-job; a set is submitted once."""
        self.start(SetRequest(self._job_id, self._backend, self._plan, self._fn, self._options))

    def start(self, request: SetRequest) -> None:
        """Hand ``request`` (this set, planned, with its options) to the executor, once."""
        if self._submission is not None:
            raise JobSetStateError(f"job set {self._job_id} was already submitted")
        self._submitted_at = time.monotonic()
        self._submitted_wall = time.time()
        self._submission = self._target.submit(request)
        self._trace_parent = request.trace_parent

    def _require_submitted(self) -> Submission:
        if self._submission is None:
            raise JobSetStateError(f"job set {self._job_id} has not been submitted")
        return self._submission

    def executor(self) -> Any:
        """The executor the sub-jobs run on."""
        return self._executor

    @property
    def timeout_s(self) -> float | None:
        """Each sub-job's time limit (Celery only), also on a set retrieved by id."""
        return self._options.timeout_s

    @property
    def plan(self) -> Plan:
        """The split: sub-batches, experiments, shot chunks and the recorded seed."""
        return self._plan

    # ------------------------------------------------------------------ status

    def _observe(self, states: list[SubJobState]) -> list[SubJobState]:
        """Note when every sub-job was first seen final (the end of ``time_taken``)."""
        if self._finished_at is None and all(s.status in FINAL for s in states):
            self._finished_at = time.monotonic()
        return states

    def status(self, worker: int | Iterable[int] | None = None) -> Any:
        """The set's aggregate status; ``status(k)`` is sub-job k's, an iterable gives a list."""
        if self._submission is None:
            return JobStatus.INITIALIZING
        if worker is None:
            status = self._submission.aggregate()  # O(1) on Celery: the workers' tally
            if status in FINAL and self._finished_at is None:
                self._finished_at = time.monotonic()
            return status
        if isinstance(worker, Iterable):
            indices = [self._sub_job_index(k) for k in worker]
            return [s.status for s in self._submission.states(indices)]
        return self._submission.states([self._sub_job_index(worker)])[0].status

    def progress(self) -> dict[str, int]:
        """How many sub-jobs are in each state, by ``JobStatus`` name."""
        return self._require_submitted().progress()

    def wait_for_final_state(
        self,
        timeout: float | None = None,
        wait: float = 5,
        callback: Callable[[str, JobStatus, AerJobSet], None] | None = None,
    ) -> None:
        """Wait until the set is final, polling at most every ``wait`` seconds.

        ``callback(job_id, status, job)`` is called on every poll.  Raises
        :class:`~jobset.errors.JobSetTimeoutError` (a ``JobTimeoutError``) past ``timeout``.
        A broker that stays unreachable through two status reads in a row raises
        :class:`~jobset.errors.BrokerUnavailableError`, as ``result()`` does
        (:class:`~jobset.executors.base.Outage`).
        """
        submission = self._require_submitted()
        deadline = Deadline(timeout)
        outage = Outage(self._job_id)

        def final() -> JobStatus | None:
            status = outage.read(self.status)
            if status is None:
                return None
            if callback is not None:
                callback(self._job_id, status, self)
            return status if status in FINAL else None

        def timed_out() -> NoReturn:
            unreachable = " (Redis unreachable)" if outage.failing else ""
            raise JobSetTimeoutError(
                f"job set {self._job_id} not final after {timeout} s{unreachable}"
            )

        # Woken by the result backend's notices (Celery), so the wait ends when the last
        # sub-job does, not up to a poll interval later.
        with submission.pauses(reachable=lambda: not outage.failing) as pause:
            poll(final, deadline, timed_out, pause=lambda _: pause(deadline.bound(wait)))

    def cancel(self) -> bool:
        """Cancel the set; returns at once, False when it was already final.

        With Celery: queued sub-jobs are dropped, running ones stopped, and a durable mark
        in Redis makes the cancel hold even for workers that were offline when it was sent.
        The mark is written whatever the set reads: "already final" is only the answer,
        taken from the signed proofs of each sub-job's end
        (:mod:`~jobset.executors.celery.evidence`), never a reason to skip the cancel.
        With a ``concurrent.futures`` executor only sub-jobs not yet started are dropped.
        """
        submission = self._require_submitted()
        already_final = self.status() in FINAL
        if not already_final or submission.cancel_when_final:
            submission.cancel()
        return not already_final

    # ------------------------------------------------------------------ results

    def result(self, timeout: float | None = None, *, partial: bool = False) -> Result:
        """The merged ``Result`` of every sub-job, experiments in input order.

        One deadline covers the whole wait.  If any sub-job failed or was cancelled this
        raises :class:`~jobset.errors.JobSetFailedError`, whose message summarises them and
        whose ``failures`` lists each (:class:`~jobset.errors.JobSetCancelledError` when the
        set was cancelled: it says how many sub-jobs had finished); with
        ``partial=True`` it returns every experiment in its place instead, the failed ones
        ``success=False`` with the error in their ``status``.
        """
        submission = self._require_submitted()
        with tracing.span(
            "jobset.result", parent=self._trace_parent, jobset_id=self._job_id, partial=partial
        ):
            everything = range(len(self._sub_batches))
            states = self._observe(submission.wait(everything, Deadline(timeout)))
            with bulk_allocation():
                results = submission.results(
                    i for i, s in enumerate(states) if s.status is not JobStatus.CANCELLED
                )
                failures = submission.failures(states, results)
                tracing.annotate(failed=len(failures))
                if failures and not partial:
                    error = JobSetCancelledError if submission.cancelled else JobSetFailedError
                    raise error(self._job_id, failures, sub_jobs=len(states))
                with tracing.span("jobset.merge", sub_jobs=len(results)):
                    merged = merge_results(
                        self._plan,
                        results,
                        job_id=self._job_id,
                        time_taken=self._time_taken(submission),
                        failures={f.index: f"{f.status}: {f.message}" for f in failures},
                    )
        if self._merged_at is None:
            self._merged_at = time.time()
            submission.note_merged(self._merged_at)
        return merged

    def timeline(self) -> Timeline:
        """Who ran which sub-job when, from what the set recorded (Celery only; a pool
        records nothing): each run's worker, queue, start, end and state, and the merge."""
        submission = self._require_submitted()
        created = self._created_at if self._created_at is not None else self._submitted_wall
        return parse_timeline(
            self._job_id,
            created,
            submission.timeline_entries(),
            sub_jobs=len(self._sub_batches),
        )

    def _time_taken(self, submission: Submission) -> float:
        """Submit to last sub-result: measured here, or from the workers' records when retrieved."""
        if self._submitted_at is not None and self._finished_at is not None:
            return self._finished_at - self._submitted_at
        finished = submission.finished_at()
        if finished is None or self._created_at is None:
            return 0.0
        return max(0.0, finished - self._created_at)

    def as_completed(self, timeout: float | None = None) -> Iterator[SubJob]:
        """Yield each sub-job as it reaches a final state, so results can be read as they come.

        Like ``concurrent.futures.as_completed``: one deadline for the whole iteration,
        :class:`~jobset.errors.JobSetTimeoutError` past it.  A yielded sub-job's ``result()``
        returns at once (or raises for a failed or cancelled one).  On Celery, sub-jobs come
        in the order they ended, from the workers' log of ends, and each poll reads at most
        about a thousand states and log entries, for a set of any size.
        """
        submission = self._require_submitted()
        pending = dict.fromkeys(range(len(self._sub_batches)))
        cursor: Any = None

        def newly_final() -> list[int] | None:
            nonlocal cursor
            # On Celery each poll reads a bounded chunk, whatever the set's size.
            finished, cursor = submission.newly_final(pending, cursor)
            ended = [k for k in finished if k in pending]
            for k in ended:
                del pending[k]
            return ended or None

        def timed_out() -> NoReturn:
            raise JobSetTimeoutError(
                f"job set {self._job_id}: {len(pending)} sub-job(s) not final after {timeout} s"
            )

        deadline = Deadline(timeout)
        with submission.pauses() as pause:
            while pending:
                for k in poll(newly_final, deadline, timed_out, pause=pause):
                    yield self._sub_job(k)

    # ------------------------------------------------------------------ views

    # Past this many sub-jobs a view of a final set counts failures from the tally and lists
    # none, and a retrieved one shows no elapsed time: both read every sub-job's record.
    _VIEW_DETAILS_UP_TO = 10_000

    def snapshot(self, *, kind: str = "AerJobSet") -> SetView:
        """The set now, as its views show it: one tally read while it runs (which is what a
        live view redraws); once it is final, its failures and end, read once."""
        if self._submission is None:
            return SetView(
                job_id=self._job_id,
                status=JobStatus.INITIALIZING.name,
                counts={},
                sub_jobs=len(self._sub_batches),
                experiments=len(self._plan.experiments),
                backend_name=self._backend_name(),
                kind=kind,
            )
        counts = self.progress()
        status = self.status()
        failed = counts.get("ERROR", 0) + counts.get("CANCELLED", 0)
        listed: tuple[Any, ...] = ()
        final = status in FINAL
        details = final and len(self._sub_batches) <= self._VIEW_DETAILS_UP_TO
        if failed and details:
            if self._view_failures is None:
                self._view_failures = self._submission.failures(self._submission.states())
            listed = tuple(self._view_failures)
        created = self._created_at if self._created_at is not None else self._submitted_wall
        return SetView(
            job_id=self._job_id,
            status=status.name,
            counts=counts,
            sub_jobs=len(self._sub_batches),
            experiments=len(self._plan.experiments),
            created_at=created,
            elapsed_s=self._elapsed_s(created, final=final, details=details),
            backend_name=self._backend_name(),
            tags=self._options.tags,
            failures=failure_lines(listed[:SHOWN_FAILURES]),
            failed=max(failed, len(listed)),
            kind=kind,
        )

    def _backend_name(self) -> str:
        name = getattr(self._backend, "name", None)
        return str(name() if callable(name) else name) if name is not None else ""

    def _elapsed_s(self, created: float | None, *, final: bool, details: bool) -> float | None:
        if self._submitted_at is not None:
            end = self._finished_at if self._finished_at is not None else time.monotonic()
            return end - self._submitted_at
        if created is None:
            return None
        if not final:
            return time.time() - created
        if self._view_finished is None and details and self._submission is not None:
            self._view_finished = self._submission.finished_at()
        return None if self._view_finished is None else self._view_finished - created

    def _repr_html_(self) -> str:
        """The set in Jupyter: id, status, a progress bar by sub-job state, failures."""
        return set_html(self.snapshot())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(text_line(self.snapshot()))

    def watch(self, timeout: float | None = None, *, interval_s: float = 0.5) -> JobStatus:
        """Show the set's progress live until it is final, and return its final status.

        In Jupyter the set's view updates in place (one output, no widget extension
        needed); elsewhere a ``tqdm`` progress bar counts finished sub-jobs, with rate and
        ETA.  Raises :class:`~jobset.errors.JobSetTimeoutError` past ``timeout``.
        """
        return live.watch(self, timeout=timeout, interval_s=interval_s)

    # ------------------------------------------------------------------ by id

    @classmethod
    def retrieve(cls, job_id: str, executor: Any) -> AerJobSet:
        """Rebuild a submitted set from its record in Redis, in any process.

        Everything works on the result (``status``, ``worker``, ``worker_job``,
        ``worker_results``, ``result``, ``cancel``); circuits are not fetched, so ``worker``
        and ``job`` find experiments by index or name.  Raises
        :class:`~jobset.errors.JobSetNotFoundError` for an unknown or expired id.
        """
        target = as_executor(executor)
        stored = target.stored_set(job_id)
        record = stored.record
        options = SubmitOptions(tags=record.tags, timeout_s=record.timeout_s)
        plan = record.plan
        job = cls(
            stored.backend, job_id, None, plan.sub_batches, target, plan=plan, options=options
        )
        job._submission = stored.submission
        job._created_at = record.created_at
        job._trace_parent = stored.submission.trace_parent()
        return job

    @classmethod
    def list_sets(
        cls,
        executor: Any,
        *,
        on_skip: Callable[[str, JobSetError], None] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> JobSetListing:
        """Every set known to this Redis (not expired, not deleted), oldest first
        (``newest_first=True``: the reverse); ``limit`` reads only that many records.

        The list shows itself as a table in Jupyter (dates as dates, states by name).

        A record that fails verification (forged, altered, another key's) is skipped:
        ``on_skip(job_id, error)`` is called for each, and without it one warning is logged
        for all of them.
        """
        return list_sets(
            as_executor(executor), on_skip=on_skip, newest_first=newest_first, limit=limit
        )

    def delete(self) -> None:
        """Remove the set's record, payloads and results from Redis (cancelling it first)."""
        self._require_submitted().delete()

    def worker_results(
        self, worker: int | Iterable[int] | None = None, timeout: float | None = None
    ) -> Result:
        """The Result of sub-job ``worker`` alone; an iterable gives those, merged in order.

        ``None`` (or no argument) is every sub-job, as in qiskit-aer 0.14: the same as
        :meth:`result`.
        """
        if worker is None:
            return self.result(timeout)
        indices = (
            [self._sub_job_index(k) for k in worker]
            if isinstance(worker, Iterable)
            else [self._sub_job_index(worker)]
        )
        submission = self._require_submitted()
        states = submission.wait(indices, Deadline(timeout))
        failures = [f for f in submission.failures(states) if f.index in indices]
        if failures:
            raise JobSetFailedError(self._job_id, failures)
        with bulk_allocation():
            results = submission.results(indices)
        gone = [f for f in submission.failures(states, results) if f.index in indices]
        if gone:
            raise JobSetFailedError(self._job_id, gone)
        if len(indices) == 1:
            return results[indices[0]]
        first = results[indices[0]]
        return Result(
            backend_name=first.backend_name,
            backend_version=first.backend_version,
            job_id=self._job_id,
            success=all(results[i].success for i in indices),
            results=[exp for i in indices for exp in results[i].results],
            date=first.date,
            status=first.status,
            header=first.header,
        )

    # ------------------------------------------------------------------ recovery

    def lost(self) -> list[int]:
        """Sub-jobs that will never finish: not queued, not running, no result.

        That is what a Redis restart without persistence leaves behind (Celery reads such
        sub-jobs as PENDING forever).  A wait on a set where nothing finished for a while
        checks this by itself and raises :class:`~jobset.errors.SubJobsLostError`.  A
        sub-job that was running when Redis lost its message is listed too, though its
        worker may still store a result: running it again is harmless (same key, same
        seeded result).
        """
        return self._require_submitted().lost()

    def resubmit_lost(self) -> list[int]:
        """Publish the :meth:`lost` sub-jobs again (payloads too, if Redis lost them).

        Returns their indices.  Only the process that submitted the set holds the
        circuits to store again; a set rebuilt by id can resubmit only while Redis still
        has its payloads.
        """
        submission = self._require_submitted()
        lost = submission.lost()
        if lost:
            submission.rerun(lost, self._sub_batches, backend=self._backend)
            self._finished_at = None
            self._view_failures = self._view_finished = None
        return lost

    def retry_failed(self) -> list[int]:
        """Run the sub-jobs that ended in ERROR again, and those done whose result is gone
        from Redis (a failover can lose a result its primary acknowledged); returns their
        indices.

        Finished sub-jobs keep their results, so once the retried ones are done
        ``result()`` covers every experiment.  A deterministic failure (a bad circuit,
        not enough memory) fails again; this is for failures of the moment.  A cancelled
        set cannot be retried.
        """
        submission = self._require_submitted()
        if submission.cancelled:
            raise JobSetStateError(f"job set {self._job_id} was cancelled; it cannot be retried")
        states = submission.states()
        failed = [i for i, s in enumerate(states) if s.status is JobStatus.ERROR]
        done = [i for i, s in enumerate(states) if s.status is JobStatus.DONE]
        failed = sorted(failed + submission.without_result(done))
        if failed:
            submission.rerun(failed, self._sub_batches, backend=self._backend)
            self._finished_at = None
            self._view_failures = self._view_finished = None
        return failed

    # ------------------------------------------------------------------ lookup

    def _sub_job(self, index: int) -> SubJob:
        submission = self._require_submitted()
        circuits = self._sub_batches[index].circuits
        return SubJob(
            self,
            index,
            task_id=submission.task_ids[index],
            circuits=circuits,
            cancel=submission.cancel,
        )

    def _sub_job_index(self, k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(self._sub_batches):
            raise InvalidInputError(
                f"no sub-job {k!r}: this set has sub-jobs 0..{len(self._sub_batches) - 1}"
            )
        return k

    def _experiment_index(self, experiment: Any) -> int:
        index = self._plan.find_experiment(experiment)
        if index is None:
            raise InvalidInputError(f"no experiment {experiment!r} in job set {self._job_id}")
        return index

    def worker(self, experiment: Any) -> int | list[int]:
        """Index of the sub-job that holds ``experiment``; a list when its shots were split."""
        pairs = self._plan.experiment_sub_jobs()[self._experiment_index(experiment)]
        return pairs[0][0] if len(pairs) == 1 else [k for k, _ in pairs]

    def job(self, experiment: Any) -> Any:
        """``(sub_job, index_inside_it)`` for ``experiment``; a list of them when shot-split."""
        pairs = self._plan.experiment_sub_jobs()[self._experiment_index(experiment)]
        found = [(self.worker_job(k), pos) for k, pos in pairs]
        return found[0] if len(found) == 1 else found

    def worker_job(self, worker: int | Iterable[int] | None = None) -> Any:
        """Sub-job ``worker`` as a ``JobV1`` (its ``job_id()`` is the task id); a list for many.

        ``None`` (or no argument) gives every sub-job, in index order, as in qiskit-aer 0.14.
        """
        if worker is None:
            return [self._sub_job(k) for k in range(len(self._sub_batches))]
        if isinstance(worker, Iterable):
            return [self._sub_job(self._sub_job_index(k)) for k in worker]
        return self._sub_job(self._sub_job_index(worker))
