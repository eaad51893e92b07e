"""The errors of the job set, one rooted tree.

::

    qiskit.providers.JobError
    └── JobSetError                      root of every error raised here
        ├── ConfigurationError           bad settings (missing secret key, bad URL)
        ├── InvalidInputError            bad circuits, shots, split sizes, executor
        │   └── AdmissionError           no live worker could hold an experiment (admit=)
        ├── SecurityError                a payload failed its signature check
        ├── DecodeError                  a payload could not be decoded
        ├── JobSetStateError             an operation that the set's state forbids
        ├── JobSetNotFoundError          no job set with that id (never ran, expired, deleted)
        │   └── PrimitiveJobNotFoundError  no primitive job with that id
        ├── JobSetFailedError            sub-jobs failed or were cancelled
        │   ├── JobSetCancelledError     ... because the set was cancelled
        │   └── PrimitiveJobFailedError  ... of a primitive job (also qiskit-aer's AerError)
        ├── JobSetTimeoutError           a wait ran past its deadline (also JobTimeoutError)
        ├── BrokerError                  Redis (broker or result backend) failed a command
        │   └── BrokerUnavailableError   ... because it could not be reached (gone, frozen)
        ├── SubJobsLostError             sub-jobs vanished from Redis (resubmit_lost() helps)
        └── SubJobError                  a sub-job's own failure, as the worker reports it
            ├── SimulationFailedError    Aer reported an experiment as failed
            ├── RedeliveryLimitError     the sub-job took its worker down too many times
            ├── SubJobTimeoutError       the sub-job ran past the set's timeout_s
            ├── ResultTooLargeError      the result is over JOBSET_MAX_RESULT_BYTES
            └── VersionMismatchError     producer and worker versions would change results

    UserWarning
    ├── VersionSkewWarning               no live worker runs the producer's versions
    ├── AdmissionWarning                 no live worker has the memory a circuit needs
    ├── EvictionPolicyWarning            Redis may evict keys under memory pressure
    └── PerformanceWarning               sub-jobs so small that the queue's cost dominates

Worker-side errors reach the producer as the message of a failed sub-job
(``SubJobFailure.message`` starts with the class name); each takes one message string so
that Celery can carry it between processes.
"""

from __future__ import annotations

from dataclasses import dataclass

from qiskit.providers import JobError, JobTimeoutError
from qiskit_aer.aererror import AerError


class JobSetError(JobError):
    """Raised for any failure of a job set; the root of this tree."""

    def __str__(self) -> str:
        # QiskitError shows repr(message), which turns the failure list into one escaped line.
        return str(self.message)


class ConfigurationError(JobSetError):
    """Raised when settings are missing or invalid."""


class InvalidInputError(JobSetError, ValueError):
    """Raised when circuits, options or an executor are refused before anything is queued."""


class AdmissionError(InvalidInputError):
    """Raised when admission control refuses a set that no live worker could run.

    ``need_bytes`` is the largest experiment's state, ``largest_bytes`` the memory the
    largest live worker offers (None when no worker is online).
    """

    def __init__(self, message: str, *, need_bytes: int, largest_bytes: int | None) -> None:
        self.need_bytes = need_bytes
        self.largest_bytes = largest_bytes
        super().__init__(message)


class SecurityError(JobSetError):
    """Raised when a payload's signature does not match the shared secret key."""


class DecodeError(JobSetError):
    """Raised when a payload is not a valid envelope of this protocol."""


class JobSetStateError(JobSetError):
    """Raised when an operation is not allowed in the set's current state."""


class JobSetNotFoundError(JobSetError, LookupError):
    """Raised when no record of a job set id exists in Redis."""

    def __init__(self, jobset_id: str) -> None:
        self.jobset_id = jobset_id
        super().__init__(f"no job set {jobset_id!r}: it never ran here, expired, or was deleted")


