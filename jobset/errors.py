"""The errors of the job set, one rooted tree.

::

    qiskit.providers.JobError
    └── JobSetError                      root of every error raised here
        ├── ConfigurationError           bad settings (missing secret key, bad URL)
        ├── InvalidInputError            bad circuits, shots, split sizes, executor
        ├── SecurityError                a payload failed its signature check
        ├── DecodeError                  a payload could not be decoded
        ├── JobSetStateError             an operation that the set's state forbids
        ├── JobSetNotFoundError          no job set with that id (never ran, expired, deleted)
        ├── JobSetFailedError            sub-jobs failed or were cancelled
        └── JobSetTimeoutError           a wait ran past its deadline (also JobTimeoutError)
"""

from __future__ import annotations

from dataclasses import dataclass

from qiskit.providers import JobError, JobTimeoutError


class JobSetError(JobError):
    """Raised for any failure of a job set; the root of this tree."""

    def __str__(self) -> str:
        # QiskitError shows repr(message), which turns the failure list into one escaped line.
        return str(self.message)


class ConfigurationError(JobSetError):
    """Raised when settings are missing or invalid."""


class InvalidInputError(JobSetError, ValueError):
    """Raised when circuits, options or an executor are refused before anything is queued."""


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


@dataclass(frozen=True)
class SubJobFailure:
    """One failed or cancelled sub-job: its index, its Celery task id and the worker's message."""

    index: int
    task_id: str
    status: str
    message: str

    def __str__(self) -> str:
        return f"sub-job {self.index} (task {self.task_id}) {self.status}: {self.message}"


class JobSetFailedError(JobSetError):
    """Raised by ``result()`` when any sub-job failed or was cancelled; lists every one."""

    def __init__(self, jobset_id: str, failures: list[SubJobFailure]) -> None:
        self.jobset_id = jobset_id
        self.failures = list(failures)
        lines = "\n".join(f"  {f}" for f in self.failures)
        super().__init__(f"job set {jobset_id}: {len(self.failures)} sub-job(s) failed\n{lines}")


class JobSetTimeoutError(JobSetError, JobTimeoutError):
    """Raised when a wait on the set runs past its deadline."""
