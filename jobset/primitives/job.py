"""``DistributedPrimitiveJob``: a primitive job that runs as one job set.

The job's id is its job set's id.  On a :class:`~jobset.CeleryExecutor` the
primitive's layout (:class:`~jobset.primitives.layout.PrimitiveRecord`: PUB shapes,
observables, precision, seeds, where each PUB's experiments lie) is stored in Redis under
:func:`jobset.protocol.primitive_key`, signed and with the results' TTL, before the first
sub-job is published; so any process with the same settings can
:meth:`~DistributedPrimitiveJob.retrieve` the job and rebuild its ``PrimitiveResult``.
"""

from __future__ import annotations

from typing import Any

from qiskit.primitives import BasePrimitiveJob, PrimitiveResult
from qiskit.providers import JobStatus

from ..errors import (
    InvalidInputError,
    JobSetFailedError,
    JobSetNotFoundError,
    PrimitiveJobFailedError,
    PrimitiveJobNotFoundError,
)
from ..executors.admission import PlanCosts
from ..executors.base import Executor, SubmitOptions
from ..executors.pools import as_executor
from ..jobset import AerJobSet
from ..observe.view import set_html, text_line
from ..plan import Plan
from ..protocol import Kind, check_jobset_id
from ..simulator import submit_plan
from ..status import FINAL
from .layout import PrimitiveRecord
from .merge import pub_results

_WAIT_POLL_MAX_S = 0.25


class DistributedPrimitiveJob(BasePrimitiveJob[PrimitiveResult[Any], JobStatus]):
    """The job returned by :class:`~jobset.primitives.SamplerV2` and ``EstimatorV2``.

    A ``BasePrimitiveJob`` (``job_id``, ``status``, ``result``, ``cancel``, ``done``,
    ``running``, ``cancelled``, ``in_final_state``) backed by one
    :class:`~jobset.AerJobSet`, available as :attr:`job_set` for progress, per-sub-job
    status and streaming.  ``result()`` raises :class:`~jobset.JobSetFailedError` when a
    sub-job failed or was cancelled, and :class:`~jobset.JobSetTimeoutError` past its
    deadline.
    """

    def __init__(self, job_set: AerJobSet, record: PrimitiveRecord) -> None:
        super().__init__(job_set.job_id())
        self._job_set = job_set
        self._record = record
        self._result: PrimitiveResult[Any] | None = None

    def __repr__(self) -> str:
        return f"<DistributedPrimitiveJob {self.job_id()} {self._record.kind}>"

    def _repr_html_(self) -> str:
        """The job in Jupyter: its job set's view, named after the primitive."""
        return set_html(self._job_set.snapshot(kind=self._kind_name()))

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(text_line(self._job_set.snapshot(kind=self._kind_name())))

    def _kind_name(self) -> str:
        return f"{self._record.kind} job"

    def watch(self, timeout: float | None = None, *, interval_s: float = 0.5) -> JobStatus:
        """Show the job's progress live until it is final (see ``AerJobSet.watch``)."""
        return self._job_set.watch(timeout, interval_s=interval_s)

    @property
    def job_set(self) -> AerJobSet:
        """The job set that runs this job's sub-jobs."""
        return self._job_set

    @property
    def record(self) -> PrimitiveRecord:
        """The job's layout: kind, per-PUB shapes and parts, the seed (drawn or given)."""
        return self._record

    @property
    def seed(self) -> int:
        """The seed the job ran with; drawn at submit when none was given."""
        return self._record.seed

    # ------------------------------------------------------------------ status

    def status(self) -> JobStatus:
        """The job set's aggregate status (see ``AerJobSet.status``)."""
        status: JobStatus = self._job_set.status()
        return status

    def done(self) -> bool:
        return self.status() is JobStatus.DONE

    def running(self) -> bool:
        return self.status() is JobStatus.RUNNING

    def cancelled(self) -> bool:
        return self.status() is JobStatus.CANCELLED

    def in_final_state(self) -> bool:
        return self.status() in FINAL

    def progress(self) -> dict[str, int]:
        """How many sub-jobs are in each state, by ``JobStatus`` name."""
        return self._job_set.progress()

    def wait_for_final_state(self, timeout: float | None = None) -> None:
        """Wait until every sub-job is final; ``JobSetTimeoutError`` past ``timeout``."""
        self._job_set.wait_for_final_state(timeout, wait=_WAIT_POLL_MAX_S)

    def cancel(self) -> bool:
        """Cancel every sub-job; returns at once, False when the job was already final."""
        return self._job_set.cancel()

    # ------------------------------------------------------------------ result

    def result(self, timeout: float | None = None) -> PrimitiveResult[Any]:
        """The ``PrimitiveResult``, PUBs in input order; one deadline for the whole wait.

        ``metadata`` is exactly Aer's (``{"version": 2}``); the set's id is
        :meth:`job_id` and the seed :attr:`seed`.  Each PUB's ``simulator_metadata`` is
        Aer's run metadata of the job's first sub-job (every sub-job runs the same
        simulator with the same options).  A failed or cancelled sub-job raises
        :class:`~jobset.errors.PrimitiveJobFailedError`, both a ``JobSetFailedError`` and
        the ``AerError`` that Aer's own primitives raise.
        """
        if self._result is None:
            try:
                merged = self._job_set.result(timeout)
            except JobSetFailedError as e:
                raise PrimitiveJobFailedError(e.jobset_id, e.failures, sub_jobs=e.sub_jobs) from e
            simulator_metadata = dict(getattr(merged, "metadata", None) or {})
            self._result = PrimitiveResult(
                pub_results(self._record, merged.results, simulator_metadata),
                metadata={"version": 2},
            )
        return self._result

    # ------------------------------------------------------------------ by id

    @classmethod
    def retrieve(cls, job_id: str, executor: Any) -> DistributedPrimitiveJob:
        """Rebuild a submitted primitive job from Redis, in any process with the same settings.

        Raises :class:`~jobset.errors.PrimitiveJobNotFoundError` (a ``JobSetNotFoundError``)
        when the id is unknown, expired, deleted, or names a job set that is not a
        primitive job.
        """
        try:
            check_jobset_id(job_id)
        except InvalidInputError:
            raise PrimitiveJobNotFoundError(job_id) from None
        record = as_executor(executor).find(Kind.PRIMITIVE, job_id)
        if not isinstance(record, PrimitiveRecord):
            raise PrimitiveJobNotFoundError(job_id)
        try:
            job_set = AerJobSet.retrieve(job_id, executor)
        except JobSetNotFoundError as e:
            raise PrimitiveJobNotFoundError(job_id) from e
        return cls(job_set, record)

    def delete(self) -> None:
        """Remove the job's records, payloads and results from Redis (cancelling it first)."""
        self._job_set.delete()


def submit(
    backend: Any, plan: Plan, record: PrimitiveRecord, target: Executor, options: SubmitOptions
) -> DistributedPrimitiveJob:
    """Submit a planned primitive job as ``run()`` submits a set: the same checks, admission
    and size-class routing, and every option; the job's layout is stored (signed) with
    the set, before its first sub-job is published, so a retrieve never finds the set
    without it."""
    costs = PlanCosts.of(
        plan, dict(backend.options.items()) | dict(plan.sub_batches[0].run_options)
    )
    job_set = submit_plan(
        backend,
        plan,
        target,
        options=options,
        costs=costs,
        records=((Kind.PRIMITIVE, record),),
        stacklevel=4,
    )
    return DistributedPrimitiveJob(job_set, record)