class PrimitiveJobNotFoundError(JobSetNotFoundError):
    """Raised when an id names no primitive job (unknown, expired, or a plain job set)."""

    def __init__(self, jobset_id: str) -> None:
        self.jobset_id = jobset_id
        # Skips JobSetNotFoundError's own message, which speaks of job sets.
        super(JobSetNotFoundError, self).__init__(
            f"no primitive job {jobset_id!r}: it never ran here, expired, was deleted, "
            "or is a job set that jobset.primitives did not make",
        )


@dataclass(frozen=True)
class SubJobFailure:
    """One failed or cancelled sub-job: its index, its Celery task id, the worker's message
    and the name of the error it raised (``error_type``, empty for a cancelled sub-job)."""

    index: int
    task_id: str
    status: str
    message: str
    error_type: str = ""

    @property
    def error_class(self) -> type[Exception] | None:
        """The error class of this tree that ``error_type`` names, if it names one; so a
        caller can ``issubclass(f.error_class, SubJobTimeoutError)`` without parsing text."""
        found = globals().get(self.error_type)
        return found if isinstance(found, type) and issubclass(found, JobSetError) else None

    def __str__(self) -> str:
        return f"sub-job {self.index} (task {self.task_id}) {self.status}: {self.message}"


class JobSetFailedError(JobSetError):
    """Raised by ``result()`` when any sub-job failed or was cancelled.

    Its message is a summary (counts by error type, the first few sub-jobs with their
    messages); :attr:`failures` lists every one.  ``sub_jobs`` is the set's size, when known.
    """

    def __init__(
        self, jobset_id: str, failures: list[SubJobFailure], *, sub_jobs: int | None = None
    ) -> None:
        self.jobset_id = jobset_id
        self.failures = list(failures)
        self.sub_jobs = sub_jobs
        super().__init__(self._summary())

    def _summary(self) -> str:
        failed = [f for f in self.failures if f.status != CANCELLED]
        cancelled = len(self.failures) - len(failed)
        of = f" of {self.sub_jobs}" if self.sub_jobs is not None else ""
        counts = [f"{len(failed)} sub-job(s){of} failed"] if failed else []
        counts += [f"{cancelled} cancelled"] if cancelled else []
        return f"job set {self.jobset_id}: {', '.join(counts)}{failure_details(failed)}"


CANCELLED = "CANCELLED"  # SubJobFailure.status of a cancelled sub-job (JobStatus.CANCELLED.name)
_EXAMPLES = 3
_EXAMPLE_CHARS = 300


def failure_details(failed: list[SubJobFailure]) -> str:
    """Counts by error type, the first few failures, and where the rest are: the lines
    under a :class:`JobSetFailedError` summary (empty when nothing failed)."""
    if not failed:
        return ""
    by_type: dict[str, int] = {}
    for f in failed:
        by_type[f.error_type or "unknown error"] = (
            by_type.get(f.error_type or "unknown error", 0) + 1
        )
    lines = ["  by type: " + ", ".join(f"{name} {n}" for name, n in sorted(by_type.items()))]
    for f in failed[:_EXAMPLES]:
        text = str(f).splitlines()[0] if str(f) else ""
        cut = text[:_EXAMPLE_CHARS] + (" ..." if len(text) > _EXAMPLE_CHARS else "")
        lines.append(f"  {cut}")
    if len(failed) > _EXAMPLES:
        lines.append(f"  ... {len(failed) - _EXAMPLES} more: the error's .failures lists every one")
    return "\n" + "\n".join(lines)


class JobSetCancelledError(JobSetFailedError):
    """Raised by ``result()`` when the set was cancelled before all of it finished.

    :attr:`failures` lists the sub-jobs that did not finish (cancelled, or failed before the
    cancel); ``result(partial=True)`` returns the finished ones in their places.
    """

    def _summary(self) -> str:
        failed = [f for f in self.failures if f.status != CANCELLED]
        cancelled = len(self.failures) - len(failed)
        if self.sub_jobs is not None:
            done = self.sub_jobs - len(self.failures)
            finished = f"{done} of {self.sub_jobs} sub-job(s) had finished, {cancelled} cancelled"
        else:
            finished = f"{cancelled} sub-job(s) cancelled"
        also = f", {len(failed)} failed" if failed else ""
        return (
            f"job set {self.jobset_id} was cancelled: {finished}{also}; result(partial=True) "
            "returns the finished ones (the others success=False), .failures lists the rest"
            f"{failure_details(failed)}"
        )


class PrimitiveJobFailedError(JobSetFailedError, AerError):
    """Raised by a primitive job's ``result()`` when a sub-job failed or was cancelled.

    Also an ``AerError``, what ``qiskit_aer.primitives`` raise for a failed simulation, so
    code written for Aer's primitives catches it unchanged.
    """


class JobSetTimeoutError(JobSetError, JobTimeoutError):
    """Raised when a wait on the set runs past its deadline."""


class BrokerError(JobSetError):
    """Raised when Redis (broker or result backend) refuses or fails a command.

    Redis's, kombu's and Celery's own errors never reach a caller: the Celery executor
    maps them at its boundary (:mod:`jobset.executors.celery.boundary`) and chains the
    original (``__cause__``).  ``url`` is the server's URL, password redacted.
    """

    def __init__(self, message: str, *, url: str = "") -> None:
        self.url = url
        super().__init__(message)


class BrokerUnavailableError(BrokerError):
    """Raised when the broker or result backend cannot be reached (gone, refusing
    connections, or not answering) within the bound that ``JOBSET_CONNECT_TIMEOUT_S`` sets."""


class SubJobsLostError(JobSetError):
    """Raised when sub-jobs are neither queued, nor running, nor finished: Redis lost them."""

    def __init__(self, jobset_id: str, indices: list[int]) -> None:
        self.jobset_id = jobset_id
        self.indices = list(indices)
        shown = ", ".join(str(i) for i in self.indices[:20])
        more = f" and {len(self.indices) - 20} more" if len(self.indices) > 20 else ""
        super().__init__(
            f"job set {jobset_id}: {len(self.indices)} sub-job(s) lost ({shown}{more}): not "
            "queued, not running and without a result, as after a Redis restart without "
            "persistence; call resubmit_lost() to publish them again"
        )


class SubJobError(JobSetError):
    """Raised when one sub-job fails on its worker for a reason of its own."""


class SimulationFailedError(SubJobError):
    """Raised when Aer reports an experiment of the sub-batch as failed."""


class RedeliveryLimitError(SubJobError):
    """Raised when a sub-job's worker died on it more times than JOBSET_MAX_WORKER_LOSSES."""


class SubJobTimeoutError(SubJobError):
    """Raised when a sub-job runs past the time limit its set was given (``timeout_s``)."""


def timeout_message(index: object, jobset_id: object, soft_s: object) -> str:
    """The words of :class:`SubJobTimeoutError`, the same wherever the limit is noticed."""
    return (
        f"sub-job {index} of {jobset_id} ran past its time limit of {soft_s} s (the set's "
        "timeout_s) and was stopped"
    )


class ResultTooLargeError(SubJobError):
    """Raised when a sub-job's signed result is larger than JOBSET_MAX_RESULT_BYTES."""


class VersionMismatchError(SubJobError):
    """Raised when a worker's qiskit, qiskit-aer or project version would change results."""


class VersionSkewWarning(UserWarning):
    """Warned at submit when no live worker runs the producer's result-relevant versions."""


class AdmissionWarning(UserWarning):
    """Warned at submit (``admit`` unset) when a circuit needs more state memory than the
    largest live worker offers: it would fail there; ``admit="wait"`` refuses it instead."""


class EvictionPolicyWarning(UserWarning):
    """Warned once per executor when Redis may evict keys (``maxmemory-policy`` is not
    ``noeviction``): payloads and results could vanish under memory pressure."""


class PerformanceWarning(UserWarning):
    """Warned at submit when an explicit ``max_job_size`` or ``max_shot_size`` makes
    sub-jobs so small that the queue costs more than their work; says which size would not."""
